"""LocalStats against brute-force counting over the same documents' token ids."""

from __future__ import annotations

import numpy as np
import pytest

from quco.errors import BadInputError, EngineError, TokenizerMismatchError
from quco.types import Count

pytestmark = pytest.mark.slow

TERMS = [
    "Paris", "France", "Berlin", "Germany", "Tokyo", "Kyoto", "Zanzibar", "Reykjavik",
    "Marie Curie", "Warsaw", "Rome", "Italy", "First", "capital", "the capital", "Nile", "London", "paris",
]  # fmt: skip
PAIRS = [
    ("Paris", "France"), ("Berlin", "Germany"), ("Tokyo", "Kyoto"), ("Zanzibar", "Reykjavik"),
    ("Marie Curie", "Warsaw"), ("Rome", "Italy"), ("Paris", "London"), ("capital", "Berlin"),
    ("Paris", "Paris"), ("the capital", "Japan"), ("First", "Berlin"),
]  # fmt: skip
WINDOWS = [0, 5, 50, 1000, 5000]


def _ids(tok, text: str) -> list[int]:
    return list(tok(text, add_special_tokens=False)["input_ids"])


def _variants(tok, term: str) -> list[list[int]]:
    out: list[list[int]] = []
    for form in (" " + term, term):
        ids = _ids(tok, form)
        if ids and ids not in out:
            out.append(ids)
    return out


def _starts(doc: list[int], seq: list[int]) -> list[int]:
    n = len(seq)
    return [i for i in range(len(doc) - n + 1) if doc[i : i + n] == seq]


class Brute:
    """Brute-force counts over the tokenized documents."""

    def __init__(self, tok, docs: list[str]) -> None:
        self.tok = tok
        self.docs = [_ids(tok, d) for d in docs]

    def positions(self, term: str) -> list[tuple[int, int]]:
        return sorted(
            (d, i)
            for v in _variants(self.tok, term)
            for d, doc in enumerate(self.docs)
            for i in _starts(doc, v)
        )

    def count(self, term: str) -> int:
        return len(self.positions(term))

    def cooccur(self, a: str, b: str, window: int | None, mode: str) -> int:
        pa, pb = self.positions(a), self.positions(b)
        if mode == "doc":
            return len({d for d, _ in pa} & {d for d, _ in pb})
        return sum(1 for da, ia in pa for db, ib in pb if da == db and abs(ia - ib) <= window)


@pytest.fixture(scope="module")
def brute(small_stats, tiny_corpus_docs) -> Brute:
    return Brute(small_stats.tokenizer, tiny_corpus_docs)


def test_index_spans_several_shards(small_stats):
    assert len(small_stats.manifest.shards) >= 3
    shards_with_paris = {s for v in small_stats.variants("Paris") for s, _, _ in small_stats.occurrences(v)}
    assert len(shards_with_paris) >= 2


def test_variants_cover_word_and_document_initial_forms(small_stats):
    tok = small_stats.tokenizer
    assert small_stats.variants("Paris") == _variants(tok, "Paris")
    assert len(small_stats.variants("Paris")) == 2  # " Paris" and "Paris" differ
    assert small_stats.variants("  Paris ") == small_stats.variants("Paris")
    with pytest.raises(BadInputError):
        small_stats.variants("   ")


@pytest.mark.parametrize("term", TERMS)
def test_count_equals_brute_force(small_stats, brute, term):
    assert small_stats.count(term) == Count(brute.count(term), False)


def test_document_initial_and_glued_forms_are_counted(small_stats, brute):
    word_initial = small_stats.count_ids(_ids(small_stats.tokenizer, " Paris")).value
    total = small_stats.count("Paris").value
    # doc 0 starts with "Paris", doc 3 has "long.Paris", doc 4 has "France.Paris"
    assert total >= word_initial + 3
    assert small_stats.count("First").value == brute.count("First") >= 1  # "century.First"


@pytest.mark.parametrize("a,b", PAIRS)
def test_cooccur_equals_brute_force(small_stats, brute, a, b):
    for w in WINDOWS:
        got = small_stats.cooccur(a, b, window=w, mode="window")
        assert got == Count(brute.cooccur(a, b, w, "window"), False), (a, b, w)
    assert small_stats.cooccur(a, b, mode="doc") == Count(brute.cooccur(a, b, None, "doc"), False)
    assert small_stats.cooccur(a, b, window=None).value == brute.cooccur(a, b, None, "doc")


def test_far_apart_and_never_cooccurring_pairs(small_stats):
    assert small_stats.cooccur("Tokyo", "Kyoto", window=1000).value == 0
    assert small_stats.cooccur("Tokyo", "Kyoto", window=5000).value == 1
    assert small_stats.cooccur("Tokyo", "Kyoto", mode="doc").value == 1
    assert small_stats.count("Zanzibar").value == 2 and small_stats.count("Reykjavik").value == 2
    assert small_stats.cooccur("Zanzibar", "Reykjavik", mode="doc").value == 0
    assert small_stats.cooccur("Zanzibar", "Reykjavik", window=10**9).value == 0


def test_window_count_is_monotone(small_stats):
    values = [small_stats.cooccur("Paris", "France", window=w).value for w in range(0, 60, 3)]
    assert values == sorted(values) and values[-1] > 0


def test_occurrences_match_brute_force(small_stats, brute):
    base = np.cumsum([0] + [s.documents for s in small_stats.manifest.shards])
    for v in small_stats.variants("Berlin"):
        occ = small_stats.occurrences(v)
        assert occ == sorted(occ)
        got = sorted((int(base[s]) + d, p) for s, d, p in occ)
        want = sorted((d, i) for d, doc in enumerate(brute.docs) for i in _starts(doc, v))
        assert got == want
        assert len(small_stats.occurrences(v, limit=2)) == min(2, len(want))
        cnt, segs = small_stats.find_ids(v)
        assert cnt == len(want) == sum(b - a for a, b in segs)


def test_get_doc_returns_tokens_and_metadata(small_stats, brute, tiny_corpus_docs):
    base = np.cumsum([0] + [s.documents for s in small_stats.manifest.shards])
    for g in (0, 3, 15, len(tiny_corpus_docs) - 1):
        s = int(np.searchsorted(base, g, side="right") - 1)
        ids, meta = small_stats.get_doc(s, g - int(base[s]))
        assert ids == brute.docs[g]
        assert meta["metadata"]["id"] == g and meta["line"] == g + 1
        assert small_stats.decode(ids) == tiny_corpus_docs[g]
    with pytest.raises(BadInputError):
        small_stats.get_doc(0, 10**6)


def test_batched_forms_equal_single_calls(small_stats):
    terms = ["Paris", "Berlin", "Paris", "Nile"]
    assert small_stats.count_many(terms) == [small_stats.count(t) for t in terms]
    pairs = [("Paris", "France"), ("Berlin", "Germany"), ("Paris", "France"), ("Tokyo", "Kyoto")]
    for mode, w in (("window", 5), ("window", 1000), ("doc", None)):
        got = small_stats.cooccur_many(pairs, window=w, mode=mode)
        assert got == [small_stats.cooccur(a, b, window=w, mode=mode) for a, b in pairs]


def test_casefold_counts_case_variants(small_index, small_stats):
    from quco.corpus.local import LocalStats

    assert small_stats.count("paris").value == 0
    with LocalStats(small_index, casefold=True) as folded:
        assert folded.count("paris") == small_stats.count("Paris")
        assert folded.count("PARIS") == small_stats.count("Paris")


def test_sampled_cooccurrence_is_marked_approx_and_close(small_index, small_stats):
    from quco.corpus.local import LocalStats

    exact = small_stats.cooccur("the", "capital", window=50)
    n_the = small_stats.count("the").value
    assert not exact.approx and exact.value > 0
    estimates = []
    for seed in range(20):
        with LocalStats(small_index, max_occurrences=n_the // 2, seed=seed) as sampled:
            c = sampled.cooccur("the", "capital", window=50)
            assert c.approx
            estimates.append(c.value)
            assert sampled.count("the") == Count(n_the, False)  # counts stay exact
    assert abs(np.mean(estimates) - exact.value) <= 0.25 * exact.value
    with LocalStats(small_index, max_occurrences=n_the) as capped_at_total:
        assert capped_at_total.cooccur("the", "capital", window=50) == exact
    with LocalStats(small_index, max_occurrences=n_the // 2, seed=3) as again:
        assert again.cooccur("the", "capital", window=50).value == estimates[3]  # seeded


def test_bad_queries_raise_quco_errors(small_stats, monkeypatch):
    with pytest.raises(BadInputError):
        small_stats.cooccur("Paris", "France", mode="sentence")  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        small_stats.cooccur("Paris", "France", window=-1)
    with pytest.raises(BadInputError):
        small_stats.count_ids([])
    with pytest.raises(BadInputError):
        small_stats.count_ids([small_stats.manifest.vocab_size])
    monkeypatch.setattr(small_stats._engine, "find", lambda input_ids: {"error": "boom"})
    with pytest.raises(EngineError, match="boom"):
        small_stats.find_ids([1, 2])


def test_other_tokenizer_is_refused(small_index):
    from quco.corpus.local import LocalStats
    from quco.models import embedding_model_path

    with pytest.raises(TokenizerMismatchError, match="does not match"):
        LocalStats(small_index, tokenizer=embedding_model_path())
