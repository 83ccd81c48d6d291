"""Claim extraction: the spaCy rules on hand-written sentences (real pipeline), the protocol with fakes,
the model extractor's parser, and claims through the analyzer and stage 2 on a real small index."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quco.errors import BadInputError
from quco.nlp.claims import ClaimParser, ModelClaimExtractor, is_conclusion, parse_model_claims, shift_claim
from quco.protocols import ClaimExtractor
from quco.testing import FakeClaimExtractor, FakeExtractor
from quco.types import Claim, Entity


def triples(claims: list[Claim]) -> set[tuple[str, str, str | None]]:
    return {(c.head.text, c.relation, c.tail.text if c.tail else None) for c in claims}


@pytest.fixture(scope="module")
def parser(extractor) -> ClaimParser:  # type: ignore[no-untyped-def]
    return ClaimParser(extractor)


# (sentence, the claims it must give: (head, relation, tail or None))
CASES = [
    ("Rajiv Rai was born in Mumbai, Maharashtra, India.", {("Rajiv Rai", "born in", "Mumbai")}),
    ("Kumbasaram was released in 2017.", {("Kumbasaram", "released in", "2017")}),
    ("Diane Meyer Simon's husband is George F. Simon.", {("Diane Meyer Simon", "husband", "George F. Simon")}),
    (
        "Coulson Wallop's father, Nigel Wallop, studied at Eton College.",
        {("Coulson Wallop", "father", "Nigel Wallop"), ("Nigel Wallop", "studied at", "Eton College")},
    ),
    ("Paris is the capital of France.", {("Paris", "is capital of", "France")}),
    ("The director of Titanic is James Cameron.", {("Titanic", "director of", "James Cameron")}),
    ("The Seine flows through Paris and Rouen.", {("Seine", "flows through", "Paris"), ("Seine", "flows through", "Rouen")}),
    (
        "Apple, which was founded by Steve Jobs, is based in Cupertino.",
        {("Apple", "founded by", "Steve Jobs"), ("Apple", "based in", "Cupertino")},
    ),
    ("Kumbasaram came out.", {("Kumbasaram", "came out", None)}),
]


@pytest.mark.parametrize(("sentence", "expected"), CASES)
def test_triplets_and_spans_on_hand_written_sentences(parser: ClaimParser, sentence: str, expected: set) -> None:
    claims = parser.claims(sentence)
    assert triples(claims) == expected
    for c in claims:  # spans point at the words in the sentence
        assert c.head.text in sentence[c.head.start : c.head.end]
        if c.tail is not None:
            assert c.tail.text in sentence[c.tail.start : c.tail.end]
        assert c.relation.split()[0] in sentence[c.start : c.end].lower()
        assert c.source == "sentence" and c.query == f"{c.head.text} {c.relation}"


def test_dates_and_numbers_are_tails_never_heads(parser: ClaimParser) -> None:
    claims = parser.claims("Jane Austen wrote Pride and Prejudice in 1813.")
    assert ("Jane Austen", "wrote in", "1813") in triples(claims)
    assert all(c.head.label not in ("DATE", "CARDINAL") for c in claims)
    date = next(c for c in claims if c.tail is not None and c.tail.text == "1813")
    assert date.tail is not None and date.tail.label == "DATE"


@pytest.mark.parametrize(
    "sentence",
    [
        "So the answer is Paris.",
        "Thus, Kumbasaram came out first.",
        "Therefore, Robert Enrico was born in Paris.",
        "The answer is James Cameron.",
        "Hence the Danube flows through Budapest.",
    ],
)
def test_conclusions_give_no_claim(parser: ClaimParser, sentence: str) -> None:
    assert is_conclusion(sentence)
    assert parser.claims(sentence) == []


def test_no_claim_sentences(parser: ClaimParser) -> None:
    assert not is_conclusion("Paris is in France.")
    # a comparison states no knowledge triple (as in the paper); no named head: nothing
    assert parser.claims("Vincent Cobos is 2 years and 7 months older than Paul Mokeski.") == []
    assert parser.claims("It was a sunny day.") == []
    assert parser.claims("") == [] and parser.claims("   ") == []


def test_bare_answer_span_completes_the_question(parser: ClaimParser) -> None:
    got = parser.claims("Mumbai.", "Where was Rajiv Rai born?")
    assert triples(got) == {("Rajiv Rai", "born", "Mumbai")}
    assert got[0].source == "answer_span" and got[0].query == "Rajiv Rai born"
    assert parser.claims("Mumbai.") == []  # no question: a bare span states nothing
    # the span names the question's own entity: nothing to check
    assert parser.claims("Rajiv Rai", "Where was Rajiv Rai born?") == []
    # a direct answer is a span too; a conclusion after reasoning is not
    direct = parser.claims("The answer to this question is: Mumbai.", "Where was Rajiv Rai born?")
    assert triples(direct) == {("Rajiv Rai", "born", "Mumbai")} and direct[0].source == "answer_span"
    assert parser.claims("So the answer is Mumbai.", "Where was Rajiv Rai born?") == []
    assert parser.claims("The answer is Mumbai.") == []  # no question: a conclusion gives nothing
    off = ClaimParser(parser.extractor, answer_spans=False)
    assert off.claims("Mumbai.", "Where was Rajiv Rai born?") == []


def test_batch_equals_one_at_a_time_and_bad_input(parser: ClaimParser) -> None:
    sents = [s for s, _ in CASES] + ["So the answer is X.", "Mumbai."]
    qs = [""] * len(CASES) + ["", "Where was Rajiv Rai born?"]
    batch = parser.claims_many(sents, qs)
    assert batch == [parser.claims(s, q) for s, q in zip(sents, qs)]
    with pytest.raises(BadInputError):
        parser.claims_many("Paris is in France.")  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        parser.claims_many(["a", 3])  # type: ignore[list-item]
    with pytest.raises(BadInputError):
        parser.claims_many(["a"], ["q1", "q2"])
    with pytest.raises(BadInputError):
        ClaimParser(parser.extractor, max_claims=0)


def test_protocol_is_satisfied_by_every_extractor(parser: ClaimParser) -> None:
    assert isinstance(parser, ClaimExtractor)
    assert isinstance(FakeClaimExtractor(), ClaimExtractor)
    assert isinstance(ModelClaimExtractor(lambda p: "[]"), ClaimExtractor)
    assert isinstance(parser.extractor.claim_extractor(), ClaimParser)
    assert parser.extractor.claim_extractor() is parser.extractor.claim_extractor()  # made once


def test_fake_claim_extractor_rules_and_presets() -> None:
    fake = FakeClaimExtractor(FakeExtractor(), table={"Preset.": [("A", "rel", None)]})
    got = fake.claims_many(["Paris is the capital of France.", "Zorblax was released.", "So the answer is Paris.", "Preset."])
    assert triples(got[0]) == {("Paris", "is capital of", "France")}
    assert triples(got[1]) == {("Zorblax", "was released", None)}
    assert got[2] == [] and triples(got[3]) == {("A", "rel", None)}
    assert [c for c, _ in fake.calls] == ["Paris is the capital of France.", "Zorblax was released.", "So the answer is Paris.", "Preset."]


def test_model_extractor_parses_the_papers_format_and_locates_spans() -> None:
    prompts: list[str] = []

    def complete(prompt: str) -> str:
        prompts.append(prompt)
        return 'entities:\n[["Beowulf & Grendel", "directed by", "Sturla Gunnarsson"], ["Beowulf & Grendel", "released"]]'

    ex = ModelClaimExtractor(complete, name="qwen-0.5b")
    sent = "Beowulf & Grendel was directed by Sturla Gunnarsson."
    got = ex.claims_many([sent, "So the answer is Sturla Gunnarsson."])
    assert triples(got[0]) == {("Beowulf & Grendel", "directed by", "Sturla Gunnarsson"), ("Beowulf & Grendel", "released", None)}
    assert got[1] == [] and len(prompts) == 1 and sent in prompts[0]  # conclusions are not sent to the model
    c = got[0][0]
    assert c.tail is not None and sent[c.tail.start : c.tail.end] == "Sturla Gunnarsson" and c.source == "qwen-0.5b"
    with pytest.raises(BadInputError, match="placeholder"):
        ModelClaimExtractor(complete, prompt="no slot")


_NESTED = st.recursive(st.none() | st.text(max_size=10) | st.integers(), lambda ch: st.lists(ch, max_size=4), max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=200), _NESTED.map(json.dumps), _NESTED.map(lambda x: "entities: " + repr(x))))
def test_model_output_parser_never_raises(text: str) -> None:
    # invariant: whatever a model writes, the parser returns a list of well-formed claims
    out = parse_model_claims(text, "Some sentence about Paris and France.")
    assert isinstance(out, list)
    for c in out:
        assert c.head.text and c.relation and (c.tail is None or c.tail.text)


def test_shift_claim_moves_sentence_offsets_only() -> None:
    head, tail = Entity("A", "A", "PERSON", 0, 1), Entity("B", "B", "GPE", 5, 6)
    c = shift_claim(Claim(head, "in", tail, 2, 4), 10)
    assert (c.head.start, c.tail.start if c.tail else None, c.start, c.end) == (10, 15, 12, 14)
    span = shift_claim(Claim(head, "in", tail, 0, 0, "answer_span"), 10)
    assert span.head.start == 0 and span.tail is not None and span.tail.start == 15


def test_claims_through_the_analyzer_and_stage2_on_a_real_index(extractor, small_stats) -> None:  # type: ignore[no-untyped-def]
    from quco.analyze import AnalysisItem, Analyzer
    from quco.risk.features import feature_vector
    from quco.risk.policies import QucoPolicy

    an = Analyzer(extractor, small_stats, window=1000, claim_extractor=extractor.claim_extractor())
    q = "Where was Marie Curie born?"
    right, wrong, spans = an.analyze_many(
        [
            AnalysisItem(q, "Marie Curie was born in Warsaw."),
            AnalysisItem(q, "Marie Curie was born in Reykjavik."),
            AnalysisItem(q, "Paris. So the answer is Paris."),
        ]
    )
    assert right.signals.claims is not None and wrong.signals.claims is not None
    (rc,), (wc,) = right.signals.claims, wrong.signals.claims
    assert (rc.claim.head.text, rc.claim.relation, rc.claim.tail.text if rc.claim.tail else None) == ("Marie Curie", "born in", "Warsaw")
    assert rc.count.value > 0 and wc.count.value == 0  # Marie Curie and Reykjavik never co-occur in the tiny corpus
    fr, fw = feature_vector(right.signals), feature_vector(wrong.signals)
    assert fr["zero_claim"] == 0.0 and fw["zero_claim"] == 1.0 and fw["n_claims"] == 1.0
    pol = QucoPolicy()
    r2 = pol.stage2(wrong.signals)
    assert r2.flagged and "'Marie Curie' \u2014born in\u2192 'Reykjavik' never co-occur" in r2.reasons[0].message
    assert not pol.stage2(right.signals).flagged
    assert pol.score(wrong.signals) > 0.5 > pol.stage_scores(feature_vector(right.signals))[1]
    # the answer span "Paris." completes the question's (Marie Curie, born); the conclusion gives nothing
    sp = spans.signals.claims
    assert sp is not None and [(c.claim.head.text, c.claim.relation, c.claim.source) for c in sp] == [("Marie Curie", "born", "answer_span")]
    assert spans.sentences[1].signals.claims == ()
    # per-sentence claims carry offsets in the answer
    t = sp[0].claim.tail
    assert t is not None and spans.answer[t.start : t.end] == "Paris"
    # pair mode reads the same signals' pairs
    assert QucoPolicy(claims="pairs").stage2(wrong.signals).flagged
