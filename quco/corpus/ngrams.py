"""N-gram novelty of answers: how much of their token sequence the corpus has seen.

For each answer, tokenized in the index's own tokenizer (with a leading
space, as the text reads inside a document):

- ``novel`` / ``ngrams``: of its overlapping token n-grams for every n in
  :data:`ORDERS` (2 to 5), the share that never occurs in the corpus (the
  "n-gram coverage" of Zhang et al. 2025, the paper's extra n-gram check);
- ``longest_match``: the tokens in the longest suffix of the answer that
  occurs in the corpus (infini-gram's ∞-gram match length at the answer's
  last token), up to :data:`MAX_MATCH`.

Counts are exact, through the same engine as every other count (a local
index's suffix-array search, :meth:`quco.corpus.local.LocalStats.count_ids_many`),
and batched over a whole batch of answers: every distinct n-gram is counted
once, level by level (n = 1, 2, ...), and an n-gram that contains a novel
(n-1)-gram is novel without a lookup (it cannot occur if a part of it does not).

A backend that cannot count token sequences (a remote server, whose
tokenizer is not known here) gives no novelty (``None``: the features are
missing, NaN), never a made-up one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from quco.risk.features import Novelty

#: the n-gram orders whose novelty is measured
ORDERS: tuple[int, ...] = (2, 3, 4, 5)
#: longest matched suffix looked for (tokens)
MAX_MATCH = 32

Tokenize = Callable[[Sequence[str]], list[list[int]]]
CountIds = Callable[[Sequence[tuple[int, ...]]], list[int]]


def ngram_backend(stats: Any) -> tuple[Tokenize, CountIds] | None:
    """``(tokenize_many, count_ids_many)`` of ``stats`` or of what it wraps, or ``None``.

    A cache (:class:`~quco.corpus.cache.CachedStats`) is looked through to
    its backend; a sharded corpus counts when every part can (the sum of the
    parts' counts; every part has the same tokenizer).
    """
    seen = 0
    while stats is not None and seen < 8:
        tok, cnt = getattr(stats, "tokenize_many", None), getattr(stats, "count_ids_many", None)
        if callable(tok) and callable(cnt):
            return tok, cnt
        shards = getattr(stats, "shards", None)
        if isinstance(shards, list) and shards:
            parts = [ngram_backend(s) for s in shards]
            if any(p is None for p in parts):
                return None
            backends = [p for p in parts if p is not None]
            return backends[0][0], _summed([c for _t, c in backends])
        stats = getattr(stats, "backend", None)
        seen += 1
    return None


def _summed(counters: Sequence[CountIds]) -> CountIds:
    """A counter that sums the parts' counts (one corpus split by documents)."""

    def count_sum(seqs: Sequence[tuple[int, ...]]) -> list[int]:
        totals = [0] * len(seqs)
        for c in counters:
            for i, v in enumerate(c(seqs)):
                totals[i] += v
        return totals

    return count_sum


def novelty_many(stats: Any, texts: Sequence[str], *, orders: Sequence[int] = ORDERS,
                 max_match: int = MAX_MATCH) -> list[Novelty | None]:
    """The :class:`~quco.risk.features.Novelty` of each text (``None`` for all when ``stats`` cannot count ids).

    Args:
        stats: the corpus backend.
        texts: the answers.
        orders: the n-gram orders measured.
        max_match: the longest matched suffix looked for.
    """
    backend = ngram_backend(stats)
    if backend is None:
        return [None] * len(texts)
    tokenize, count_ids = backend
    toks = [list(t) for t in tokenize([t.strip() for t in texts])] if texts else []
    top = max(max(orders, default=1), 1)
    # novel[(i, n)] per text: whether the n-gram at position i never occurs
    novel: list[dict[tuple[int, int], bool]] = [{} for _ in toks]
    for n in range(1, top + 1):
        need: dict[tuple[int, ...], None] = {}
        for t, nov in zip(toks, novel, strict=True):
            for i in range(len(t) - n + 1):
                if n > 1 and (nov[(i, n - 1)] or nov[(i + 1, n - 1)]):
                    nov[(i, n)] = True  # holds a novel part: cannot occur
                else:
                    need[tuple(t[i : i + n])] = None
        keys = list(need)
        counts = dict(zip(keys, count_ids(keys), strict=True)) if keys else {}
        for t, nov in zip(toks, novel, strict=True):
            for i in range(len(t) - n + 1):
                if (i, n) not in nov:
                    nov[(i, n)] = counts[tuple(t[i : i + n])] == 0
    # the longest matched suffix: known from the levels up to `top`, then grown round by round
    match = []
    for t, nov in zip(toks, novel, strict=True):
        k = 0
        while k < min(len(t), top, max_match) and not nov[(len(t) - k - 1, k + 1)]:
            k += 1
        match.append(k)
    active = [j for j, t in enumerate(toks) if match[j] == top and len(t) > top and top < max_match]
    while active:
        seqs = {j: tuple(toks[j][len(toks[j]) - match[j] - 1 :]) for j in active}
        keys = list(dict.fromkeys(seqs.values()))
        counts = dict(zip(keys, count_ids(keys), strict=True))
        nxt = []
        for j in active:
            if counts[seqs[j]] > 0:
                match[j] += 1
                if match[j] < len(toks[j]) and match[j] < max_match:
                    nxt.append(j)
        active = nxt
    out: list[Novelty | None] = []
    for t, nov, m in zip(toks, novel, match, strict=True):
        grams = [(i, n) for n in orders for i in range(len(t) - n + 1)]
        out.append(Novelty(len(t), len(grams), sum(nov[g] for g in grams), m))
    return out
