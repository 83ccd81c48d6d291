"""Guard logic with fakes: every policy's trigger, dedupe, stop conditions, budget,
fail-open/closed, trace schema and bad input. No model, no index."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest

from quco.errors import BackendUnavailableError, BadInputError, IndexNotFoundError, QucoError
from quco.guard import MAX_QUESTION_CHARS, Guard, build_guard, retrieve_unique
from quco.testing import FakeCorpus, FakeExtractor, FakeRetriever
from quco.types import Confidence, Document, Generation, TokenConfidence

DOCS = [
    "Paris is the capital of France. Paris has the Eiffel Tower.",
    "France is a country in Europe. Paris is in France.",
    "Zorblax Quint was a painter from Vienna.",
]
# "France" and "Paris" are frequent enough below once the corpus is repeated
FREQUENT = DOCS * 400


def toks(text: str, probs: float | Sequence[float] = 0.9) -> Confidence:
    words = text.split(" ")
    pieces = [w if i == 0 else " " + w for i, w in enumerate(words)]
    ps = [probs] * len(pieces) if isinstance(probs, float) else list(probs)
    return Confidence(tuple(TokenConfidence(p, i, math.log(q), 0.1) for i, (p, q) in enumerate(zip(pieces, ps, strict=True))))


@dataclass
class ScriptGen:
    """Answers from a function of (prompt, prefix): returns (text, probs, finish_reason)."""

    script: Callable[[str, str], tuple[str, float | Sequence[float], str]]
    name: str = "script"
    calls: list[tuple[str, str, int]] = field(default_factory=list)

    def generate(self, prompt: str, *, prefix: str = "", max_new_tokens: int = 64, stop: Sequence[str] = (), sentence: bool = False) -> Generation:
        self.calls.append((prompt, prefix, max_new_tokens))
        text, probs, finish = self.script(prompt, prefix)
        conf = toks(text, probs) if text else Confidence(())
        if len(conf) > max_new_tokens:
            conf = Confidence(conf.tokens[:max_new_tokens])
            text, finish = "".join(t.token for t in conf.tokens), "length"
        return Generation(text, conf, finish)


def one_sentence(text: str, probs: float | Sequence[float] = 0.9) -> ScriptGen:
    return ScriptGen(lambda p, pre: (text, probs, "eos") if not pre else ("", 0.9, "eos"))


def make(policy: str, gen: ScriptGen, corpus: FakeCorpus | None = None, retriever: FakeRetriever | None = None, **kw: object) -> Guard:
    return Guard(gen, FakeExtractor(), corpus or FakeCorpus(FREQUENT), retriever or FakeRetriever(DOCS), policy=policy, **kw)  # type: ignore[arg-type]


# -- policies ---------------------------------------------------------------------------


def test_none_never_retrieves_or_queries_the_corpus() -> None:
    corpus, ret = FakeCorpus(FREQUENT), FakeRetriever(DOCS)
    r = make("none", one_sentence("Paris."), corpus, ret).answer("What is the capital of Zorblax Quint?")
    assert r.answer == "Paris."
    assert r.retrievals == 0 and ret.queries == [] and corpus.queries == 0
    assert r.sentences[0].risk is None and not r.sentences[0].retrieved


def test_none_needs_no_retriever_but_others_do() -> None:
    Guard(one_sentence("x"), policy="none")
    with pytest.raises(QucoError, match="retriever"):
        Guard(one_sentence("x"), FakeExtractor(), FakeCorpus(DOCS), None, policy="single")
    with pytest.raises(QucoError, match="corpus"):
        Guard(one_sentence("x"), FakeExtractor(), None, FakeRetriever(DOCS), policy="quco")


def test_single_retrieves_once_with_the_question_and_answers_with_evidence() -> None:
    ret = FakeRetriever(DOCS)
    gen = ScriptGen(lambda p, pre: ("Paris.", 0.1, "eos"))  # low confidence: single must not care
    r = make("single", gen, retriever=ret).answer("What is the capital of France?")
    assert r.retrievals == 1 and ret.queries == ["What is the capital of France?"]
    assert r.stage1.retrieved and r.stage1.retrieval is not None and r.stage1.retrieval.documents
    assert "Evidence [1]" in gen.calls[0][0]
    assert not r.sentences[0].retrieved


def test_flare_masks_low_confidence_tokens_and_rewrites() -> None:
    def script(prompt: str, prefix: str) -> tuple[str, list[float] | float, str]:
        if "Evidence [1]" in prompt:
            return "Vienna.", 0.95, "eos"
        return "Zorblax Quint painted in Berlin.", [0.9, 0.9, 0.9, 0.9, 0.1], "eos"

    ret = FakeRetriever(DOCS)
    r = make("flare", ScriptGen(script), retriever=ret).answer("Where did Zorblax Quint paint?")
    s = r.sentences[0]
    assert ret.queries == ["Zorblax Quint painted in"]  # "Berlin." (p=0.1) masked
    assert s.retrieved and s.rewritten and s.draft.startswith("Zorblax") and s.text == "Vienna."
    assert r.answer == "Vienna." and r.llm_calls == 2 and r.retrievals == 1
    assert s.risk is not None and s.risk.flagged and any(x.kind == "low_prob_token" for x in s.risk.reasons)


def test_flare_confident_sentence_is_kept() -> None:
    r = make("flare", one_sentence("Paris is in France.", 0.8)).answer("Where is Paris?")
    assert r.retrievals == 0 and r.answer == "Paris is in France." and r.llm_calls == 1
    assert r.stage1.risk is None  # FLARE has no stage 1


def test_quco_stage1_fires_on_rare_question_entity() -> None:
    ret = FakeRetriever(DOCS)
    gen = ScriptGen(lambda p, pre: ("Vienna.", 0.9, "eos"))
    r = make("quco", gen, retriever=ret, entity_threshold="1000").answer("Where was Zorblax Quint born?")
    assert r.stage1.risk is not None and r.stage1.risk.flagged
    assert r.stage1.entities[0].entity.text == "Zorblax Quint" and r.stage1.entities[0].count.value == 400
    assert ret.queries[0] == "Where was Zorblax Quint born?" and r.stage1.retrieved
    assert "Zorblax Quint was a painter" in gen.calls[0][0]


def test_quco_stage1_quiet_on_frequent_entity() -> None:
    r = make("quco", one_sentence("Paris.")).answer("What is the capital of France?")
    assert r.stage1.risk is not None and not r.stage1.risk.flagged
    assert r.stage1.entities[0].count.value >= 1000 and r.retrievals == 0


def test_quco_stage1_threshold_is_configurable() -> None:
    r = make("quco", one_sentence("Vienna."), entity_threshold=10).answer("Where was Zorblax Quint born?")
    assert not r.stage1.retrieved


def _vienna_script(prompt: str, prefix: str) -> tuple[str, float, str]:
    if prefix:
        return "", 0.9, "eos"
    if "Evidence [1]" in prompt:
        return "Paris is the capital of France.", 0.9, "eos"
    return "Vienna is the capital of France.", 0.99, "eos"


def test_quco_stage2_pairs_mode_fires_on_zero_cooccurrence_and_rewrites() -> None:
    ret = FakeRetriever(DOCS)
    r = make("quco", ScriptGen(_vienna_script), retriever=ret, claims="pairs").answer("What is the capital of France?")
    s = r.sentences[0]
    assert not r.stage1.retrieved and r.claims == "pairs"
    assert s.risk is not None and s.risk.flagged and s.retrieved and s.rewritten
    zero = [p for p in s.pairs if p.count.value == 0]
    assert {zero[0].pair.head.text, zero[0].pair.tail.text} == {"Vienna", "France"}
    assert ret.queries == ["Vienna France Vienna is the capital of France."]  # pair + sentence
    assert r.answer == "Paris is the capital of France."
    assert any(x.kind == "zero_cooccurrence" for x in s.risk.reasons) and s.claims == ()


def test_quco_stage2_triplet_query_is_head_and_relation_never_the_tail() -> None:
    # the failure the paper's case study shows: a query holding the suspect tail ("France" here,
    # co-occurring with the wrong head) fetches documents about the tail. Entity-pair mode's
    # pair_query ("Vienna France Vienna is the capital of France.") fails this test.
    ret = FakeRetriever(DOCS)
    r = make("quco", ScriptGen(_vienna_script), retriever=ret).answer("What is the capital of France?")
    s = r.sentences[0]
    assert r.claims == "triplets" and s.pairs == ()
    assert [(c.claim.head.text, c.claim.relation, c.claim.tail.text if c.claim.tail else None, c.count.value) for c in s.claims] == [
        ("Vienna", "is capital of", "France", 0)
    ]
    assert s.risk is not None and s.risk.flagged and s.retrieved and s.rewritten
    assert ret.queries == ["Vienna is capital of"]
    assert all("France" not in q for q in ret.queries)
    assert s.retrieval is not None and s.retrieval.queries == ("Vienna is capital of",)
    reason = next(x for x in s.risk.reasons if x.kind == "zero_cooccurrence")
    assert reason.message.startswith("'Vienna' \u2014is capital of\u2192 'France' never co-occur")
    assert r.answer == "Paris is the capital of France."
    d = s.to_dict()
    assert d["claims"][0]["kind"] == "triplet" and d["claims"][0]["count"] == 0 and d["queries"] == ["Vienna is capital of"]


def test_quco_stage2_one_query_per_flagged_claim_union_deduplicated() -> None:
    from quco.testing import FakeClaimExtractor

    sent = "Zorblax Quint painted Vienna and Zorblax Quint lived in France."
    table = {sent: [("Zorblax Quint", "painted", "Vienna"), ("Zorblax Quint", "lived in", "France"), ("Zorblax Quint", "painted", "Vienna")]}
    ret = FakeRetriever(DOCS)
    # Zorblax Quint co-occurs with Vienna (document 3) but never with France
    r = make("quco", one_sentence(sent), retriever=ret, claim_extractor=FakeClaimExtractor(table=table), k=2).answer("Who?")
    s = r.sentences[0]
    assert ret.queries == ["Zorblax Quint lived in"]
    assert s.risk is not None and [x.kind for x in s.risk.reasons] == ["zero_cooccurrence"]
    assert len(s.claims) == 2  # the repeated claim is checked once
    # two flagged claims: two queries, their documents unioned without duplicates
    ret2 = FakeRetriever(DOCS)
    corpus = FakeCorpus(["Nothing about anyone."])
    r2 = make("quco", one_sentence(sent), corpus=corpus, retriever=ret2, claim_extractor=FakeClaimExtractor(table=table), k=2).answer("Who?")
    s2 = r2.sentences[0]
    assert ret2.queries == ["Zorblax Quint painted", "Zorblax Quint lived in"]
    ids = [d.id for d in s2.retrieval.documents] if s2.retrieval else []
    # both queries rank document 2 (Zorblax Quint) first: it appears once in the union
    assert ids.count("2") == 1 and len(set(ids)) == len(ids) >= 2
    assert r2.retrievals == 1  # one retrieval (two queries); the question has no entity for stage 1


def test_quco_stage2_tuple_with_rare_head_fires() -> None:
    from quco.testing import FakeClaimExtractor

    sent = "Blorptang Weezle was released."
    ret = FakeRetriever(DOCS)
    r = make("quco", one_sentence(sent), retriever=ret).answer("What happened?")
    s = r.sentences[0]
    assert [(c.claim.head.text, c.claim.relation, c.claim.tail) for c in s.claims] == [("Blorptang Weezle", "was released", None)]
    assert s.claims[0].count.value < 20 and s.risk is not None and s.risk.flagged
    assert [x.kind for x in s.risk.reasons] == ["rare_head"] and ret.queries == ["Blorptang Weezle was released"]
    # a frequent head is quiet; the threshold is configurable
    table = {"Paris was founded.": [("Paris", "was founded", None)]}
    r2 = make("quco", one_sentence("Paris was founded."), claim_extractor=FakeClaimExtractor(table=table)).answer("What happened?")
    assert r2.sentences[0].risk is not None and not r2.sentences[0].risk.flagged
    r3 = make("quco", one_sentence(sent), tuple_threshold=0).answer("What happened?")
    assert r3.sentences[0].risk is not None and not r3.sentences[0].risk.flagged


def test_quco_stage2_conclusion_gives_no_claim() -> None:
    r = make("quco", one_sentence("So the answer is Vienna France.")).answer("What happened?")
    s = r.sentences[0]
    assert s.claims == () and s.risk is not None and not s.risk.flagged and r.retrievals == 0
    assert [x.kind for x in s.risk.reasons] == ["no_claims"]


def test_quco_stage2_quiet_when_pairs_cooccur() -> None:
    r = make("quco", one_sentence("Paris is the capital of France."), claims="pairs").answer("What is the capital of France?")
    s = r.sentences[0]
    assert s.pairs and all(p.count.value > 0 for p in s.pairs)
    assert s.risk is not None and not s.risk.flagged and r.retrievals == 0
    r2 = make("quco", one_sentence("Paris is the capital of France.")).answer("What is the capital of France?")
    s2 = r2.sentences[0]
    assert s2.claims and all(c.count.value > 0 for c in s2.claims)
    assert s2.risk is not None and not s2.risk.flagged and r2.retrievals == 0


def test_triplet_mode_needs_a_claim_extractor() -> None:
    class Plain(FakeExtractor):
        claim_extractor = None  # type: ignore[assignment]

    with pytest.raises(QucoError, match="claim extractor"):
        Guard(one_sentence("x"), Plain(), FakeCorpus(DOCS), FakeRetriever(DOCS), policy="quco")
    Guard(one_sentence("x"), Plain(), FakeCorpus(DOCS), FakeRetriever(DOCS), policy="quco", claims="pairs")
    with pytest.raises(BadInputError, match="claims"):
        make("quco", one_sentence("x"), claims="both")


class FixedModel:
    """A risk model with a fixed probability (sklearn-style predict_proba)."""

    def __init__(self, p: float) -> None:
        self.p = p
        self.seen: list[dict[str, float]] = []

    def predict_proba(self, rows: list[dict[str, float]]) -> list[list[float]]:
        self.seen.extend(rows)
        return [[1 - self.p, self.p] for _ in rows]


def test_combined_fires_over_threshold_on_question_and_sentence() -> None:
    model = FixedModel(0.7)
    ret = FakeRetriever(DOCS)
    r = make("combined", one_sentence("Vienna is the capital of France."), retriever=ret, risk_model=model).answer(
        "What is the capital of France?"
    )
    assert r.stage1.retrieved and r.sentences[0].retrieved and r.retrievals == 2
    assert r.sentences[0].risk is not None and r.sentences[0].risk.probability == pytest.approx(0.7)
    # the sentence features carry both sides; in triplet mode (the default) claims and pairs both, since a
    # fitted model may use either
    assert not math.isnan(model.seen[1]["claim_cooc_min"]) and not math.isnan(model.seen[1]["min_prob"])
    assert not math.isnan(model.seen[1]["pair_cooc_min"]) and model.seen[1]["n_claims"] == 1.0
    s = r.sentences[0]
    assert s.claims and s.pairs and ret.queries[-1] == "Vienna is capital of"  # the query still never holds the tail


def test_combined_quiet_under_threshold() -> None:
    r = make("combined", one_sentence("Paris."), risk_model=FixedModel(0.3), risk_threshold=0.5).answer("Capital of France?")
    assert r.retrievals == 0 and r.sentences[0].risk is not None and not r.sentences[0].risk.flagged


def test_unknown_policy_is_bad_input() -> None:
    with pytest.raises(BadInputError, match="unknown policy"):
        make("dragin", one_sentence("x"))


# -- retrieval --------------------------------------------------------------------------


class DupRetriever:
    def __init__(self) -> None:
        self.ks: list[int] = []

    def retrieve(self, query: str, k: int = 3) -> list[Document]:
        self.ks.append(k)
        return [Document("a", "Same  text."), Document("a", "other"), Document("b", "same text."), Document("c", "C"), Document("d", "D")][:k]


def test_retrieve_unique_dedupes_by_id_and_text_and_fills_k() -> None:
    r = DupRetriever()
    docs = retrieve_unique(r, "q", 3)
    assert [d.id for d in docs] == ["a", "c", "d"] and r.ks == [6]


def test_guard_uses_deduplicated_top_k() -> None:
    gen = one_sentence("Paris.")
    r = Guard(gen, retriever=DupRetriever(), policy="single", k=2).answer("Capital of France?")
    assert r.stage1.retrieval is not None and [d.id for d in r.stage1.retrieval.documents] == ["a", "c"]
    assert gen.calls[0][0].count("Evidence [") == 2


# -- stop conditions and budget ----------------------------------------------------------


def counting_gen(finish: str = "stop") -> ScriptGen:
    n = {"i": 0}

    def script(prompt: str, prefix: str) -> tuple[str, float, str]:
        n["i"] += 1
        return f"Sentence number {n['i']} is here.", 0.9, finish

    return ScriptGen(script)


def test_stops_after_max_sentences_and_passes_prefix() -> None:
    gen = counting_gen()
    r = Guard(gen, policy="none", max_sentences=3).answer("Tell me things?")
    assert len(r.sentences) == 3 and r.stop_reason == "max_sentences"
    assert gen.calls[1][1] == "Sentence number 1 is here."
    assert gen.calls[2][1] == "Sentence number 1 is here. Sentence number 2 is here."
    assert r.answer.count("Sentence") == 3


def test_token_budget_caps_generation() -> None:
    gen = counting_gen()
    r = Guard(gen, policy="none", max_sentences=10, token_budget=12, max_new_tokens=64).answer("Tell me things?")
    assert r.tokens_generated <= 12 and r.stop_reason == "budget"
    assert [c[2] for c in gen.calls] == [12, 7, 2]  # each call asks for what is left


def test_repeated_sentence_stops_without_progress() -> None:
    gen = ScriptGen(lambda p, pre: ("Again the same.", 0.9, "stop"))
    r = Guard(gen, policy="none", max_sentences=5).answer("Loop?")
    assert len(r.sentences) == 1 and r.stop_reason == "no_progress" and r.llm_calls == 2


def test_empty_first_generation_is_no_progress() -> None:
    r = Guard(ScriptGen(lambda p, pre: ("", 0.9, "eos")), policy="none").answer("Anything?")
    assert r.answer == "" and r.sentences == () and r.stop_reason == "no_progress"


def test_newline_ends_the_answer_and_extra_sentences_are_cut() -> None:
    gen = ScriptGen(lambda p, pre: ("Paris\nQuestion: next", 0.9, "stop"))
    r = Guard(gen, policy="none").answer("Capital of France?")
    assert r.answer == "Paris" and r.stop_reason == "end" and r.llm_calls == 1
    gen2 = ScriptGen(lambda p, pre: ("First one. Second one.", 0.9, "length") if not pre else ("", 0.9, "eos"))
    r2 = Guard(gen2, policy="none").answer("Two?")
    assert r2.sentences[0].text == "First one." and r2.sentences[0].confidence is not None
    assert len(r2.sentences[0].confidence) == 2  # the tokens of the first sentence only


def test_stop_string_without_sentence_end_ends_the_answer() -> None:
    gen = ScriptGen(lambda p, pre: ("Paris", 0.9, "stop"))
    r = Guard(gen, policy="none").answer("Capital of France?")
    assert r.answer == "Paris" and r.llm_calls == 1 and r.stop_reason == "end"


# -- backend errors ---------------------------------------------------------------------


def failing_corpus() -> FakeCorpus:
    return FakeCorpus(DOCS, fail=BackendUnavailableError("corpus server at http://x unreachable"))


def test_fail_open_skips_checks_and_reports() -> None:
    ret = FakeRetriever(DOCS)
    r = make("quco", one_sentence("Vienna is the capital of France."), failing_corpus(), ret, on_backend_error="open").answer(
        "What is the capital of France?"
    )
    assert r.retrievals == 0 and ret.queries == []
    assert [e.where for e in r.backend_errors] == ["stage1", "sentence 0"]
    assert all(e.action == "open" and "unreachable" in e.error for e in r.backend_errors)
    assert r.sentences[0].risk is not None and r.sentences[0].risk.reasons[0].kind == "backend_error"


def test_fail_closed_retrieves_and_reports() -> None:
    ret = FakeRetriever(DOCS)
    r = make("quco", one_sentence("Vienna is the capital of France."), failing_corpus(), ret, on_backend_error="closed").answer(
        "What is the capital of France?"
    )
    assert r.stage1.retrieved and r.sentences[0].retrieved and r.retrievals == 2
    assert {e.action for e in r.backend_errors} == {"closed"}
    d = r.to_dict()
    assert d["backend_errors"][0]["component"] == "corpus"


def test_fail_raise_propagates() -> None:
    with pytest.raises(BackendUnavailableError):
        make("quco", one_sentence("x"), failing_corpus(), on_backend_error="raise").answer("What about France?")


class FlakyCorpus(FakeCorpus):
    """Answers the first ``ok`` queries, then fails (a server going down mid-answer)."""

    def __init__(self, docs: Sequence[str], ok: int) -> None:
        super().__init__(docs)
        self.ok = ok

    def count(self, term: str):  # type: ignore[no-untyped-def]
        if self.queries >= self.ok:
            self.fail = BackendUnavailableError("server went away")
        return super().count(term)


def test_corpus_down_mid_answer_fail_open() -> None:
    r = make("quco", one_sentence("Vienna is the capital of France."), FlakyCorpus(FREQUENT, ok=1)).answer(
        "What is the capital of France?"
    )
    assert r.stage1.risk is not None and r.stage1.entities[0].count.value >= 1000  # stage 1 answered
    assert all(x.kind != "backend_error" for x in r.stage1.risk.reasons)
    assert [e.where for e in r.backend_errors] == ["sentence 0"] and r.answer


class BrokenRetriever:
    def retrieve(self, query: str, k: int = 3) -> list[Document]:
        raise BackendUnavailableError("search server down")


def test_retriever_failure_is_reported_and_answer_continues() -> None:
    r = Guard(one_sentence("Paris."), retriever=BrokenRetriever(), policy="single").answer("Capital of France?")
    assert r.answer == "Paris." and r.retrievals == 1
    assert r.backend_errors[0].component == "retriever" and r.stage1.retrieval is not None
    assert r.stage1.retrieval.error and not r.stage1.retrieval.documents
    with pytest.raises(BackendUnavailableError):
        Guard(one_sentence("Paris."), retriever=BrokenRetriever(), policy="single", on_backend_error="raise").answer("Q?")


# -- trace and bad input ----------------------------------------------------------------


def test_trace_schema_is_json_and_complete() -> None:
    r = make("quco", one_sentence("Vienna is the capital of France.")).answer("What is the capital of France?")
    d = json.loads(json.dumps(r.to_dict()))
    assert isinstance(d["answer"], str) and isinstance(d["retrievals"], int) and isinstance(d["sentences"], list)
    s = d["sentences"][0]
    for key in ("text", "risk", "reasons", "retrieved", "entities", "pairs", "confidence", "query", "documents", "timings"):
        assert key in s
    assert isinstance(s["retrieved"], bool) and isinstance(s["risk"], float)
    assert set(d["timings"]) >= {"generation", "extraction", "corpus", "scoring", "retrieval", "overhead"}
    assert d["llm_calls"] == 2 and d["stage1"]["entities"][0]["text"] == "France"
    assert d["sentences"][0]["confidence"]["min_prob"] == pytest.approx(0.9)


@pytest.mark.parametrize("q", ["", "   \n\t"])
def test_empty_question_is_bad_input(q: str) -> None:
    with pytest.raises(BadInputError, match="empty"):
        Guard(one_sentence("x"), policy="none").answer(q)


def test_non_string_question_is_bad_input() -> None:
    with pytest.raises(BadInputError):
        Guard(one_sentence("x"), policy="none").answer(None)  # type: ignore[arg-type]


def test_huge_question_is_truncated() -> None:
    gen = one_sentence("Paris.")
    r = make("quco", gen).answer("What is the capital of France? " + "word " * 20_000)
    assert r.truncated and len(r.question) <= MAX_QUESTION_CHARS and r.answer == "Paris."
    assert len(gen.calls[0][0]) < MAX_QUESTION_CHARS + 2000


def test_build_guard_missing_index_and_retriever(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(IndexNotFoundError, match="quco demo"):
        build_guard(policy="quco", index=tmp_path / "nope", retriever=tmp_path, generator=one_sentence("x"), extractor=FakeExtractor())
    with pytest.raises(QucoError, match="retrieval"):
        build_guard(policy="single", retriever=tmp_path / "nope", generator=one_sentence("x"))
    with pytest.raises(QucoError, match="--retriever"):
        build_guard(policy="single", generator=one_sentence("x"))


# -- quco eval qa (logic) ---------------------------------------------------------------


def test_eval_qa_scores_summarizes_and_resumes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from quco.datasets import QARow
    from quco.evaluation.qa import exact_match, run_qa

    assert exact_match("The Paris.", "paris") == 1.0 and exact_match("Paris, France", "Paris") == 0.0
    rows = [QARow(2000, "What is the capital of France?", "", "Paris", "Lyon"), QARow(2001, "Where was Zorblax Quint born?", "", "Vienna", "Rome")]
    guards = {
        "none": Guard(ScriptGen(lambda p, pre: ("Paris.", 0.9, "eos")), policy="none"),
        "single": make("single", ScriptGen(lambda p, pre: ("Vienna.", 0.9, "eos"))),
    }
    seen: list[object] = []
    s = run_qa(rows, guards, tmp_path, config={"model": "script"}, progress=False, on_record=seen.append)
    assert len(seen) == 4 and s["n"] == 2
    d = json.loads((tmp_path / "qa.json").read_text())
    assert d["n"] == 2 and set(d["policies"]) == {"none", "single"}
    none, single = d["policies"]["none"], d["policies"]["single"]
    assert none["em"] == 0.5 and single["em"] == 0.5 and none["retrievals_per_question"] == 0.0
    assert single["retrievals_per_question"] == 1.0 and none["seconds_per_question"] >= 0
    assert "| none | 0.500 [" in (tmp_path / "qa.md").read_text()
    # intervals: none is right on row 2000 only, single on row 2001 only
    assert none["accuracy_ci"][0] <= none["accuracy"] <= none["accuracy_ci"][1]
    assert none["accuracy_ci"][0] < none["accuracy_ci"][1]
    diff = d["differences"]["none - single"]
    assert diff["accuracy"] == 0.0 and diff["accuracy_ci"][0] < 0 < diff["accuracy_ci"][1]
    # resume: nothing is answered again
    seen.clear()
    run_qa(rows, guards, tmp_path, config={"model": "script"}, progress=False, on_record=seen.append)
    assert seen == []
    with pytest.raises(BadInputError, match="other settings"):
        run_qa(rows, guards, tmp_path, config={"model": "other"}, progress=False)
    # a setting the earlier policies left unset (null) may be set when policies are added ...
    cfg = json.loads((tmp_path / "qa_config.json").read_text())
    (tmp_path / "qa_config.json").write_text(json.dumps({**cfg, "index": None}))
    run_qa(rows, guards, tmp_path, config={"model": "script", "index": "idx"}, progress=False, on_record=seen.append)
    assert seen == [] and json.loads((tmp_path / "qa_config.json").read_text())["index"] == "idx"
    # ... but never changed once set
    with pytest.raises(BadInputError, match="other settings \\(index\\)"):
        run_qa(rows, guards, tmp_path, config={"model": "script", "index": "other"}, progress=False)
    # another row range resumes too: the summary covers the rows asked for now, the records stay
    s1 = run_qa(rows[:1], guards, tmp_path, config={"model": "script", "index": "idx", "rows": "2000-2000"}, progress=False, on_record=seen.append)
    assert seen == [] and s1["n"] == 1 and len((tmp_path / "qa_rows.jsonl").read_text().splitlines()) == 4
    run_qa(rows[:1], guards, tmp_path, config={"model": "other"}, progress=False, fresh=True, on_record=seen.append)
    assert len(seen) == 2 and json.loads((tmp_path / "qa.json").read_text())["n"] == 1


def test_eval_qa_cli_rejects_bad_policies() -> None:
    from quco.cli import main

    assert main(["eval", "qa", "--policies", "none,dragin", "--out", "/tmp/x"]) == 1
