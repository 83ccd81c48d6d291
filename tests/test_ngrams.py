"""N-gram novelty: the share of an answer's token n-grams (n = 2..5) the corpus never holds and the
longest matched suffix, checked against brute force over the same corpus (a real small index and
the fake corpus), batched, and as optional features the shipped model ignores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from quco.corpus.ngrams import MAX_MATCH, ORDERS, novelty_many
from quco.risk.features import NGRAM_FEATURES, Signals, feature_vector
from quco.testing import FakeCorpus

ANSWERS = [
    "Paris is the capital of France.",
    "Marie Curie was born in Warsaw and won two Nobel Prizes.",
    "Zanzibar is the capital of Iceland, said the purple elephant.",
    "Berlin",
    "",
    "the river bank was quiet and green the river bank was quiet and green the river bank was quiet and green",
]


def brute(docs: list[list[int]], t: list[int]) -> tuple[int, int, int]:
    """(n-grams, novel, longest matched suffix) by scanning every document."""
    def occurs(q: list[int]) -> bool:
        n = len(q)
        return any(d[i : i + n] == q for d in docs for i in range(len(d) - n + 1))

    grams = [t[i : i + n] for n in ORDERS for i in range(len(t) - n + 1)]
    novel = sum(not occurs(g) for g in grams)
    k = 0
    while k < min(len(t), MAX_MATCH) and occurs(t[len(t) - k - 1 :]):
        k += 1
    return len(grams), novel, k


@pytest.mark.slow
def test_novelty_equals_brute_force_on_a_real_index(small_stats) -> None:  # type: ignore[no-untyped-def]
    m = small_stats.manifest
    docs = [small_stats.get_doc(s.index, i)[0] for s in m.shards for i in range(s.documents)]
    got = novelty_many(small_stats, ANSWERS)
    toks = small_stats.tokenize_many([a.strip() for a in ANSWERS])
    for a, t, nv in zip(ANSWERS, toks, got, strict=True):
        assert nv is not None
        assert (nv.ngrams, nv.novel, nv.longest_match) == brute(docs, t), a
        assert nv.tokens == len(t)
    paris, _, purple, berlin, empty, river = got
    assert paris.novel < purple.novel and purple.share > 0.3  # type: ignore[union-attr]
    assert berlin.ngrams == 0 and math.isnan(berlin.share) and berlin.longest_match == 1  # type: ignore[union-attr]
    assert empty.tokens == 0  # type: ignore[union-attr]
    assert river.longest_match > 5  # type: ignore[union-attr]  # grown past the n-gram levels


def test_novelty_on_the_fake_corpus_and_features() -> None:
    corpus = FakeCorpus(["a b c d e f", "x y z"])
    nv = novelty_many(corpus, ["a b c q", "c d e f", "x y z a b c d e f"])
    a, b, c = nv
    assert a is not None and b is not None and c is not None
    # "a b c q": 2-grams ab bc cq (cq novel), 3-grams abc bcq (novel), 4-gram abcq (novel)
    assert (a.ngrams, a.novel, a.longest_match) == (6, 3, 0)
    assert (b.novel, b.longest_match) == (0, 4)
    assert c.longest_match == 6  # "a b c d e f" is the longest suffix that occurs
    f = feature_vector(Signals(novelty=a))
    assert f["ngram_novel_share"] == 0.5 and f["ngram_longest_match"] == 0.0
    assert all(math.isnan(feature_vector(Signals())[n]) for n in NGRAM_FEATURES)


def test_no_novelty_without_an_id_counting_backend() -> None:
    from quco.corpus.base import CorpusStats
    from quco.types import Count

    class Plain(CorpusStats):
        def count(self, term: str) -> Count:
            return Count(1)

        def cooccur(self, a: str, b: str, **kw: object) -> Count:  # type: ignore[override]
            return Count(1)

    assert novelty_many(Plain(), ["a b"]) == [None]


def test_cached_stats_is_looked_through() -> None:
    from quco.corpus.cache import CachedStats

    cached = CachedStats(FakeCorpus(["a b c"]), identity="fake")
    assert novelty_many(cached, ["a b z"])[0].novel == 2  # type: ignore[union-attr]  # "b z", "a b z"


def test_shipped_model_ignores_the_optional_group() -> None:
    from quco.risk.combined import load_default_scorer

    rs = load_default_scorer()
    assert not set(rs.feature_names_) & set(NGRAM_FEATURES)
    from quco.analyze import Analyzer
    from quco.testing import FakeExtractor

    corpus = FakeCorpus(["Paris is the capital of France."] * 5)
    with_ng = Analyzer(FakeExtractor(), corpus, ngrams=True, per_sentence=False).analyze("Capital of France?", "Paris.")
    without = Analyzer(FakeExtractor(), corpus, per_sentence=False).analyze("Capital of France?", "Paris.")
    assert with_ng.signals.novelty is not None and without.signals.novelty is None
    assert rs.probability(with_ng.signals) == rs.probability(without.signals)


def test_analyzer_novelty_is_batched(tmp_path: Path) -> None:
    from quco.analyze import AnalysisItem, Analyzer
    from quco.testing import FakeExtractor

    calls = []

    class Counting(FakeCorpus):
        def count_ids_many(self, seqs):  # type: ignore[no-untyped-def]
            calls.append(len(seqs))
            return super().count_ids_many(seqs)

    an = Analyzer(FakeExtractor(), Counting(["a b c d"]), ngrams=True, per_sentence=False)
    an.analyze_many([AnalysisItem("Q?", "a b c"), AnalysisItem("Q?", "a b c d e")])
    # one lookup batch per level, shared by both answers; n-grams holding the novel "e" are not looked up
    assert calls == [5, 3, 2, 1]
