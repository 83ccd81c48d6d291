"""The infini-gram API's requests over a corpus backend, independent of HTTP.

:func:`count`, :func:`find` and :func:`search_docs` answer one request
payload (a dict in the public API's format) from a
:class:`~quco.corpus.base.CorpusStats`; :class:`RequestError` says why one
cannot be answered (the server turns it into a 4xx ``{"error": ...}``).

Queries. ``query`` is a text: one term, or a CNF of terms joined by
``" OR "`` inside clauses and ``" AND "`` between clauses (OR binds tighter,
as in the API: ``"A OR B AND C"`` is ``(A or B) and C``). ``query_ids`` is a
list of token ids (one term), or a CNF as three nested lists (clauses, terms,
token ids). A text term counts every surface form of the term (see
:class:`~quco.corpus.local.LocalStats`); an id sequence counts itself.

Counts (``query_type: "count"``), exact unless said otherwise:

- one term: its occurrences;
- one clause ``A OR B``: the sum of the terms' occurrences (a position where
  two terms start counts once per term, as the API's sum does);
- two or more clauses, ``mode: "window"`` (default): the number of ways to
  pick one occurrence of every clause, all in one document, whose starts lie
  within ``max_diff_tokens`` tokens of each other (largest minus smallest).
  For two terms this is the number of (a, b) occurrence pairs at most
  ``max_diff_tokens`` apart. The engine's own ``count_cnf`` counts anchored
  matches approximately instead; quco's count is exact.
- two or more clauses, ``mode: "doc"`` (a quco extension): the number of
  documents holding every clause; ``max_diff_tokens`` is ignored.
- ``max_clause_freq``: in a query of two or more clauses, a clause with more
  occurrences than this is represented by a seeded uniform sample of that
  many, the count is scaled up and the answer has ``"approx": true``, as the
  API does (a backend's own occurrence cap, 100,000 by default for
  LocalStats, applies too). One-clause counts are always exact.

Limits (those of the public API; beyond them: a 400 answer): a text query of
at most 1,000 characters and 500 tokens, at most 4 clauses of at most 4
terms, ``max_diff_tokens`` in [1, 1000] (default 100), ``max_clause_freq``
in [1, 500000] (default 50,000).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from quco.corpus.base import CorpusStats
from quco.errors import QucoError
from quco.types import Count

#: largest text query accepted, in characters (the public API's limit)
MAX_QUERY_CHARS = 1000
#: largest query in tokens: token ids of ``query_ids``, or first forms of the text terms
MAX_QUERY_TOKENS = 500
#: AND clauses per query, OR terms per clause (the public API's limits)
MAX_CLAUSES = 4
MAX_TERMS_PER_CLAUSE = 4
#: the public API's defaults and limits for CNF queries
DEFAULT_MAX_DIFF_TOKENS = 100
MAX_DIFF_TOKENS = 1000
DEFAULT_MAX_CLAUSE_FREQ = 50_000
MAX_CLAUSE_FREQ = 500_000
#: ``search_docs`` limits
DEFAULT_MAXNUM = 1
MAX_MAXNUM = 100
DEFAULT_MAX_DISP_LEN = 1000
MAX_DISP_LEN = 10_000
#: occurrences scanned per clause by ``search_docs``
SEARCH_SCAN_LIMIT = 100_000

QUERY_TYPES = ("count", "find", "search_docs")


class RequestError(QucoError):
    """A request that cannot be answered (answered with ``status`` and ``{"error": message}``)."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST) -> None:
        super().__init__(message)
        self.status = int(status)


@dataclass(frozen=True)
class Query:
    """A parsed query.

    Attributes:
        text: the text terms per clause, or None for ``query_ids``.
        ids: the token-id sequences per clause (a text term gives all its
            surface forms); empty for text on a backend without a tokenizer.
        cnf: whether the query was written as a CNF (AND/OR, or nested ids).
    """

    text: list[list[str]] | None
    ids: list[list[list[int]]]
    cnf: bool

    @property
    def clauses(self) -> int:
        return len(self.text) if self.text is not None else len(self.ids)


# ---------------------------------------------------------------------- fields


def int_field(
    payload: Mapping[str, Any], key: str, default: int, *, lo: int = 1, hi: int | None = None
) -> int:
    """An optional integer field in ``[lo, hi]``; absent or null gives ``default``."""
    v = payload.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        bound = f" and at most {hi}" if hi is not None else ""
        raise RequestError(f"{key} must be an integer of at least {lo}{bound}")
    return v


def mode_field(payload: Mapping[str, Any]) -> str:
    mode = payload.get("mode", "window")
    if mode not in ("window", "doc"):
        raise RequestError("mode must be 'window' or 'doc'")
    return str(mode)


def text_cnf(query: Any) -> list[list[str]]:
    """The clauses (lists of terms) of a text query."""
    if not isinstance(query, str):
        raise RequestError("query must be a string")
    if len(query) > MAX_QUERY_CHARS:
        raise RequestError(f"query is longer than {MAX_QUERY_CHARS} characters")
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError("query is not valid Unicode (it holds a lone surrogate)") from None
    if not query.strip():
        raise RequestError("query is empty")
    clauses = []
    for part in query.split(" AND "):
        terms = [t.strip() for t in part.split(" OR ")]
        if any(not t for t in terms):
            raise RequestError("query has an empty term around AND/OR")
        clauses.append(terms)
    _check_shape([len(c) for c in clauses])
    return clauses


def _check_shape(terms_per_clause: list[int]) -> None:
    if len(terms_per_clause) > MAX_CLAUSES:
        raise RequestError(f"a query has at most {MAX_CLAUSES} AND clauses")
    if any(n > MAX_TERMS_PER_CLAUSE for n in terms_per_clause):
        raise RequestError(f"a clause has at most {MAX_TERMS_PER_CLAUSE} OR terms")


def _is_ids(x: Any) -> bool:
    return (
        isinstance(x, list)
        and bool(x)
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in x)
    )


def ids_cnf(query_ids: Any) -> tuple[bool, list[list[list[int]]]]:
    """Parse ``query_ids``: (is_cnf, clauses). A flat id list is one clause of one sequence."""
    if _is_ids(query_ids):
        clauses = [[list(query_ids)]]
        cnf = False
    elif (
        isinstance(query_ids, list)
        and query_ids
        and all(isinstance(c, list) and c and all(_is_ids(s) for s in c) for c in query_ids)
    ):
        clauses = [[list(s) for s in c] for c in query_ids]
        cnf = True
    else:
        raise RequestError(
            "query_ids must be a list of token ids, or a CNF: a list of clauses, each a list of id lists"
        )
    _check_shape([len(c) for c in clauses])
    if sum(len(s) for c in clauses for s in c) > MAX_QUERY_TOKENS:
        raise RequestError(f"query_ids holds more than {MAX_QUERY_TOKENS} token ids")
    return cnf, clauses


def parse_query(stats: CorpusStats, payload: Mapping[str, Any]) -> Query:
    """The query of a payload: ``query_ids`` when ``query`` is absent or null, else ``query``."""
    if payload.get("query") is None:
        if "query_ids" not in payload:
            raise RequestError("the request needs a 'query' (text) or 'query_ids' (token ids)")
        cnf, ids = ids_cnf(payload["query_ids"])
        return Query(None, ids, cnf)
    text = text_cnf(payload["query"])
    cnf = len(text) > 1 or len(text[0]) > 1
    variants = getattr(stats, "variants", None)
    if variants is None:
        return Query(text, [], cnf)
    forms = [[variants(t) for t in clause] for clause in text]
    if sum(len(f[0]) for clause in forms for f in clause if f) > MAX_QUERY_TOKENS:
        raise RequestError(f"query has more than {MAX_QUERY_TOKENS} tokens")
    return Query(text, [[v for f in clause for v in f] for clause in forms], cnf)


# --------------------------------------------------------------------- display


def _tokens(stats: CorpusStats, ids: list[int]) -> list[str]:
    tok = getattr(stats, "tokenizer", None)
    if tok is None:
        return []
    return [str(t) for t in tok.convert_ids_to_tokens(list(ids))]


def _display(stats: CorpusStats, q: Query) -> dict[str, Any]:
    """``token_ids`` and ``tokens`` fields: for text terms, their first (word-initial) form."""
    if not q.ids or not any(q.ids):
        return {}
    if q.text is not None and hasattr(stats, "variants"):
        firsts = [[(stats.variants(t) or [[]])[0] for t in clause] for clause in q.text]
    else:
        firsts = q.ids
    if len(firsts) == 1 and len(firsts[0]) == 1:
        seq = firsts[0][0]
        return {"token_ids": seq, "tokens": _tokens(stats, seq)}
    return {"token_ids": firsts, "tokens": [[_tokens(stats, s) for s in clause] for clause in firsts]}


# ---------------------------------------------------------------- query types


def count(stats: CorpusStats, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a ``count`` request (see the module docstring)."""
    mdt = int_field(payload, "max_diff_tokens", DEFAULT_MAX_DIFF_TOKENS, hi=MAX_DIFF_TOKENS)
    mcf = int_field(payload, "max_clause_freq", DEFAULT_MAX_CLAUSE_FREQ, hi=MAX_CLAUSE_FREQ)
    mode = mode_field(payload)
    q = parse_query(stats, payload)
    extra: dict[str, Any] = {}
    if q.clauses == 1:
        if q.text is not None and not q.ids:  # a backend without tokenizer: its own term counts
            c = _sum([stats.count(t) for t in q.text[0]])
        else:
            c = _sum([_count_ids(stats, s) for s in q.ids[0]])
    else:
        window = None if mode == "doc" else mdt
        count_cnf = getattr(stats, "count_cnf", None)
        if count_cnf is not None and q.ids:
            c = count_cnf(q.ids, window=window, mode=mode, max_clause_freq=mcf)
        elif q.text is not None and len(q.text) == 2 and all(len(cl) == 1 for cl in q.text):
            c = stats.cooccur(q.text[0][0], q.text[1][0], window=window, mode=mode)  # type: ignore[arg-type]
        else:
            raise RequestError("AND of more than two terms, OR clauses and query_ids need a local index")
        extra = {"mode": mode, "max_diff_tokens": mdt, "max_clause_freq": mcf}
    out: dict[str, Any] = {"count": int(c.value), "approx": bool(c.approx)}
    out.update(_display(stats, q))
    out.update(extra)
    return out


def find(stats: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a ``find`` request: suffix-array ranges of one term (each surface form under ``variants``)."""
    if not hasattr(stats, "find_ids"):
        raise RequestError("find needs a local index")
    q = parse_query(stats, payload)
    if q.cnf or len(q.ids) != 1:
        raise RequestError("find answers a single term (no AND/OR)")
    variants: list[dict[str, Any]] = []
    for seq in q.ids[0]:
        cnt, segs = stats.find_ids(seq)
        variants.append(
            {
                "cnt": int(cnt),
                "segment_by_shard": [[int(s), int(e)] for s, e in segs],
                "token_ids": list(seq),
                "tokens": _tokens(stats, seq),
            }
        )
    first = variants[0]
    out: dict[str, Any] = {
        "cnt": sum(int(v["cnt"]) for v in variants),
        "segment_by_shard": first["segment_by_shard"],
        "token_ids": first["token_ids"],
        "tokens": first["tokens"],
    }
    if q.text is not None:
        out["variants"] = variants
    return out


def search_docs(stats: Any, payload: Mapping[str, Any]) -> dict[str, Any]:
    """Answer a ``search_docs`` request: documents holding one term, or two AND clauses within the window."""
    if not all(hasattr(stats, a) for a in ("occurrences", "get_doc", "decode")):
        raise RequestError("search_docs needs a local index")
    maxnum = int_field(payload, "maxnum", DEFAULT_MAXNUM, hi=MAX_MAXNUM)
    max_disp_len = int_field(payload, "max_disp_len", DEFAULT_MAX_DISP_LEN, hi=MAX_DISP_LEN)
    mdt = int_field(payload, "max_diff_tokens", DEFAULT_MAX_DIFF_TOKENS, hi=MAX_DIFF_TOKENS)
    mode = mode_field(payload)
    q = parse_query(stats, payload)
    if len(q.ids) > 2:
        raise RequestError("search_docs answers at most two AND clauses")
    approx = False
    per_clause: list[dict[tuple[int, int], list[int]]] = []
    for clause in q.ids:
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
        docs = [d for d in docs if d in other and (mode == "doc" or _near(per_clause[0][d], other[d], mdt))]
    starts = _shard_starts(getattr(stats, "manifest", None))
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
    disp = _display(stats, q)
    if disp:
        tid = disp["token_ids"]
        nested = (
            tid if tid and isinstance(tid[0], list) and tid[0] and isinstance(tid[0][0], list) else [[tid]]
        )
        out["token_idsss"] = nested
        out["tokensss"] = [[_tokens(stats, s) for s in clause] for clause in nested]
    return out


ANSWERS = {"count": count, "find": find, "search_docs": search_docs}


def _count_ids(stats: CorpusStats, ids: list[int]) -> Count:
    fn = getattr(stats, "count_ids", None)
    if fn is None:
        raise RequestError("query_ids need a tokenized index")
    result: Count = fn(ids)
    return result


def _sum(parts: Sequence[Count]) -> Count:
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
