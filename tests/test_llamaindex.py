"""LlamaIndex integration: the query-engine guard around llama-index-core's own RetrieverQueryEngine,
offline: quco's BM25 collection as its retriever and the packaged SmolLM2 as its LLM (HFLLM, which
returns token logprobs). Logic tests use small engines written here and quco's fakes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.response.schema import Response  # noqa: E402
from llama_index.core.llms import MockLLM  # noqa: E402
from llama_index.core.query_engine import CustomQueryEngine, RetrieverQueryEngine  # noqa: E402

from quco.errors import BadInputError  # noqa: E402
from quco.integrations.llamaindex import HFLLM, QucoQueryEngine, QucoRetriever  # noqa: E402
from quco.testing import FakeCorpus, FakeExtractor, FakeRetriever  # noqa: E402

DOCS = [
    "Paris is the capital of France. Paris has the Eiffel Tower.",
    "France is a country in Europe. Paris is in France.",
    "Zorblax Quint was a painter from Vienna.",
]
CORPUS = DOCS * 400


class Canned(CustomQueryEngine):
    """A query engine without separate retrieval: answers from a list, records its queries."""

    answers: list[str]
    queries: list[str] = []

    def custom_query(self, query_str: str) -> Response:
        self.queries.append(query_str)
        return Response(response=self.answers[min(len(self.queries), len(self.answers)) - 1])


def guard(engine: Any, **kw: Any) -> QucoQueryEngine:
    kw.setdefault("entity_threshold", "1000")  # the paper's count unscaled: in this toy corpus the default rate (about 0) calls nothing rare
    return QucoQueryEngine(engine, extractor=FakeExtractor(), stats=FakeCorpus(CORPUS), retriever=FakeRetriever(DOCS), **kw)


def test_evidence_joins_the_retrieved_nodes_and_the_question_stays() -> None:
    ret = FakeRetriever(DOCS)
    inner = RetrieverQueryEngine.from_args(QucoRetriever(ret, k=1), llm=MockLLM(max_tokens=4))
    g = guard(inner, k=2)
    r = g.query("Where was Zorblax Quint born?")
    report = r.metadata["quco"]
    assert report["stage1"]["retrieved"] and report["retrievals"] == 1
    ids = [n.node.node_id for n in r.source_nodes]
    assert ids[0] == "2" and len(ids) == len(set(ids))  # evidence first, then retrieved nodes it does not repeat
    assert report["confidence"]["source"] == "none"  # MockLLM returns no logprobs
    r = g.query("What is the capital of France?")
    assert not r.metadata["quco"]["stage1"]["retrieved"] and [n.node.node_id for n in r.source_nodes] == ["0"]


def test_an_engine_without_retrieval_gets_evidence_in_the_query() -> None:
    inner = Canned(answers=["Vienna."], queries=[])
    r = guard(inner).query("Where was Zorblax Quint born?")
    assert inner.queries[0].startswith("Evidence:\n[1] Zorblax Quint") and inner.queries[0].endswith("Question: Where was Zorblax Quint born?")
    assert r.response == "Vienna." and r.metadata["quco"]["flagged"]


def test_rewrite_queries_again_with_the_evidence() -> None:
    inner = Canned(answers=["Vienna is the capital of France.", "Paris is the capital of France."], queries=[])
    r = guard(inner, on_risk="rewrite").query("What is the capital of France?")
    report = r.metadata["quco"]
    assert r.response == "Paris is the capital of France." and report["rewritten"] and report["draft"].startswith("Vienna")
    assert inner.queries[0] == "What is the capital of France?" and inner.queries[1].startswith("Evidence:")
    assert report["sentences"][0]["flagged"] and report["sentences"][0]["reasons"][0]["kind"] == "zero_cooccurrence"
    r = asyncio.run(guard(Canned(answers=["Paris."], queries=[])).aquery("What is the capital of France?"))
    assert r.response == "Paris." and not r.metadata["quco"]["flagged"]


def test_bad_options() -> None:
    with pytest.raises(BadInputError):
        guard(Canned(answers=["x"], queries=[]), policy="single")
    with pytest.raises(BadInputError):
        guard(Canned(answers=["x"], queries=[])).query("   ")


@pytest.mark.slow
def test_hf_llm_returns_the_generation_logprobs(generator) -> None:  # type: ignore[no-untyped-def]
    llm = HFLLM(generator, max_new_tokens=6)
    resp = llm.complete("What is the capital of France?")
    gen = generator.generate("What is the capital of France?", max_new_tokens=6)
    assert resp.text == gen.text and len(resp.logprobs) == len(gen.confidence)
    assert [p[0].logprob for p in resp.logprobs] == pytest.approx([t.logprob for t in gen.confidence.tokens], abs=1e-5)


@pytest.mark.slow
def test_guard_around_a_real_retriever_query_engine(generator, extractor, small_stats, bm25_retriever) -> None:  # type: ignore[no-untyped-def]
    """The README quick start: RetrieverQueryEngine over quco's BM25 collection and the packaged model."""
    inner = RetrieverQueryEngine.from_args(QucoRetriever(bm25_retriever, k=1), llm=HFLLM(generator, max_new_tokens=16))
    engine = QucoQueryEngine(inner, extractor=extractor, stats=small_stats, retriever=bm25_retriever, policy="combined", k=2)
    r = engine.query("In which city was Marie Curie born?")
    report = r.metadata["quco"]
    assert isinstance(r.response, str) and r.response.strip()
    assert report["stage1"]["entities"][0]["text"] == "Marie Curie" and report["policy"] == "combined"
    # the LLM's own logprobs, heard during the query, are the confidence side
    conf = report["confidence"]
    assert conf["source"] == "model" and 1 <= conf["n_tokens"] <= 16
    assert all(s["rule"] == "combined" for s in report["sentences"])
    # Marie Curie is rare in the small corpus: her passages were added to the engine's own node
    assert report["stage1"]["retrieved"] and report["stage1"]["flagged"]
    assert r.source_nodes[0].node.node_id == report["stage1"]["documents"][0]["id"]
    assert "Warsaw" in r.source_nodes[0].node.get_content() and "Warsaw" in r.response
