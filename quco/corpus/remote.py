"""Corpus statistics from an infini-gram compatible HTTP API.

:class:`RemoteStats` speaks the request format of the public infini-gram API
(``POST`` a JSON object with ``index``, ``query_type``, ``query``...; the answer
holds ``count``, ``approx``, ``latency``, ``token_ids``, ``tokens`` or an
``error``). It works against two kinds of servers:

- ``quco serve`` (:mod:`quco.corpus.server`): counts are quco's exact ones. A
  text term is tokenized by the server with the index's tokenizer and its
  surface forms are summed exactly as :class:`~quco.corpus.local.LocalStats`
  does, so a remote answer equals the local one.
- the public service (``https://api.infini-gram.io/``): a text term is tokenized
  by the service into one token sequence (for its Llama-2 indexes, the
  word-initial form). Pass ``variants`` (term -> token-id sequences) to send
  every surface form as ``query_ids`` instead. A co-occurrence is the engine's
  own ``A AND B`` count with ``max_diff_tokens = window``, which the engine
  computes approximately; its ``approx`` flag is passed through. The service
  has no document mode: ``mode="doc"`` sends the window query with
  ``max_diff_tokens = doc_window`` and the answer is marked approximate.

Only the standard library is used. Requests go through a small pool of
persistent HTTP/1.1 connections (one per concurrent request, kept alive
between requests; a connection the server closed while idle is replaced and
the request sent again once). Failures are handled by ``on_error``:

- ``"raise"`` (default): :class:`~quco.errors.BackendUnavailableError` when the
  server cannot be reached or keeps failing, :class:`~quco.errors.EngineError`
  when it answers with an error;
- ``"open"``: the answer is :data:`FAIL_OPEN_COUNT` with ``approx=True``, a count
  so large that no frequency or co-occurrence rule fires (the guard lets the
  sentence through);
- ``"closed"``: the answer is ``0`` with ``approx=True``, so the rules fire (the
  guard retrieves).

Each degraded answer is a :class:`DegradedCount` and is recorded in
:attr:`RemoteStats.errors`, so callers can report it.
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.errors import BackendUnavailableError, BadInputError, EngineError
from quco.types import Count

log = logging.getLogger(__name__)

OnError = Literal["raise", "open", "closed"]

#: Count returned by a fail-open backend: larger than any threshold quco uses.
FAIL_OPEN_COUNT = 10**12

#: ``max_diff_tokens`` sent for ``mode="doc"`` to a server that has no document
#: mode (the public service caps ``max_diff_tokens`` at 1000).
PUBLIC_DOC_WINDOW = 1000

#: ``max_clause_freq`` sent with co-occurrence queries: LocalStats' own occurrence
#: cap, so that ``quco serve`` (which samples a clause beyond it, as the public
#: service does beyond its default of 50,000) answers as LocalStats does.
DEFAULT_MAX_CLAUSE_FREQ = 100_000

_CNF_WORDS = (" AND ", " OR ")


@dataclass(frozen=True)
class DegradedCount(Count):
    """A count made up because the backend could not answer (fail-open/closed).

    Attributes:
        error: why the backend could not answer.
    """

    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "degraded": True, "error": self.error}


@dataclass(frozen=True)
class BackendFailure:
    """One query that the backend could not answer.

    Attributes:
        query: the query as sent (``"Paris"`` or ``"Paris AND France"``).
        error: the error message.
        returned: the degraded count given to the caller instead.
    """

    query: str
    error: str
    returned: Count


class _Retryable(Exception):
    """A transient failure (timeout, 5xx, dropped connection): worth retrying."""


class RemoteStats(CorpusStats):
    """Counts from an infini-gram compatible HTTP API (``quco serve`` or the public one).

    Args:
        url: the API endpoint, e.g. ``http://127.0.0.1:8000/``.
        index: the ``index`` field of each request (the public service needs
            one, e.g. ``"v4_olmo-2-1124-13b-instruct_llama"``); ``None`` lets
            ``quco serve`` use its first index.
        timeout: seconds to wait for each HTTP answer.
        retries: further attempts after a timeout, a 5xx answer or a dropped
            connection (never after a 4xx answer or a refused connection).
        backoff: seconds before the first retry; doubled at each further one.
        on_error: ``"raise"``, ``"open"`` or ``"closed"`` (see the module docs).
        max_clause_freq: sent with co-occurrence queries: a clause with more
            occurrences is sampled by the server and the count is approximate
            (the public service accepts up to 500,000).
        variants: optional function term -> token-id sequences of its surface
            forms; when given, terms are sent as ``query_ids`` (one OR clause of
            the forms per term) instead of text.
        max_workers: concurrent requests used by the batched forms.
        doc_window: ``max_diff_tokens`` sent for ``mode="doc"``.
        casefold: accepted for symmetry with ``LocalStats``; ``True`` is
            refused, since a server decides its case matching
            (``quco serve --casefold``).
    """

    def __init__(
        self,
        url: str,
        *,
        index: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        on_error: OnError = "raise",
        max_clause_freq: int = DEFAULT_MAX_CLAUSE_FREQ,
        variants: Callable[[str], list[list[int]]] | None = None,
        max_workers: int = 4,
        doc_window: int = PUBLIC_DOC_WINDOW,
        casefold: bool = False,
    ) -> None:
        if casefold:
            raise BadInputError(
                "case variants of a remote index are chosen by its server (quco serve --casefold), not by the client"
            )
        if not url.startswith(("http://", "https://")):
            raise BadInputError(f"not an http(s) URL: {url!r}")
        if on_error not in ("raise", "open", "closed"):
            raise BadInputError(f"on_error must be 'raise', 'open' or 'closed', not {on_error!r}")
        if timeout <= 0 or retries < 0 or backoff < 0 or max_workers < 1:
            raise BadInputError("timeout and max_workers must be positive, retries and backoff not negative")
        self.url = url
        self.index = index
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.backoff = float(backoff)
        self.on_error: OnError = on_error
        self.max_clause_freq = int(max_clause_freq)
        self.variants = variants
        self.max_workers = int(max_workers)
        self.doc_window = int(doc_window)
        #: degraded answers given so far (fail-open / fail-closed)
        self.errors: list[BackendFailure] = []
        #: HTTP requests sent, retries included
        self.requests = 0
        self._lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep
        parts = urllib.parse.urlsplit(url)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._health_path = (parts.path or "/").rstrip("/") + "/health"
        self._pool = _ConnectionPool(url, self.timeout, self.max_workers)

    @property
    def identity(self) -> str:
        """What identifies this backend's answers (cache key): URL and index."""
        return f"{self.url}#{self.index or ''}"

    # ------------------------------------------------------------------ queries

    def count(self, term: str) -> Count:
        """Occurrences of ``term`` as the server counts them."""
        _check_term(term)
        payload = self._payload("count")
        if self.variants is not None:
            payload["query_ids"] = [self._clause(term)]
        else:
            payload["query"] = term
        return self._answer(payload, term)

    def cooccur(
        self, a: str, b: str, *, window: int | None = DEFAULT_WINDOW, mode: CoocMode = "window"
    ) -> Count:
        """Co-occurrence of ``a`` and ``b`` (an ``A AND B`` count query).

        Against ``quco serve`` the count is exact in both modes. Against the
        public service it is the engine's approximate window count, and
        ``mode="doc"`` is not available (answered with ``doc_window`` and
        marked approximate).
        """
        _check_term(a)
        _check_term(b)
        if mode not in ("doc", "window"):
            raise BadInputError(f"mode must be 'doc' or 'window', not {mode!r}")
        doc = mode == "doc" or window is None
        if not doc and (window is None or window < 1):
            raise BadInputError(f"window must be a positive number of tokens, not {window!r}")
        payload = self._payload("count")
        payload["max_diff_tokens"] = self.doc_window if doc else int(window)  # type: ignore[arg-type]
        payload["max_clause_freq"] = self.max_clause_freq
        payload["mode"] = "doc" if doc else "window"
        if self.variants is not None:
            payload["query_ids"] = [self._clause(a), self._clause(b)]
        else:
            payload["query"] = f"{a} AND {b}"
        return self._answer(payload, f"{a} AND {b}", doc=doc)

    def count_many(self, terms: Sequence[str]) -> list[Count]:
        """Batched :meth:`count`, ``max_workers`` requests at a time."""
        return self._parallel([lambda t=t: self.count(t) for t in terms])  # type: ignore[misc]

    def cooccur_many(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        window: int | None = DEFAULT_WINDOW,
        mode: CoocMode = "window",
    ) -> list[Count]:
        """Batched :meth:`cooccur`, ``max_workers`` requests at a time."""
        return self._parallel(
            [lambda a=a, b=b: self.cooccur(a, b, window=window, mode=mode) for a, b in pairs]  # type: ignore[misc]
        )

    def query(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Send one raw API request (``find``, ``search_docs``...) and return its answer.

        Raises:
            BackendUnavailableError: the server cannot be reached or keeps failing.
            EngineError: the server answered with an error.
        """
        body = dict(payload)
        if self.index is not None:
            body.setdefault("index", self.index)
        return self._post(body)

    # ---------------------------------------------------------------- internals

    def _payload(self, query_type: str) -> dict[str, Any]:
        p: dict[str, Any] = {"query_type": query_type}
        if self.index is not None:
            p["index"] = self.index
        return p

    def _clause(self, term: str) -> list[list[int]]:
        fn = self.variants
        forms = [list(map(int, v)) for v in fn(term) if v] if fn is not None else []
        if not forms:
            raise BadInputError(f"{term!r} has no tokens")
        return forms

    def _parallel(self, calls: list[Callable[[], Count]]) -> list[Count]:
        if len(calls) <= 1 or self.max_workers == 1:
            return [c() for c in calls]
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(calls))) as pool:
            return list(pool.map(lambda c: c(), calls))

    def _answer(self, payload: dict[str, Any], what: str, *, doc: bool = False) -> Count:
        try:
            res = self._post(payload)
            value = res.get("count")
            if isinstance(value, bool) or not isinstance(value, int):
                raise EngineError(f"{self.url} answered without an integer 'count' for {what!r}")
            approx = bool(res.get("approx", False))
            if doc and res.get("mode") != "doc":  # the server ran a window query instead
                approx = True
            return Count(int(value), approx)
        except (BackendUnavailableError, EngineError) as exc:
            if self.on_error == "raise":
                raise
            value = FAIL_OPEN_COUNT if self.on_error == "open" else 0
            degraded = DegradedCount(value, True, str(exc))
            with self._lock:
                self.errors.append(BackendFailure(what, str(exc), degraded))
            log.warning("corpus backend failed for %r (%s): answering %d", what, exc, value)
            return degraded

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(payload).encode("utf-8")
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._post_once(data)
            except _Retryable as exc:
                last = str(exc)
                log.info(
                    "corpus server %s: %s (attempt %d of %d)", self.url, last, attempt + 1, self.retries + 1
                )
        raise BackendUnavailableError(
            f"corpus server {self.url} did not answer after {self.retries + 1} attempts: {last}"
        )

    def _post_once(self, data: bytes) -> dict[str, Any]:
        with self._lock:
            self.requests += 1
        status, raw = self._send("POST", data)
        if status >= 400:
            detail = _error_detail(raw)
            if status >= 500:
                raise _Retryable(f"HTTP {status}{detail}")
            raise EngineError(f"corpus server {self.url} rejected the query: HTTP {status}{detail}")
        return self._json(raw)

    def health(self) -> dict[str, Any]:
        """The server's ``GET /health`` answer (``quco serve``: its indexes and what each holds).

        Raises:
            BackendUnavailableError: the server cannot be reached.
            EngineError: the answer is not a JSON object, or an HTTP error.
        """
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                status, raw = self._send("GET", None, path=self._health_path)
            except _Retryable as exc:
                last = str(exc)
                continue
            if status >= 400:
                raise EngineError(f"corpus server {self.url} has no health answer: HTTP {status}")
            return self._json(raw)
        raise BackendUnavailableError(
            f"corpus server {self.url} did not answer after {self.retries + 1} attempts: {last}"
        )

    def close(self) -> None:
        """Close the pooled connections."""
        self._pool.close()

    def _json(self, raw: bytes) -> dict[str, Any]:
        try:
            res = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EngineError(f"corpus server {self.url} answered with something that is not JSON") from exc
        if not isinstance(res, dict):
            raise EngineError(
                f"corpus server {self.url} answered with a JSON {type(res).__name__}, not an object"
            )
        if "error" in res:
            raise EngineError(f"corpus server {self.url}: {res['error']}")
        return res

    def _send(self, method: str, body: bytes | None, *, path: str | None = None) -> tuple[int, bytes]:
        """One HTTP exchange on a pooled connection: (status, body)."""
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            return self._pool.request(method, path or self._path, body, headers)
        except ConnectionRefusedError as exc:
            raise BackendUnavailableError(
                f"corpus server {self.url} is unreachable (connection refused)"
            ) from exc
        except (TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        except OSError as exc:  # name resolution, no route...
            raise BackendUnavailableError(f"corpus server {self.url} is unreachable ({exc})") from exc


class _ConnectionPool:
    """Persistent HTTP connections to one host, one per concurrent request (thread-safe).

    A connection is taken for one exchange and put back after it; at most
    ``size`` idle ones are kept. When a kept connection turns out to have been
    closed by the server (a keep-alive timeout), the request is sent once more
    on a new connection. An ``http(s)_proxy`` from the environment is honoured.
    """

    def __init__(self, url: str, timeout: float, size: int) -> None:
        parts = urllib.parse.urlsplit(url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.timeout = timeout
        self.size = size
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()
        proxy = urllib.request.getproxies().get(parts.scheme)
        self.proxy = (
            None if not proxy or urllib.request.proxy_bypass(parts.netloc) else urllib.parse.urlsplit(proxy)
        )
        #: a request path is absolute (the full URL) when sent to a plain HTTP proxy
        self.absolute = self.proxy is not None and not self.https
        self.origin = f"{parts.scheme}://{parts.netloc}"

    def _new(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
        if self.proxy is not None:
            conn = cls(self.proxy.hostname or "", self.proxy.port, timeout=self.timeout)
            if self.https:
                conn.set_tunnel(self.host, self.port)
            return conn
        return cls(self.host, self.port, timeout=self.timeout)

    def request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        target = self.origin + path if self.absolute else path
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        if conn is None:
            conn = self._new()
        while True:
            try:
                conn.request(method, target, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if not reused:
                    raise
                conn, reused = self._new(), False  # the server dropped an idle connection: once more
                continue
            except BaseException:
                conn.close()
                raise
            break
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                if len(self._idle) < self.size:
                    self._idle.append(conn)
                    conn = None  # type: ignore[assignment]
            if conn is not None:
                conn.close()
        return resp.status, data

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for c in idle:
            c.close()


def _check_term(term: str) -> None:
    if not isinstance(term, str) or not term.strip():
        raise BadInputError(f"an empty term cannot be counted: {term!r}")
    if any(w in term for w in _CNF_WORDS):
        raise BadInputError(f"a term may not contain ' AND ' or ' OR ' (query syntax): {term!r}")


def _error_detail(body: bytes) -> str:
    try:
        msg = json.loads(body[:4096]).get("error")
    except (ValueError, AttributeError):
        return ""
    return f" ({msg})" if msg else ""
