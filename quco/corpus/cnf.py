"""Exact co-occurrence counts of CNF queries over sorted occurrence offsets.

A CNF query is an AND of clauses, each an OR of terms (``A OR B AND C``: OR
binds tighter, as in the infini-gram API). A clause's occurrences are the
occurrences of all its terms together: a position where two terms of one
clause both start counts once per term, as the API's sum over terms does.
Occurrences are given as sorted global byte offsets (see
:class:`Occurrences`); documents are given by ``goff``, the sorted global
byte offset of every document start followed by the end of the last shard.

Two modes, both exact when no clause was sampled:

- ``"doc"``: the number of documents holding at least one occurrence of every
  clause;
- ``"window"``: the number of ways to pick one occurrence of every clause, all
  in one document, whose start positions lie within ``window`` tokens of each
  other (largest minus smallest <= ``window``). For two clauses this is the
  number of (a, b) occurrence pairs at most ``window`` tokens apart.

Sampling: a clause with more occurrences than its cap is represented by a
seeded uniform sample (``fraction`` < 1); the raw count over the samples is
scaled by the inverse product of the fractions and marked approximate (an
estimate of 0 is then not proof of absence).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from quco.errors import BadInputError
from quco.types import Count

#: the largest window (tokens) honoured as such; larger ones mean "whole document"
MAX_WINDOW = (1 << 31) - 1


@dataclass(frozen=True)
class Occurrences:
    """Occurrences of one term or clause (all its variants), possibly a uniform sample.

    ``ptrs`` are sorted global byte offsets (int64) of the occurrences: a
    shard's byte offset in ``tokenized.s`` plus the total size of the shards
    before it, so that sorting them sorts by (document, position). ``total``
    is the true number of occurrences and ``fraction`` the sampled share
    (1.0 = all).
    """

    ptrs: np.ndarray
    total: int
    fraction: float

    @property
    def sampled(self) -> bool:
        return self.fraction < 1.0


DocOf = Callable[[np.ndarray], np.ndarray]


class DocumentMap:
    """Global byte offsets -> global document indexes (int64), for sorted document starts ``goff``.

    A lookup table gives the document holding the start of each
    ``2**bits``-byte block; the few offsets past a document start within
    their block are moved on, and stragglers (blocks holding many starts) are
    resolved by binary search. Blocks are a quarter to half of the mean
    document, so the table has at most four entries per document (four bytes
    each, the size of the offsets themselves) and an offset is mostly at most
    a start or two past its block's document.

    Args:
        goff: sorted document starts in global bytes, ending with the total size.
    """

    def __init__(self, goff: np.ndarray) -> None:
        self.goff = goff
        n_docs = max(1, goff.size - 1)
        total = int(goff[-1])
        self.bits = max(0, int(np.ceil(np.log2(max(total / n_docs / 4, 1.0)))))
        blocks = np.arange((total >> self.bits) + 1, dtype=np.int64) << self.bits
        table = np.searchsorted(goff[:-1], blocks, side="right") - 1
        self.table = table.astype(np.int32 if n_docs < 2**31 else np.int64)

    def __call__(self, gptrs: np.ndarray) -> np.ndarray:
        goff = self.goff
        d = self.table[gptrs >> self.bits].astype(np.int64)
        idx = np.flatnonzero(goff[d + 1] <= gptrs)
        for _ in range(2):
            if idx.size == 0:
                return d
            d[idx] += 1
            idx = idx[goff[d[idx] + 1] <= gptrs[idx]]
        if idx.size:
            d[idx] = np.searchsorted(goff, gptrs[idx], side="right") - 1
        return d


def check_mode(window: int | None, mode: str) -> None:
    """Raise BadInputError for a mode other than "doc"/"window" or a negative window."""
    if mode not in ("doc", "window"):
        raise BadInputError(f"mode must be 'doc' or 'window', not {mode!r}")
    if window is not None and (
        isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 0
    ):
        raise BadInputError(f"window must be a non-negative integer, not {window!r}")


def count_in_ranges(b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> int:
    """``sum(#{x in b: lo[i] <= x <= hi[i]})`` over i, for sorted ``b``, ``lo`` and ``hi``.

    Two binary searches per range when the ranges are few; otherwise two
    merges (a stable sort of two sorted runs is one linear merge): in the
    merge of ``b`` with ``hi`` (ties: ``b`` first), the ``j``-th bound at
    merged position ``k`` has ``k - j`` values of ``b`` at or below it.
    """
    m = lo.size
    if 2 * m < b.size:
        return int((np.searchsorted(b, hi, side="right") - np.searchsorted(b, lo, side="left")).sum())
    tri = m * (m - 1) // 2
    k = np.concatenate([b, hi])
    k <<= 1
    k[b.size :] |= 1  # bounds after equal values: counts x <= hi
    k.sort(kind="stable")
    k &= 1
    upto_hi = int(np.flatnonzero(k).sum()) - tri
    k = np.concatenate([b, lo])
    k <<= 1
    k[: b.size] |= 1  # bounds before equal values: counts x < lo
    k.sort(kind="stable")
    k &= 1
    below_lo = int(np.flatnonzero(k == 0).sum()) - tri
    return upto_hi - below_lo


def _unique_sorted(x: np.ndarray) -> np.ndarray:
    if x.size == 0:
        return x
    keep = np.empty(x.size, dtype=bool)
    keep[0] = True
    np.not_equal(x[1:], x[:-1], out=keep[1:])
    return x[keep]


def cooccurrence(
    clauses: Sequence[Occurrences],
    *,
    goff: np.ndarray,
    doc_of: DocOf,
    width: int,
    window: int | None,
    mode: str,
) -> Count:
    """Co-occurrence count of two or more clauses (see the module docstring).

    Args:
        clauses: the occurrences of each clause (at least two).
        goff: document starts in global bytes, followed by the total size.
        doc_of: global byte offsets -> global document indexes.
        width: bytes per token.
        window: tokens (``mode="window"``); None means document mode.
        mode: ``"window"`` or ``"doc"``.

    Raises:
        BadInputError: fewer than two clauses, or a bad mode or window.
    """
    check_mode(window, mode)
    if len(clauses) < 2:
        raise BadInputError("a co-occurrence needs at least two clauses")
    approx = any(c.sampled for c in clauses)
    if any(c.ptrs.size == 0 for c in clauses):
        return Count(0, approx)
    scale = float(np.prod([c.fraction for c in clauses]))
    if mode == "doc" or window is None:
        raw = _docs_with_all(clauses, goff, doc_of)
        if not approx:
            return Count(raw, False)
        cap = min(min(c.total for c in clauses), goff.size - 1)
        return Count(int(min(round(raw / scale), cap)), True)
    span = min(int(window), MAX_WINDOW) * width
    if len(clauses) == 2:
        raw = _pairs_within(clauses[0].ptrs, clauses[1].ptrs, goff, doc_of, span)
    else:
        raw = _tuples_within([c.ptrs for c in clauses], goff, doc_of, span)
    if not approx:
        return Count(raw, False)
    return Count(int(round(raw / scale)), True)


def _docs_with_all(clauses: Sequence[Occurrences], goff: np.ndarray, doc_of: DocOf) -> int:
    """Documents holding an occurrence of every clause: the smallest clause's documents, filtered."""
    ordered = sorted(clauses, key=lambda c: c.ptrs.size)
    docs = _unique_sorted(doc_of(ordered[0].ptrs))
    for c in ordered[1:]:
        if docs.size == 0:
            break
        first = np.searchsorted(c.ptrs, goff[docs])
        end = np.searchsorted(c.ptrs, goff[docs + 1])
        docs = docs[end > first]
    return int(docs.size)


def _pairs_within(a: np.ndarray, b: np.ndarray, goff: np.ndarray, doc_of: DocOf, span: int) -> int:
    """(x in a, y in b) pairs in one document with ``|x - y| <= span`` bytes.

    Only the smaller set is mapped to documents: each of its occurrences
    counts the other set's offsets within ``span`` that are also within its
    document (two binary searches or merges over the sorted offsets).
    """
    pa, pb = (a, b) if a.size <= b.size else (b, a)
    d = doc_of(pa)
    lo = np.maximum(pa - span, goff[d])
    hi = np.minimum(pa + span, goff[d + 1] - 1)
    return count_in_ranges(pb, lo, hi)


def _tuples_within(ptrs: Sequence[np.ndarray], goff: np.ndarray, doc_of: DocOf, span: int) -> int:
    """Tuples (one offset per clause) in one document whose largest minus smallest is ``<= span``.

    Each tuple is counted once, at its smallest member in the order (offset,
    clause number): for each occurrence ``x`` of clause ``c0`` taken as that
    smallest member, the number of tuples is the product, over the other
    clauses ``c``, of their offsets ``y`` with ``x <= y <= end`` (``c > c0``)
    or ``x < y <= end`` (``c < c0``), where ``end`` is ``x + span`` cut at the
    end of ``x``'s document. Counts per clause within a span are at most
    ``window + 1`` per term, so the int64 products cannot overflow for the
    API's limits (4 clauses of 4 terms, window 1000, 500,000 occurrences).
    """
    total = 0
    for c0, x in enumerate(ptrs):
        end = np.minimum(x + span, goff[doc_of(x) + 1] - 1)
        prod = np.ones(x.size, dtype=np.int64)
        for c, y in enumerate(ptrs):
            if c == c0:
                continue
            first = np.searchsorted(y, x, side="left" if c > c0 else "right")
            prod *= np.searchsorted(y, end, side="right") - first
        total += int(prod.sum())
    return total
