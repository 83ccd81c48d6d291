"""CNF counts (AND of OR clauses) against brute force over the tiny corpus's token ids.

The brute force enumerates, per document, every choice of one occurrence per clause
(window mode: largest minus smallest start <= window) or checks that every clause
occurs (doc mode). Through LocalStats.count_cnf and through a real ``quco serve``.
"""

from __future__ import annotations

import itertools
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quco.types import Count

pytestmark = pytest.mark.slow

#: terms of the tiny corpus (rare and common, multi-token, absent)
TERMS = [
    "Paris", "France", "Berlin", "Germany", "capital", "the capital", "is", "Tokyo", "Kyoto",
    "Marie Curie", "Warsaw", "Rome", "Italy", "First", "London", "Spain", "city", "Zyxwvut",
]  # fmt: skip


def _ids(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


class BruteCnf:
    """Brute-force CNF counts over the tokenized documents."""

    def __init__(self, stats, docs: list[str]) -> None:
        self.stats = stats
        self.docs = [_ids(stats.tokenizer, d) for d in docs]

    def positions(self, clause: list[list[int]]) -> dict[int, list[int]]:
        """Document -> start positions of any sequence of the clause (one entry per sequence matched)."""
        out: dict[int, list[int]] = defaultdict(list)
        for seq in clause:
            n = len(seq)
            for d, doc in enumerate(self.docs):
                out[d] += [i for i in range(len(doc) - n + 1) if doc[i : i + n] == seq]
        return out

    def count(self, clauses: list[list[list[int]]], window: int | None) -> int:
        per = [self.positions(c) for c in clauses]
        if len(clauses) == 1:
            return sum(len(v) for v in per[0].values())
        docs = set.intersection(*(set(d for d, v in p.items() if v) for p in per))
        if window is None:
            return len(docs)
        return sum(
            1
            for d in docs
            for pick in itertools.product(*(p[d] for p in per))
            if max(pick) - min(pick) <= window
        )


@pytest.fixture(scope="module")
def brute(small_stats, tiny_corpus_docs) -> BruteCnf:
    return BruteCnf(small_stats, tiny_corpus_docs)


def _clauses(stats, text: list[list[str]]) -> list[list[list[int]]]:
    return [[v for t in clause for v in stats.variants(t)] for clause in text]


@pytest.mark.parametrize(
    "query",
    [
        [["Paris"], ["France"]],
        [["Paris"], ["France"], ["capital"]],
        [["Paris", "Berlin"], ["France", "Germany"]],
        [["Paris", "Berlin", "Rome"], ["capital"], ["the capital", "is"], ["France", "Germany", "Italy"]],
        [["Tokyo"], ["Kyoto"], ["city"]],
        [["Paris"], ["Paris"], ["France"]],  # a clause repeated: an occurrence pairs with itself
        [["Paris"], ["Zyxwvut"], ["France"]],
        [["Berlin", "Zyxwvut"]],
    ],
)
def test_cnf_counts_equal_brute_force(small_stats, brute, query) -> None:
    ids = _clauses(small_stats, query)
    for window in (0, 3, 10, 100, 1000, 5000):
        got = small_stats.count_cnf(ids, window=window)
        assert got == Count(brute.count(ids, window), False), (query, window)
    assert small_stats.count_cnf(ids, window=None, mode="doc") == Count(brute.count(ids, None), False)


def test_two_clauses_equal_cooccur(small_stats) -> None:
    for a, b in (("Paris", "France"), ("Tokyo", "Kyoto"), ("capital", "Berlin")):
        ids = _clauses(small_stats, [[a], [b]])
        for window in (5, 1000):
            assert small_stats.count_cnf(ids, window=window) == small_stats.cooccur(a, b, window=window)
        assert small_stats.count_cnf(ids, window=None, mode="doc") == small_stats.cooccur(a, b, mode="doc")


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    query=st.lists(st.lists(st.sampled_from(TERMS), min_size=1, max_size=3), min_size=1, max_size=4),
    window=st.one_of(st.none(), st.integers(0, 1500)),
)
def test_random_cnf_queries_equal_brute_force(small_stats, brute, query, window) -> None:
    """Invariant: for any AND of up to 4 OR-clauses of up to 3 terms, any window, the exact count."""
    ids = _clauses(small_stats, query)
    mode = "doc" if window is None else "window"
    assert small_stats.count_cnf(ids, window=window, mode=mode) == Count(brute.count(ids, window), False)


def test_clause_frequency_cap_makes_an_estimate_that_says_so(small_stats, brute) -> None:
    ids = _clauses(small_stats, [["the"], ["capital"], ["is"]])
    exact = small_stats.count_cnf(ids, window=50)
    assert exact == Count(brute.count(ids, 50), False) and exact.value > 0
    n_the = small_stats.count("the").value
    capped = small_stats.count_cnf(ids, window=50, max_clause_freq=n_the // 2)
    assert capped.approx and capped.value >= 0
    assert small_stats.count_cnf(ids, window=50, max_clause_freq=n_the) == exact  # at the total: exact
