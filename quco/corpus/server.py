"""``quco serve``: a private index behind the infini-gram HTTP API.

The server answers ``POST`` requests in the public infini-gram API's format
(a JSON object with ``index``, ``query_type``, ``query`` or ``query_ids``...)
for three query types, with the same answer fields:

- ``count``: ``{"count", "approx", "latency", "token_ids", "tokens"}``. A text
  term counts every surface form exactly as
  :meth:`~quco.corpus.local.LocalStats.count` does. ``"A AND B"`` is quco's exact
  co-occurrence (``LocalStats.cooccur`` / ``cooccur_variants``), in window mode
  with ``window = max_diff_tokens`` (default 100, as the public API), or in
  document mode with the extension field ``"mode": "doc"``; the answer echoes
  ``"mode"``. ``"A OR B"`` clauses union the terms' forms. ``max_clause_freq`` is
  accepted and echoed; counts stay exact (or say ``approx`` when the local
  backend's own occurrence cap was reached).
- ``find``: ``{"cnt", "segment_by_shard", ...}`` for one term (suffix-array
  ranges per shard); a text term answers for each surface form under
  ``"variants"``, ``cnt`` being their sum.
- ``search_docs``: documents containing the query terms (one term, or two
  ``AND`` clauses within ``max_diff_tokens``), with ``text``, ``metadata``,
  ``token_ids``, ``doc_ix`` (global), ``shard``, ``doc_len``, ``disp_len``.

``GET /health`` answers ``{"status": "ok", "indexes": [...]}``. Bad requests
(malformed JSON, unknown ``query_type`` or ``index``, a missing or malformed
field, a body over 64 KiB, a query over 1000 characters) get a 4xx answer
``{"error": ...}``. Requests are served by threads; each index is used by one
request at a time.
"""

from __future__ import annotations

import json
import logging
import os
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

from quco.corpus.base import CorpusStats
from quco.errors import BadInputError, QucoError

log = logging.getLogger(__name__)

#: largest request body accepted, in bytes
MAX_BODY_BYTES = 64 * 1024
#: largest text query accepted, in characters (the public API's limit)
MAX_QUERY_CHARS = 1000
#: largest number of token ids in a ``query_ids`` request
MAX_QUERY_IDS = 1000
#: the public API's defaults for CNF queries
DEFAULT_MAX_DIFF_TOKENS = 100
DEFAULT_MAX_CLAUSE_FREQ = 50_000
#: ``search_docs`` limits
DEFAULT_MAXNUM = 1
MAX_MAXNUM = 100
DEFAULT_MAX_DISP_LEN = 1000
#: occurrences scanned per clause by ``search_docs``
SEARCH_SCAN_LIMIT = 100_000

QUERY_TYPES = ("count", "find", "search_docs")


class RequestError(QucoError):
    """A request the server rejects (answered with ``status`` and ``{"error": message}``)."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = int(status)


@dataclass
class ServedIndex:
    """One index behind the server, with the lock that serializes its use."""

    name: str
    stats: CorpusStats
    owned: bool = True  # opened by the server, so closed by it
    lock: threading.Lock = field(default_factory=threading.Lock)


# ---------------------------------------------------------------------- parsing

Clause = list[str]  # the terms of one OR clause (text query)
IdClause = list[list[int]]  # the token-id sequences of one OR clause


def _get_int(
    payload: Mapping[str, Any], key: str, default: int, *, lo: int = 1, hi: int | None = None
) -> int:
    v = payload.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        bound = f" and at most {hi}" if hi is not None else ""
        raise RequestError(f"{key} must be an integer of at least {lo}{bound}")
    return v


def _text_cnf(query: Any) -> list[Clause]:
    if not isinstance(query, str):
        raise RequestError("query must be a string")
    if not query.strip():
        raise RequestError("query is empty")
    if len(query) > MAX_QUERY_CHARS:
        raise RequestError(f"query is longer than {MAX_QUERY_CHARS} characters")
    clauses = []
    for part in query.split(" AND "):
        terms = [t.strip() for t in part.split(" OR ")]
        if any(not t for t in terms):
            raise RequestError("query has an empty term around AND/OR")
        clauses.append(terms)
    return clauses


def _is_ids(x: Any) -> bool:
    return (
        isinstance(x, list)
        and bool(x)
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in x)
    )


def _ids_cnf(query_ids: Any) -> tuple[bool, list[IdClause]]:
    """Parse ``query_ids``: (is_cnf, clauses). A flat id list is one clause of one sequence."""
    if _is_ids(query_ids):
        if len(query_ids) > MAX_QUERY_IDS:
            raise RequestError(f"query_ids holds more than {MAX_QUERY_IDS} ids")
        return False, [[list(query_ids)]]
    if (
        isinstance(query_ids, list)
        and query_ids
        and all(isinstance(c, list) and c and all(_is_ids(s) for s in c) for c in query_ids)
    ):
        if sum(len(s) for c in query_ids for s in c) > MAX_QUERY_IDS:
            raise RequestError(f"query_ids holds more than {MAX_QUERY_IDS} ids")
        return True, [[list(s) for s in c] for c in query_ids]
    raise RequestError(
        "query_ids must be a list of token ids, or a CNF: a list of clauses, each a list of id lists"
    )


# ---------------------------------------------------------------------- engine


class QueryHandler:
    """Answers API payloads (dicts) from named indexes; independent of HTTP.

    Args:
        indexes: the served indexes, the first being the default.
    """

    def __init__(self, indexes: Sequence[ServedIndex]) -> None:
        if not indexes:
            raise BadInputError("quco serve needs at least one index")
        self.indexes = {ix.name: ix for ix in indexes}
        self.default = indexes[0].name

    def health(self) -> dict[str, Any]:
        """The ``GET /health`` answer: ``{"status", "indexes", "default", "info"}``.

        ``info`` says what each index holds (vocabulary hash, case matching,
        documents, tokens, and its ``partition`` when it is one part of a
        corpus split over several servers), so that a client can check a set
        of shards (:mod:`quco.corpus.sharded`).
        """
        from quco.corpus.sharded import describe

        info = {name: describe(ix.stats) for name, ix in self.indexes.items()}
        return {"status": "ok", "indexes": list(self.indexes), "default": self.default, "info": info}

    def handle(self, payload: Any) -> dict[str, Any]:
        """Answer one request.

        Raises:
            RequestError: the request is malformed or cannot be answered.
        """
        t0 = time.perf_counter()
        if not isinstance(payload, dict):
            raise RequestError("the request body must be a JSON object")
        qt = payload.get("query_type")
        if qt not in QUERY_TYPES:
            raise RequestError(f"unknown query_type {qt!r} (this server answers {', '.join(QUERY_TYPES)})")
        name = payload.get("index", payload.get("corpus")) or self.default
        ix = self.indexes.get(name) if isinstance(name, str) else None
        if ix is None:
            raise RequestError(f"unknown index {name!r} (this server has {', '.join(self.indexes)})")
        if "query" not in payload and "query_ids" not in payload:
            raise RequestError("the request needs a 'query' (text) or 'query_ids' (token ids)")
        try:
            with ix.lock:
                if qt == "count":
                    out = self._count(ix.stats, payload)
                elif qt == "find":
                    out = self._find(ix.stats, payload)
                else:
                    out = self._search_docs(ix.stats, payload)
        except BadInputError as exc:
            raise RequestError(str(exc)) from exc
        out["latency"] = round((time.perf_counter() - t0) * 1000.0, 3)
        return out

    # -- parsing helpers needing the index

    def _clauses(
        self, stats: CorpusStats, payload: Mapping[str, Any]
    ) -> tuple[bool, list[Clause] | None, list[IdClause]]:
        """(is_cnf, text clauses or None, id clauses). Id clauses are empty for text on a backend without tokenizer."""
        if "query_ids" in payload and payload.get("query") is None:
            cnf, ids = _ids_cnf(payload["query_ids"])
            return cnf, None, ids
        text = _text_cnf(payload.get("query"))
        cnf = len(text) > 1 or len(text[0]) > 1
        if not hasattr(stats, "variants"):
            return cnf, text, []
        return cnf, text, [[v for t in clause for v in stats.variants(t)] for clause in text]

    def _tokens(self, stats: CorpusStats, ids: list[int]) -> list[str]:
        tok = getattr(stats, "tokenizer", None)
        if tok is None:
            return []
        return [str(t) for t in tok.convert_ids_to_tokens(list(ids))]

    def _display(self, stats: CorpusStats, text: list[Clause] | None, ids: list[IdClause]) -> dict[str, Any]:
        """``token_ids`` and ``tokens`` fields: for text terms, their first (word-initial) form."""
        if not ids or not any(ids):
            return {}
        if text is not None and hasattr(stats, "variants"):
            firsts = [[(stats.variants(t) or [[]])[0] for t in clause] for clause in text]
        else:
            firsts = ids
        if len(firsts) == 1 and len(firsts[0]) == 1:
            seq = firsts[0][0]
            return {"token_ids": seq, "tokens": self._tokens(stats, seq)}
        return {
            "token_ids": firsts,
            "tokens": [[self._tokens(stats, s) for s in clause] for clause in firsts],
        }

    # -- query types

    def _count(self, stats: CorpusStats, payload: Mapping[str, Any]) -> dict[str, Any]:
        mdt = _get_int(payload, "max_diff_tokens", DEFAULT_MAX_DIFF_TOKENS)
        mcf = _get_int(payload, "max_clause_freq", DEFAULT_MAX_CLAUSE_FREQ)
        mode = payload.get("mode", "window")
        if mode not in ("window", "doc"):
            raise RequestError("mode must be 'window' or 'doc'")
        cnf, text, ids = self._clauses(stats, payload)
        if len(ids or text or []) > 2:
            raise RequestError("this server counts at most two AND clauses")
        extra: dict[str, Any] = {}
        if not cnf:
            c = stats.count(text[0][0]) if text is not None else _count_ids(stats, ids[0][0])
        elif len(ids or text or []) == 1:  # one OR clause: the forms' counts add up
            if ids:
                parts = [_count_ids(stats, s) for s in ids[0]]
            else:
                parts = [stats.count(t) for t in text[0]]  # type: ignore[index]
            c = _sum(parts)
        else:
            window = None if mode == "doc" else mdt
            if text is not None and all(len(cl) == 1 for cl in text):
                c = stats.cooccur(text[0][0], text[1][0], window=window, mode=mode)
            elif ids and hasattr(stats, "cooccur_variants"):
                c = stats.cooccur_variants(ids[0], ids[1], window=window, mode=mode)
            else:
                raise RequestError("OR clauses and query_ids need a tokenized index")
            extra = {"mode": mode, "max_diff_tokens": mdt, "max_clause_freq": mcf}
        out: dict[str, Any] = {"count": int(c.value), "approx": bool(c.approx)}
        out.update(self._display(stats, text, ids))
        out.update(extra)
        return out

    def _find(self, stats: CorpusStats, payload: Mapping[str, Any]) -> dict[str, Any]:
        if not hasattr(stats, "find_ids"):
            raise RequestError("find needs a local index")
        cnf, text, ids = self._clauses(stats, payload)
        if len(ids) != 1 or (text is not None and len(text[0]) != 1) or (text is None and cnf):
            raise RequestError("find answers a single term (no AND/OR)")
        variants: list[dict[str, Any]] = []
        for seq in ids[0]:
            cnt, segs = stats.find_ids(seq)
            variants.append(
                {
                    "cnt": int(cnt),
                    "segment_by_shard": [[int(s), int(e)] for s, e in segs],
                    "token_ids": list(seq),
                    "tokens": self._tokens(stats, seq),
                }
            )
        if not variants:
            raise RequestError("the query has no tokens")
        first = variants[0]
        out: dict[str, Any] = {
            "cnt": sum(int(v["cnt"]) for v in variants),
            "segment_by_shard": first["segment_by_shard"],
            "token_ids": first["token_ids"],
            "tokens": first["tokens"],
        }
        if text is not None:
            out["variants"] = variants
        return out

    def _search_docs(self, stats: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
        if not all(hasattr(stats, a) for a in ("occurrences", "get_doc", "decode")):
            raise RequestError("search_docs needs a local index")
        maxnum = _get_int(payload, "maxnum", DEFAULT_MAXNUM, hi=MAX_MAXNUM)
        max_disp_len = _get_int(payload, "max_disp_len", DEFAULT_MAX_DISP_LEN)
        mdt = _get_int(payload, "max_diff_tokens", DEFAULT_MAX_DIFF_TOKENS)
        mode = payload.get("mode", "window")
        if mode not in ("window", "doc"):
            raise RequestError("mode must be 'window' or 'doc'")
        _cnf, text, ids = self._clauses(stats, payload)
        if len(ids) > 2:
            raise RequestError("search_docs answers at most two AND clauses")
        approx = False
        per_clause: list[dict[tuple[int, int], list[int]]] = []
        for clause in ids:
            pos: dict[tuple[int, int], list[int]] = {}
            n = 0
            for seq in clause:
                occ = stats.occurrences(seq, limit=SEARCH_SCAN_LIMIT)
                n += len(occ)
                for shard, doc, p in occ:
                    pos.setdefault((int(shard), int(doc)), []).append(int(p))
            approx = approx or n >= SEARCH_SCAN_LIMIT
            per_clause.append(pos)
        docs = sorted(per_clause[0]) if per_clause else []
        if len(per_clause) == 2:
            other = per_clause[1]
            docs = [
                d for d in docs if d in other and (mode == "doc" or _near(per_clause[0][d], other[d], mdt))
            ]
        manifest = getattr(stats, "manifest", None)
        starts = _shard_starts(manifest)
        documents = []
        for shard, doc in docs[:maxnum]:
            tokens, metadata = stats.get_doc(shard, doc)
            shown = list(tokens[:max_disp_len])
            documents.append(
                {
                    "doc_ix": starts[shard] + doc if shard < len(starts) else doc,
                    "shard": shard,
                    "doc_len": len(tokens),
                    "disp_len": len(shown),
                    "metadata": metadata,
                    "token_ids": shown,
                    "text": stats.decode(shown),
                }
            )
        out: dict[str, Any] = {
            "message": f"{len(docs)} documents found; showing {len(documents)}",
            "cnt": len(docs),
            "approx": approx,
            "documents": documents,
        }
        disp = self._display(stats, text, ids)
        if disp:
            tid = disp["token_ids"]
            nested = (
                tid
                if tid and isinstance(tid[0], list) and tid[0] and isinstance(tid[0][0], list)
                else [[tid]]
            )
            out["token_idsss"] = nested
            out["tokensss"] = [[self._tokens(stats, s) for s in clause] for clause in nested]
        return out


def _count_ids(stats: CorpusStats, ids: list[int]) -> Any:
    if not hasattr(stats, "count_ids"):
        raise RequestError("query_ids need a tokenized index")
    return stats.count_ids(ids)


def _sum(parts: Sequence[Any]) -> Any:
    from quco.types import Count

    return Count(sum(int(p.value) for p in parts), any(p.approx for p in parts))


def _near(a: list[int], b: list[int], window: int) -> bool:
    """Whether some position of ``a`` is within ``window`` of one of ``b`` (two-pointer)."""
    xs, ys = sorted(a), sorted(b)
    i = j = 0
    while i < len(xs) and j < len(ys):
        if abs(xs[i] - ys[j]) <= window:
            return True
        if xs[i] < ys[j]:
            i += 1
        else:
            j += 1
    return False


def _shard_starts(manifest: Any) -> list[int]:
    shards = getattr(manifest, "shards", None) or ()
    starts, total = [], 0
    for s in shards:
        starts.append(total)
        total += int(getattr(s, "documents", 0))
    return starts


# ------------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    server: CorpusServer
    server_version = "quco-serve"
    protocol_version = "HTTP/1.1"  # keep-alive: pooled clients reuse their connections
    timeout = 60  # seconds an idle kept-alive connection is held

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path.rstrip("/") in ("/health", ""):
            self._send(HTTPStatus.OK, self.server.handler.health())
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no such path {self.path!r}; POST queries to /"})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        try:
            payload = self._read_json()
            body = self.server.handler.handle(payload)
        except RequestError as exc:
            self._send(exc.status, {"error": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 - a bug must not kill the server thread silently
            log.exception("quco serve: internal error")
            self._send(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(exc).__name__}"})
            return
        self._send(HTTPStatus.OK, body)

    def _read_json(self) -> Any:
        length_s = self.headers.get("Content-Length")
        if length_s is None:
            self.close_connection = True  # the body, if any, is unread
            raise RequestError("the request needs a Content-Length", HTTPStatus.LENGTH_REQUIRED)
        try:
            length = int(length_s)
        except ValueError:
            self.close_connection = True
            raise RequestError("Content-Length is not a number") from None
        if length < 0:
            self.close_connection = True
            raise RequestError("Content-Length is negative")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            # drain a bounded amount so that the client reads our answer, not a reset
            left = min(length, 16 * MAX_BODY_BYTES)
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
            raise RequestError(
                f"request body is larger than {MAX_BODY_BYTES} bytes", HTTPStatus.REQUEST_ENTITY_TOO_LARGE
            )
        raw = self.rfile.read(length)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError("the request body is not valid JSON") from None


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

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A kept-alive connection reset or timed out by its client is routine: logged, not printed."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            log.debug("connection from %s ended: %s", client_address, exc)
            return
        super().handle_error(request, client_address)

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


def open_indexes(dirs: Sequence[str | Path | CorpusStats], **kwargs: Any) -> list[ServedIndex]:
    """Open each index directory (or take an open backend) under its name (the directory's basename).

    Args:
        dirs: index directories, or already opened backends (named by their
            ``index_dir`` attribute's basename, else ``index<i>``).
        **kwargs: passed to :class:`~quco.corpus.local.LocalStats`.

    Raises:
        BadInputError: two indexes would have the same name.
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
    for i, d in enumerate(dirs):
        if isinstance(d, CorpusStats):
            stats = d
            src = getattr(d, "index_dir", None)
            name = Path(str(src)).name if src else f"index{i}"
        else:
            from quco.corpus.local import LocalStats

            path = Path(d)
            name = Path(os.path.abspath(path)).name or str(path)
            stats = LocalStats(path, **kwargs)
        if any(ix.name == name for ix in out):
            if not isinstance(d, CorpusStats):
                stats.close()
            raise BadInputError(f"two indexes are named {name!r}: give them directories with different names")
        out.append(ServedIndex(name, stats, owned=not isinstance(d, CorpusStats)))


def _close_owned(indexes: Iterable[ServedIndex]) -> None:
    for ix in indexes:
        if ix.owned:
            ix.stats.close()


def make_server(
    dirs: Sequence[str | Path | CorpusStats], host: str = "127.0.0.1", port: int = 8000, **kwargs: Any
) -> CorpusServer:
    """A server (not yet serving) over ``dirs``; ``port=0`` picks a free port.

    Raises:
        BackendUnavailableError: the address cannot be bound.
    """
    from quco.errors import BackendUnavailableError

    handler = QueryHandler(open_indexes(dirs, **kwargs))
    try:
        return CorpusServer((host, port), handler)
    except OSError as exc:
        _close_owned(handler.indexes.values())
        raise BackendUnavailableError(
            f"cannot listen on {host}:{port}: {os.strerror(exc.errno or 0)}"
        ) from exc


def serve_in_thread(
    dirs: Sequence[str | Path | CorpusStats], host: str = "127.0.0.1", port: int = 0, **kwargs: Any
) -> tuple[CorpusServer, str]:
    """Start a server in a daemon thread (for tests and benchmarks).

    Returns:
        The server (call its ``close()`` when done) and its URL.
    """
    server = make_server(dirs, host, port, **kwargs)
    thread = threading.Thread(target=server.serve_forever, name="quco-serve", daemon=True)
    thread.start()
    server.thread = thread
    return server, server.url
