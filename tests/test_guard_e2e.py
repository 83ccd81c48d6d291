"""The guard end to end: the real small LM, a real corpus index (``small_index``),
a real BM25 retriever and the real spaCy extractor.

The tiny corpus mentions Marie Curie twice (with Warsaw) and Kyoto, but never
Marie Curie with Kyoto. Stage 1 fires on "Marie Curie" (2 occurrences < 10^3);
stage 2 fires on a sentence that pairs Marie Curie with Kyoto (forced as the
first draft by a wrapper; the corpus, extractor, retriever and the rewrite are
real). Generations are kept to a few tokens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from quco.guard import Guard
from quco.types import Generation

pytestmark = pytest.mark.slow

QUESTION = "In which city was Marie Curie born?"


class ForcedFirst:
    """Returns a fixed first sentence (with the real scorer's confidences), then the real generator."""

    def __init__(self, generator: Any, scorer: Any, first: str) -> None:
        self.generator = generator
        self.scorer = scorer
        self.first = first
        self.name = getattr(generator, "name", "forced")
        self.calls = 0

    def generate(self, prompt: str, *, prefix: str = "", max_new_tokens: int = 64, stop: Sequence[str] = (), sentence: bool = False) -> Generation:
        self.calls += 1
        if self.calls == 1:
            return Generation(self.first, self.scorer.score(prompt, self.first), "stop")
        return self.generator.generate(prompt, prefix=prefix, max_new_tokens=max_new_tokens, stop=stop, sentence=sentence)


def _pair_counts(sentence_record: Any) -> dict[frozenset[str], int]:
    return {frozenset((p.pair.head.text, p.pair.tail.text)): p.count.value for p in sentence_record.pairs}


def test_quco_stage1_and_stage2_fire_and_the_trace_records_both(generator, scorer, extractor, small_stats, bm25_retriever) -> None:  # type: ignore[no-untyped-def]
    gen = ForcedFirst(generator, scorer, "Marie Curie was born in Kyoto.")
    guard = Guard(gen, extractor, small_stats, bm25_retriever, policy="quco", max_sentences=1, max_new_tokens=8,
                  entity_threshold="1000")  # the paper's count unscaled: in this toy corpus the default rate (about 0) calls nothing rare
    r = guard.answer(QUESTION)

    # stage 1: a rare question entity
    ents = {e.entity.text: e.count.value for e in r.stage1.entities}
    assert 0 < ents["Marie Curie"] < 1000
    assert r.stage1.risk is not None and r.stage1.risk.flagged and r.stage1.retrieved
    assert r.stage1.retrieval is not None and any("Curie" in d.text for d in r.stage1.retrieval.documents)

    # stage 2: the claim (Marie Curie, born in, Kyoto); Marie Curie and Kyoto both occur, never together
    s = r.sentences[0]
    assert s.draft == "Marie Curie was born in Kyoto."
    assert [(c.claim.head.text, c.claim.relation, c.claim.tail.text if c.claim.tail else None, c.count.value) for c in s.claims] == [
        ("Marie Curie", "born in", "Kyoto", 0)
    ]
    assert s.risk is not None and s.risk.flagged and any(x.kind == "zero_cooccurrence" for x in s.risk.reasons)
    # the query is head + relation: never the suspect tail
    assert s.retrieved and s.retrieval is not None and s.retrieval.queries == ("Marie Curie born in",)
    assert "Kyoto" not in s.retrieval.query
    assert len({d.id for d in s.retrieval.documents}) == len(s.retrieval.documents) <= 3
    assert any("Warsaw" in d.text for d in s.retrieval.documents)  # evidence about the head, not about Kyoto
    assert r.retrievals == 2 and r.llm_calls == 2 and gen.calls == 2  # draft + real rewrite
    assert s.confidence is not None and len(s.confidence) > 0

    d = json.loads(json.dumps(r.to_dict()))
    assert d["stage1"]["retrieved"] and d["sentences"][0]["retrieved"] and d["retrievals"] == 2


def test_pair_mode_queries_the_pair_and_the_sentence(generator, scorer, extractor, small_stats, bm25_retriever) -> None:  # type: ignore[no-untyped-def]
    gen = ForcedFirst(generator, scorer, "Marie Curie was born in Kyoto.")
    guard = Guard(gen, extractor, small_stats, bm25_retriever, policy="quco", max_sentences=1, max_new_tokens=8, claims="pairs")
    s = guard.answer(QUESTION).sentences[0]
    assert _pair_counts(s)[frozenset(("Marie Curie", "Kyoto"))] == 0 and s.claims == ()
    assert s.retrieval is not None and "Kyoto" in s.retrieval.query and "Marie Curie" in s.retrieval.query


def test_quco_quiet_on_a_supported_sentence(generator, scorer, extractor, small_stats, bm25_retriever) -> None:  # type: ignore[no-untyped-def]
    gen = ForcedFirst(generator, scorer, "Marie Curie was born in Warsaw.")
    r = Guard(gen, extractor, small_stats, bm25_retriever, policy="quco", entity_threshold=1, max_sentences=1).answer(QUESTION)
    assert not r.stage1.retrieved
    assert [(c.claim.tail.text if c.claim.tail else None) for c in r.sentences[0].claims] == ["Warsaw"]
    assert all(c.count.value > 0 for c in r.sentences[0].claims)
    assert r.sentences[0].risk is not None and not r.sentences[0].risk.flagged
    assert r.retrievals == 0 and r.answer == "Marie Curie was born in Warsaw."


def test_none_never_retrieves_and_keeps_the_generation_confidences(generator, bm25_retriever) -> None:  # type: ignore[no-untyped-def]
    r = Guard(generator, policy="none", max_sentences=1, max_new_tokens=6).answer(QUESTION)
    assert r.retrievals == 0 and r.stage1.retrieval is None and not any(s.retrieved for s in r.sentences)
    assert 0 < r.tokens_generated <= 6 and r.llm_calls == 1
    assert r.sentences and r.sentences[0].confidence is not None
    assert all(0.0 < t.prob <= 1.0 for t in r.sentences[0].confidence.tokens)


def test_single_retrieves_exactly_once(generator, bm25_retriever) -> None:  # type: ignore[no-untyped-def]
    r = Guard(generator, retriever=bm25_retriever, policy="single", max_sentences=1, max_new_tokens=6).answer(QUESTION)
    assert r.retrievals == 1 and r.stage1.retrieval is not None and r.stage1.retrieval.query == QUESTION
    assert not any(s.retrieved for s in r.sentences)
    assert any("Curie" in d.text for d in r.stage1.retrieval.documents)
