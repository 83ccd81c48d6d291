"""Coverage as a verdict: the share of named entities the corpus knows, the out_of_coverage state,
each guard action for it (fakes where the logic is the point; one run on a real small index), and
the combined model reading the data side as neutral, not risky."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from quco.errors import BadInputError
from quco.guard import Guard
from quco.risk.coverage import Coverage, check_action, check_floor, coverage_of, mask_data
from quco.risk.features import ALL_FEATURES, DATA_FEATURES, EntityCount
from quco.testing import FakeCorpus, FakeExtractor, FakeGenerator, FakeRetriever
from quco.types import Count, Entity

KNOWN = ["Paris is the capital of France. " * 25, "Vienna is the capital of Austria. " * 25] * 50  # 1250 each: stage 1 quiet


def ec(text: str, n: int, label: str = "GPE") -> EntityCount:
    return EntityCount(Entity(text, text, label), Count(n))


def test_coverage_value() -> None:
    c = coverage_of([ec("Paris", 5), ec("1990", 0, "DATE")], [ec("Zorblax", 0), ec("paris", 3)])
    assert (c.known, c.total) == (1, 2)  # the date is left out; "paris" is the same entity as "Paris"
    assert c.share == 0.5 and c.verdict == "covered"  # at the floor is not below it
    assert coverage_of([ec("Zorblax", 0), ec("Quint", 0), ec("Paris", 1)]).verdict == "out_of_coverage"
    empty = coverage_of([])
    assert empty.verdict == "no_entities" and math.isnan(empty.share) and empty.to_dict()["share"] is None
    assert Coverage(1, 4, 0.2).verdict == "covered" and Coverage(1, 4, 0.3).out_of_coverage
    with pytest.raises(BadInputError):
        check_floor(1.5)
    with pytest.raises(BadInputError):
        check_action("ignore")


def test_mask_data_marks_missing_not_zero() -> None:
    feats = {n: 1.0 for n in ALL_FEATURES}
    masked = mask_data(feats)
    assert all(math.isnan(masked[n]) for n in DATA_FEATURES) and masked["min_prob"] == 1.0


def guard(action: str, answer: str = "Blorp Zang.", probs: float = 0.9, **kw: object) -> Guard:
    return Guard(
        FakeGenerator([answer, answer], probs=probs), FakeExtractor(), FakeCorpus(KNOWN), FakeRetriever(KNOWN),
        policy="quco", on_out_of_coverage=action, **kw,  # type: ignore[arg-type]
    )


def test_out_of_coverage_question_retrieve() -> None:
    r = guard("retrieve").answer("Where was Zorblax Quint born?")
    assert r.stage1.coverage is not None and r.stage1.coverage.verdict == "out_of_coverage"
    assert r.stage1.retrieved  # the rule fires too (mean count 0 < 1000): its verdict stands
    assert [x.kind for x in r.stage1.risk.reasons] == ["rare_entity"]  # type: ignore[union-attr]
    assert r.to_dict()["stage1"]["coverage"]["verdict"] == "out_of_coverage"


def test_out_of_coverage_question_pass_is_not_risky() -> None:
    r = guard("pass").answer("Where was Zorblax Quint born?")
    assert not r.stage1.retrieved and r.stage1.risk is not None and not r.stage1.risk.flagged
    assert r.stage1.risk.reasons[0].kind == "out_of_coverage" and "pass" in r.stage1.risk.reasons[0].message
    # the sentence is out of coverage too (only unknown entities): no retrieval either
    assert r.retrievals == 0 and r.sentences[0].coverage.out_of_coverage  # type: ignore[union-attr]


def test_out_of_coverage_confidence_only_uses_flare_on_sentences() -> None:
    confident = guard("confidence-only", probs=0.9).answer("Where was Zorblax Quint born?")
    assert confident.retrievals == 0  # no token before generation; a confident sentence passes
    doubtful = guard("confidence-only", probs=0.1).answer("Where was Zorblax Quint born?")
    assert not doubtful.stage1.retrieved and doubtful.sentences[0].retrieved
    reasons = [x.kind for x in doubtful.sentences[0].risk.reasons]  # type: ignore[union-attr]
    assert reasons[0] == "out_of_coverage" and "low_prob_token" in reasons


def test_covered_checks_are_untouched_by_the_action() -> None:
    for action in ("rule", "retrieve", "pass", "confidence-only"):
        r = guard(action, answer="Paris.", probs=0.1).answer("What is the capital of France?")
        assert r.stage1.coverage.verdict == "covered" and not r.stage1.retrieved  # type: ignore[union-attr]
        assert r.retrievals == 0  # no claim, known entity: quiet whatever the action (and low probs do not matter)


def test_retrieve_adds_a_retrieval_where_the_rule_passed() -> None:
    # a sentence without claims whose entity is unknown: the rule has nothing to flag; retrieve does
    # (with the question's France, 1 of 2 entities is known: out of coverage under a floor of 0.6)
    r = guard("retrieve", answer="Blorp Zang.", coverage_floor=0.6).answer("What is the capital of France?")
    s = r.sentences[0]
    assert s.coverage.verdict == "out_of_coverage" and s.retrieved  # type: ignore[union-attr]
    assert s.risk.reasons[0].kind == "out_of_coverage"  # type: ignore[union-attr]


def test_rule_the_default_keeps_the_rules_verdict_and_records_coverage() -> None:
    # the same out-of-coverage sentence that "retrieve" retrieves for: the default leaves it to the rule
    r = guard("rule", answer="Blorp Zang.", coverage_floor=0.6).answer("What is the capital of France?")
    s = r.sentences[0]
    assert s.coverage.verdict == "out_of_coverage" and not s.retrieved and r.retrievals == 0  # type: ignore[union-attr]
    assert "out_of_coverage" not in [x.kind for x in s.risk.reasons]  # type: ignore[union-attr]
    d = Guard(FakeGenerator(["Blorp Zang."]), FakeExtractor(), FakeCorpus(KNOWN), FakeRetriever(KNOWN), policy="quco",
              coverage_floor=0.6).answer("What is the capital of France?")
    assert d.retrievals == 0 and d.sentences[0].coverage.out_of_coverage  # type: ignore[union-attr]
    # an uncovered question still retrieves under the default, because the rule fires (mean count 0 < 1000)
    q = guard("rule").answer("Where was Zorblax Quint born?")
    assert q.stage1.retrieved and q.stage1.coverage.verdict == "out_of_coverage"  # type: ignore[union-attr]


def test_combined_confidence_only_reads_data_as_neutral() -> None:
    import numpy as np

    from quco.risk.combined import RiskScorer

    rng = np.random.default_rng(0)
    rows, y = [], []
    for _ in range(200):
        risky = rng.random() < 0.5
        rows.append({"q_ent_freq_mean": (0.0 if risky else 3.0) + rng.normal(0, 0.3), "min_prob": rng.random()})
        y.append(int(risky))
    rs = RiskScorer(features=["q_ent_freq_mean", "min_prob"]).fit(rows, y)
    low = {"q_ent_freq_mean": 0.0, "min_prob": 0.5}
    assert rs.probability(low) > 0.9  # the data side says risky
    neutral = rs.probability(low, neutral=("q_ent_freq_mean",))
    base = rs.probability({"q_ent_freq_mean": float(np.mean([r["q_ent_freq_mean"] for r in rows])), "min_prob": 0.5})
    assert neutral == pytest.approx(base, abs=1e-9) and 0.2 < neutral < 0.8
    g = Guard(FakeGenerator(["Blorp Zang."]), FakeExtractor(), FakeCorpus(KNOWN), FakeRetriever(KNOWN),
              policy="combined", risk_model=rs, on_out_of_coverage="confidence-only")
    r = g.answer("Where was Zorblax Quint born?")
    assert r.stage1.risk is not None and not r.stage1.risk.flagged and not r.stage1.retrieved


@pytest.mark.slow
def test_real_index_absent_entity_is_out_of_coverage_not_risky(small_index: Path) -> None:
    from quco.corpus.local import LocalStats
    from quco.nlp.entities import EntityExtractor

    stats = LocalStats(small_index)
    try:
        ex = EntityExtractor()
        g = Guard(FakeGenerator(["Paris."]), ex, stats, FakeRetriever(KNOWN), policy="quco",
                  on_out_of_coverage="pass", claims="pairs")
        r = g.answer("Where was Quetzalwick Brannigan born?")
        assert r.stage1.coverage is not None and r.stage1.coverage.verdict == "out_of_coverage"
        assert r.stage1.risk is not None and not r.stage1.risk.flagged and not r.stage1.retrieved
        known = g.answer("Where was Marie Curie born?")
        assert known.stage1.coverage is not None and known.stage1.coverage.verdict == "covered"
        assert known.stage1.coverage.known == known.stage1.coverage.total >= 1
    finally:
        stats.close()
