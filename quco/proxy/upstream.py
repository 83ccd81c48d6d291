"""The proxy's HTTP client to the upstream OpenAI-compatible server.

One pooled :class:`httpx.AsyncClient` per proxy (keep-alive connections reused
across requests). Failures become :class:`ProxyError` s with the HTTP status the
proxy answers:

- the upstream cannot be reached, drops the connection, answers 5xx or
  answers something that is not JSON: **502**;
- it does not answer within the timeout: **504**;
- it answers 4xx (a bad key, a bad parameter): the same status with its own
  error body, so the client sees what the upstream said.

Request headers are forwarded except hop-by-hop ones; the ``Authorization``
value never appears in a message the proxy writes or returns
(:func:`redact`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from quco._deps import require
from quco.errors import BadInputError, QucoError

httpx = require("httpx", "server")

log = logging.getLogger("quco.proxy")

#: what the HTTP client raises when the upstream fails mid-exchange
TransportError = httpx.HTTPError

#: headers never forwarded (hop-by-hop, or recomputed by the client library)
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "trailers",
        "transfer-encoding", "upgrade", "host", "content-length",
    }
)  # fmt: skip
#: characters of an upstream error body quoted in a 502 message
MAX_DETAIL_CHARS = 300


class ProxyError(QucoError):
    """An error the proxy answers with ``status`` and an :class:`~quco.proxy.schema.ErrorResponse`.

    Attributes:
        status: the HTTP status.
        kind: the OpenAI error ``type`` (``invalid_request_error``, ``upstream_error``...).
        body: the upstream's own JSON error body, passed through for upstream 4xx.
    """

    def __init__(self, status: int, message: str, kind: str = "upstream_error", body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.body = body


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret (and its bearer token) replaced by ``[redacted]``."""
    for s in secrets:
        if s:
            text = text.replace(s, "[redacted]")
    return text


def secrets_of(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The credential values in ``headers`` (the Authorization value and its token), longest first."""
    out = []
    for name in ("authorization", "api-key", "x-api-key"):
        v = headers.get(name)
        if v:
            out.append(v)
            parts = v.split(None, 1)
            if len(parts) == 2 and len(parts[1]) >= 4:
                out.append(parts[1])
    return tuple(sorted(set(out), key=len, reverse=True))


def forward_headers(headers: Mapping[str, str], *, json_body: bool = False) -> dict[str, str]:
    """Request headers to send upstream: all but hop-by-hop ones (and the body's own when it is rebuilt)."""
    drop = HOP_BY_HOP | ({"content-type", "content-encoding", "accept-encoding"} if json_body else set())
    return {k: v for k, v in headers.items() if k.lower() not in drop}


class Upstream:
    """The upstream server behind the proxy.

    Args:
        base_url: its OpenAI base URL, as given to an OpenAI client (e.g.
            ``http://127.0.0.1:8080/v1``). The proxy's ``/v1/<path>`` goes to
            ``<base_url>/<path>``; other paths go to the same path on its host.
        timeout: seconds to wait for each read from the upstream (a whole
            answer when not streaming; the next chunk when streaming).
        connect_timeout: seconds to wait for a connection.
        max_connections: pooled connections kept to the upstream.
    """

    def __init__(
        self, base_url: str, *, timeout: float = 120.0, connect_timeout: float = 5.0, max_connections: int = 32
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise BadInputError(f"--upstream must be an http(s) URL such as http://127.0.0.1:8080/v1, not {base_url!r}")
        if timeout <= 0 or connect_timeout <= 0:
            raise BadInputError("timeouts must be positive")
        self.base_url = base_url.rstrip("/")
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
        )

    def url(self, path: str) -> str:
        """The upstream URL for the proxy's ``path`` (``/v1/...`` maps onto the base URL)."""
        if path == "/v1" or path.startswith("/v1/"):
            return self.base_url + path[3:]
        return self.origin + path

    async def aclose(self) -> None:
        await self.client.aclose()

    def failure(self, exc: Exception, secrets: tuple[str, ...]) -> ProxyError:
        """The :class:`ProxyError` for a transport failure: 504 for a read timeout, else 502."""
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ProxyError(504, f"the upstream did not answer within {self.timeout:g} s", "upstream_timeout")
        what = type(exc).__name__
        return ProxyError(502, redact(f"the upstream could not be reached ({what}: {exc})", secrets))

    def _status_error(self, status: int, raw: bytes, secrets: tuple[str, ...]) -> ProxyError:
        text = redact(raw.decode("utf-8", "replace"), secrets)
        if 400 <= status < 500:
            try:
                body = json.loads(text)
            except ValueError:
                body = None
            return ProxyError(status, f"the upstream rejected the request ({status}): {text[:MAX_DETAIL_CHARS]}",
                              "upstream_client_error", body if isinstance(body, dict) else None)  # fmt: skip
        return ProxyError(502, f"the upstream answered {status}: {text[:MAX_DETAIL_CHARS]}")

    async def post_json(self, path: str, body: dict[str, Any], headers: Mapping[str, str]) -> dict[str, Any]:
        """POST ``body`` and return the upstream's JSON object.

        Raises:
            ProxyError: 502, 504 or the upstream's 4xx (see the module docstring).
        """
        secrets = secrets_of(headers)
        try:
            r = await self.client.post(self.url(path), json=body, headers=forward_headers(headers, json_body=True))
        except httpx.HTTPError as exc:
            raise self.failure(exc, secrets) from None
        if r.status_code >= 400:
            raise self._status_error(r.status_code, r.content, secrets)
        try:
            data = r.json()
        except ValueError:
            raise ProxyError(502, "the upstream answered with something that is not JSON") from None
        if not isinstance(data, dict):
            raise ProxyError(502, "the upstream answered with JSON that is not an object")
        return data

    async def open_stream(self, path: str, body: dict[str, Any], headers: Mapping[str, str]) -> Any:
        """POST ``body`` and return the open streaming response (the caller closes it).

        Raises:
            ProxyError: as :meth:`post_json`, before any byte is streamed.
        """
        secrets = secrets_of(headers)
        req = self.client.build_request("POST", self.url(path), json=body, headers=forward_headers(headers, json_body=True))
        try:
            resp = await self.client.send(req, stream=True)
        except httpx.HTTPError as exc:
            raise self.failure(exc, secrets) from None
        if resp.status_code >= 400:
            try:
                raw = await resp.aread()
            except httpx.HTTPError:
                raw = b""
            finally:
                await resp.aclose()
            raise self._status_error(resp.status_code, raw, secrets)
        return resp

    async def forward(self, method: str, path: str, query: bytes, headers: Mapping[str, str], body: bytes) -> Any:
        """Send a request through unchanged; returns the open streaming response (the caller closes it).

        Raises:
            ProxyError: 502 or 504 when the upstream cannot answer (its own statuses pass through).
        """
        url = self.url(path) + (f"?{query.decode('latin-1')}" if query else "")
        req = self.client.build_request(method, url, headers=forward_headers(headers), content=body)
        try:
            return await self.client.send(req, stream=True)
        except httpx.HTTPError as exc:
            raise self.failure(exc, secrets_of(headers)) from None
