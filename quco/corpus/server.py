"""``quco serve``: private indexes behind the infini-gram HTTP API.

The server answers ``POST`` requests in the public infini-gram API's format
(a JSON object with ``index``, ``query_type``, ``query`` or ``query_ids``...)
for three query types, with the same answer fields; what each answers, the
CNF (``AND``/``OR``) semantics and the limits are in :mod:`quco.corpus.api`:

- ``count``: ``{"count", "approx", "latency", "token_ids", "tokens"}``, plus
  ``"mode"``, ``"max_diff_tokens"`` and ``"max_clause_freq"`` for AND queries;
- ``find``: ``{"cnt", "segment_by_shard", ...}`` for one term;
- ``search_docs``: documents holding one term or two AND clauses.

Names. Each index is served under a name: ``NAME=DIR`` names it ``NAME``, a
bare ``DIR`` is named after the directory; the first index is the default
(used when a request names none), and ``aliases`` are extra names of the
default. So a client written for the public API (e.g. QuCo-RAG's, which asks
for ``"index": "v4_olmo-2-0325-32b-instruct_llama"``) works unchanged against
``quco serve v4_olmo-2-0325-32b-instruct_llama=DIR`` or ``quco serve DIR
--alias v4_olmo-2-0325-32b-instruct_llama``.

``GET /health`` answers ``{"status": "ok", "indexes": [...], "default": ...,
"aliases": {...}}``. Bad requests get a 4xx answer ``{"error": ...}``:
malformed JSON (or JSON nested too deeply), an unknown ``query_type`` or
``index``, a missing or malformed field, a query beyond the API's limits
(400); no ``Content-Length`` (411); a body over 64 KiB (413); an unknown
method (405); a body not sent within 30 s (408). For a body over the limit the
server stops reading it as a request, answers 413 with ``Connection: close``,
then discards what the client still sends (at most 64 MiB or 10 s) before
closing, so that a client that sends its whole body before reading (Python's
``http.client``, ``requests``) reads the 413 instead of a broken pipe.
Requests are served by threads; each index is used by one request at a time.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from quco.corpus.api import ANSWERS, QUERY_TYPES, RequestError
from quco.corpus.base import CorpusStats
from quco.errors import BadInputError

log = logging.getLogger(__name__)

__all__ = [
    "MAX_BODY_BYTES",
    "CorpusServer",
    "QueryHandler",
    "RequestError",
    "ServedIndex",
    "make_server",
    "open_indexes",
    "serve_in_thread",
]

#: largest request body accepted, in bytes
MAX_BODY_BYTES = 64 * 1024
#: after a 413, at most this many bytes of the refused body are read and dropped ...
DRAIN_MAX_BYTES = 64 << 20
#: ... for at most this many seconds
DRAIN_SECONDS = 10.0
#: seconds a connection may stay silent before the server gives up on it
SOCKET_TIMEOUT = 30.0
#: an index name given as ``NAME=DIR`` or ``--alias NAME``
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass
class ServedIndex:
    """One index behind the server, with the lock that serializes its use."""

    name: str
    stats: CorpusStats
    owned: bool = True  # opened by the server, so closed by it
    lock: threading.Lock = field(default_factory=threading.Lock)


class QueryHandler:
    """Answers API payloads (dicts) from named indexes; independent of HTTP.

    Args:
        indexes: the served indexes, the first being the default.
        aliases: other names of the default index.

    Raises:
        BadInputError: no index, a bad alias, or an alias that is an index's name.
    """

    def __init__(self, indexes: Sequence[ServedIndex], aliases: Sequence[str] = ()) -> None:
        if not indexes:
            raise BadInputError("quco serve needs at least one index")
        self.indexes = {ix.name: ix for ix in indexes}
        self.default = indexes[0].name
        self.aliases: dict[str, str] = {}
        for alias in aliases:
            check_name(alias)
            if alias in self.indexes and alias != self.default:
                raise BadInputError(f"alias {alias!r} is already the name of another index")
            self.aliases[alias] = self.default

    def health(self) -> dict[str, Any]:
        """The ``GET /health`` answer: ``{"status", "indexes", "default", "aliases", "info"}``.

        ``info`` says what each index holds (vocabulary hash, case matching,
        documents, tokens, and its ``partition`` when it is one part of a
        corpus split over several servers), so that a client can check a set
        of shards (:mod:`quco.corpus.sharded`).
        """
        from quco.corpus.sharded import describe

        info = {name: describe(ix.stats) for name, ix in self.indexes.items()}
        return {
            "status": "ok",
            "indexes": list(self.indexes),
            "default": self.default,
            "aliases": self.aliases,
            "info": info,
        }

    def lookup(self, name: Any) -> ServedIndex:
        """The index a request names (None or empty: the default).

        Raises:
            RequestError: no index has that name or alias.
        """
        if name is None or name == "":
            return self.indexes[self.default]
        ix = None
        if isinstance(name, str):
            ix = self.indexes.get(name) or self.indexes.get(self.aliases.get(name, ""))
        if ix is None:
            names = ", ".join([*self.indexes, *self.aliases])
            raise RequestError(f"unknown index {name!r} (this server has {names})")
        return ix

    def handle(self, payload: Any) -> dict[str, Any]:
        """Answer one request.

        Raises:
            RequestError: the request is malformed or cannot be answered.
        """
        t0 = time.perf_counter()
        if not isinstance(payload, dict):
            raise RequestError("the request body must be a JSON object")
        qt = payload.get("query_type")
        if not isinstance(qt, str) or qt not in QUERY_TYPES:
            raise RequestError(f"unknown query_type {qt!r} (this server answers {', '.join(QUERY_TYPES)})")
        ix = self.lookup(payload.get("index", payload.get("corpus")))
        if "query" not in payload and "query_ids" not in payload:
            raise RequestError("the request needs a 'query' (text) or 'query_ids' (token ids)")
        try:
            with ix.lock:
                out = ANSWERS[qt](ix.stats, payload)
        except BadInputError as exc:
            raise RequestError(str(exc)) from exc
        out["latency"] = round((time.perf_counter() - t0) * 1000.0, 3)
        return out


# ------------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    server: CorpusServer
    server_version = "quco-serve"
    protocol_version = "HTTP/1.1"  # keep-alive: pooled clients reuse their connections
    timeout = SOCKET_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode("ascii")  # ASCII escapes: any str (even a lone surrogate) encodes
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's errors (bad request line, unknown method...) as JSON answers."""
        if code == HTTPStatus.NOT_IMPLEMENTED:  # an unknown method: the client's error, not the server's
            code, message = HTTPStatus.METHOD_NOT_ALLOWED, "POST queries to / or GET /health"
        self.close_connection = True
        try:
            self._send(code, {"error": message or HTTPStatus(code).phrase})
        except OSError:  # the client went away
            pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path.rstrip("/") in ("/health", ""):
            self._send(HTTPStatus.OK, self.server.handler.health())
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path!r}; POST queries to /"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        refused = 0
        try:
            body = self.server.handler.handle(self._read_json())
            status = HTTPStatus.OK
        except _TooLarge as exc:
            status, body, refused = HTTPStatus(exc.status), {"error": str(exc)}, exc.length
        except RequestError as exc:
            status, body = HTTPStatus(exc.status), {"error": str(exc)}
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server thread silently
            log.exception("quco serve: internal error")
            status, body = (
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"internal error: {type(exc).__name__}"},
            )
        self._send(status, body)
        if refused:
            self._discard(refused)

    def _read_json(self) -> Any:
        """The JSON body (a body over :data:`MAX_BODY_BYTES` raises :class:`_TooLarge`, unread)."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError("send the body with a Content-Length, not chunked", HTTPStatus.LENGTH_REQUIRED)
        length_s = self.headers.get("Content-Length")
        if length_s is None:
            self.close_connection = True
            raise RequestError("the request needs a Content-Length", HTTPStatus.LENGTH_REQUIRED)
        try:
            length = int(length_s)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise RequestError("Content-Length is not a non-negative number")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise _TooLarge(length)
        try:
            raw = self.rfile.read(length)
        except OSError:  # a timeout, or the client went away
            self.close_connection = True
            raise RequestError(
                "the request body did not arrive in time", HTTPStatus.REQUEST_TIMEOUT
            ) from None
        if len(raw) < length:
            self.close_connection = True
            raise RequestError(f"the body has {len(raw)} bytes, not the {length} of its Content-Length")
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise RequestError("the request body is not valid JSON") from None
        except RecursionError:
            raise RequestError("the request body is JSON nested too deeply") from None

    def _discard(self, length: int) -> None:
        """Read and drop up to ``length`` bytes of a refused body (bounded), so the client reads our answer.

        Closing a socket with unread data makes the kernel reset the
        connection, and a client still sending its body then gets a broken
        pipe instead of the answer already sent.
        """
        left = min(length, DRAIN_MAX_BYTES)
        deadline = time.monotonic() + DRAIN_SECONDS
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)  # the answer is complete: the client sees its end
            while left > 0 and time.monotonic() < deadline:
                self.connection.settimeout(max(0.05, min(2.0, deadline - time.monotonic())))
                chunk = self.connection.recv(min(left, 1 << 16))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:  # timeout or the client closed first: nothing more to do
            pass


class _TooLarge(RequestError):
    """A body over :data:`MAX_BODY_BYTES` (answered 413, then drained)."""

    def __init__(self, length: int) -> None:
        super().__init__(
            f"request body is larger than {MAX_BODY_BYTES} bytes ({length})",
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        )
        self.length = length


class CorpusServer(ThreadingHTTPServer):
    """A threading HTTP server answering infini-gram API requests from quco indexes."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog (socketserver's default of 5 resets bursts of clients)

    def __init__(self, address: tuple[str, int], handler: QueryHandler) -> None:
        super().__init__(address, _Handler)
        self.handler = handler
        self.thread: threading.Thread | None = None
        self._open: set[Any] = set()  # kept-alive connections, cut by close()
        self._open_lock = threading.Lock()

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        try:  # headers and body are two writes: without this, Nagle + delayed ACK add ~40 ms per kept-alive answer
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:  # pragma: no cover - not TCP
            pass
        with self._open_lock:
            self._open.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = str(host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (client gone, reset): one log line, no traceback on stderr."""
        exc = sys.exc_info()[1]
        log.debug("quco serve: connection from %s failed: %r", client_address, exc)

    def close(self) -> None:
        """Stop serving (if serving) and release the socket and the indexes."""
        if self.thread is not None:
            self.shutdown()
            self.thread.join(timeout=10)
            self.thread = None
        self.server_close()
        with self._open_lock:
            conns, self._open = list(self._open), set()
        for c in conns:  # a closed server answers nothing more, kept-alive connections included
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        _close_owned(self.handler.indexes.values())


# ---------------------------------------------------------------- opening


def check_name(name: str) -> str:
    """An index name as given (letters, digits, ``.``, ``_``, ``-``).

    Raises:
        BadInputError: a name with other characters.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BadInputError(
            f"bad index name {name!r}: use letters, digits, '.', '_' and '-' (e.g. v4_olmo-2-0325-32b-instruct_llama)"
        )
    return name


def split_named(arg: str | Path) -> tuple[str | None, Path]:
    """``NAME=DIR`` -> (NAME, DIR); a bare ``DIR`` (or an existing path holding ``=``) -> (None, DIR)."""
    if isinstance(arg, str) and "=" in arg and not os.path.exists(arg):
        name, _, d = arg.partition("=")
        if not d:
            raise BadInputError(f"{arg!r}: give NAME=DIR with a directory after '='")
        return check_name(name), Path(d)
    return None, Path(arg)


def open_indexes(dirs: Sequence[str | Path | CorpusStats], **kwargs: Any) -> list[ServedIndex]:
    """Open each index directory (or take an open backend) under its name.

    Args:
        dirs: ``NAME=DIR`` strings, index directories (named after their
            basename), or already opened backends (named by their
            ``index_dir`` attribute's basename, else ``index<i>``).
        **kwargs: passed to :class:`~quco.corpus.local.LocalStats`.

    Raises:
        BadInputError: a bad name, or two indexes with the same name.
    """
    out: list[ServedIndex] = []
    try:
        _open_into(out, dirs, kwargs)
    except BaseException:
        _close_owned(out)
        raise
    return out


def _open_into(
    out: list[ServedIndex], dirs: Sequence[str | Path | CorpusStats], kwargs: dict[str, Any]
) -> None:
    named: list[tuple[str, Path | CorpusStats]] = []
    for i, d in enumerate(dirs):  # every name first, so that a clash is reported before anything opens
        what: Path | CorpusStats
        if isinstance(d, CorpusStats):
            src = getattr(d, "index_dir", None)
            name, what = (Path(str(src)).name if src else f"index{i}"), d
        else:
            given, path = split_named(d)
            name, what = given or Path(os.path.abspath(path)).name or str(path), path
        if any(n == name for n, _ in named):
            raise BadInputError(f"two indexes are named {name!r}: name them with NAME=DIR")
        named.append((name, what))
    for name, what in named:
        if isinstance(what, CorpusStats):
            out.append(ServedIndex(name, what, owned=False))
        else:
            from quco.corpus.local import LocalStats

            out.append(ServedIndex(name, LocalStats(what, **kwargs)))


def _close_owned(indexes: Iterable[ServedIndex]) -> None:
    for ix in indexes:
        if ix.owned:
            ix.stats.close()


def make_server(
    dirs: Sequence[str | Path | CorpusStats],
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    aliases: Sequence[str] = (),
    **kwargs: Any,
) -> CorpusServer:
    """A server (not yet serving) over ``dirs``; ``port=0`` picks a free port.

    Args:
        dirs: see :func:`open_indexes`.
        host: address to bind.
        port: port to listen on.
        aliases: other names of the first (default) index.
        **kwargs: passed to :class:`~quco.corpus.local.LocalStats`.

    Raises:
        BadInputError: bad names or aliases.
        BackendUnavailableError: the address cannot be bound.
    """
    from quco.errors import BackendUnavailableError

    for alias in aliases:  # before opening anything
        check_name(alias)
    opened = open_indexes(dirs, **kwargs)
    try:
        handler = QueryHandler(opened, aliases)
    except BaseException:
        _close_owned(opened)
        raise
    try:
        return CorpusServer((host, port), handler)
    except OSError as exc:
        _close_owned(handler.indexes.values())
        raise BackendUnavailableError(
            f"cannot listen on {host}:{port}: {os.strerror(exc.errno or 0)}"
        ) from exc


def serve_in_thread(
    dirs: Sequence[str | Path | CorpusStats],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    aliases: Sequence[str] = (),
    **kwargs: Any,
) -> tuple[CorpusServer, str]:
    """Start a server in a daemon thread (for tests and benchmarks).

    Returns:
        The server (call its ``close()`` when done) and its URL.
    """
    server = make_server(dirs, host, port, aliases=aliases, **kwargs)
    thread = threading.Thread(target=server.serve_forever, name="quco-serve", daemon=True)
    thread.start()
    server.thread = thread
    return server, server.url
