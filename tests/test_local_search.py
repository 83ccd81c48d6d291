"""LocalStats' own suffix-array search gives the engine's ranges, and its fast
co-occurrence paths agree with a plain reference computation."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _queries(stats, n: int = 300) -> list[list[int]]:
    rng = random.Random(0)
    sep = stats.manifest.separator
    qs: list[list[int]] = [[0], [stats.manifest.vocab_size - 1], [stats.manifest.eos_token_id]]
    for _ in range(n):
        s = rng.randrange(len(stats.manifest.shards))
        ds = stats._ds[s]
        i = rng.randrange(ds.size - 6)
        q = [int(x) for x in ds[i : i + rng.randint(1, 5)] if int(x) != sep] or [5]
        if rng.random() < 0.2:  # a sequence that is likely absent
            q = q[:-1] + [rng.randrange(stats.manifest.vocab_size)]
        qs.append(q)
    for term in ("Paris", "the capital", "Marie Curie", "Zanzibar", "the"):
        qs.extend(stats.variants(term))
    return qs


def test_own_search_equals_engine_find(small_stats):
    for q in _queries(small_stats):
        res = small_stats._engine.find(input_ids=q)
        want = (int(res["cnt"]), [(int(a), int(b)) for a, b in res["segment_by_shard"]])
        small_stats._find_cache.clear()
        assert small_stats._find(q) == want, q


def test_document_lookup_equals_binary_search(small_stats):
    goff = small_stats._goff
    rng = np.random.default_rng(0)
    ptrs = np.sort(rng.integers(0, int(goff[-1]), 5000))
    ptrs = np.concatenate([ptrs, goff[:-1], goff[1:] - 1])
    want = np.searchsorted(goff, ptrs, side="right") - 1
    assert np.array_equal(small_stats._doc_of(ptrs), want)


def test_range_counting_merge_equals_binary_search():
    from quco.corpus.cnf import count_in_ranges as _count_in_ranges

    rng = np.random.default_rng(1)
    for nb, nq in ((50, 10), (50, 40), (1000, 900), (300, 3000), (0, 5), (5, 0)):
        b = np.sort(rng.integers(0, 500, nb))
        lo = np.sort(rng.integers(0, 500, nq))
        hi = lo + rng.integers(0, 30, nq)
        hi = np.maximum.accumulate(hi) if nq else hi
        want = int(sum(((b >= x) & (b <= y)).sum() for x, y in zip(lo, hi, strict=True)))
        assert _count_in_ranges(b, lo, hi) == want, (nb, nq)
