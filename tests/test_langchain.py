"""LangChain integration: the guard Runnable around fake LLMs (logic) and around a
real ``langchain_huggingface.HuggingFacePipeline`` over the default small model."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.language_models import FakeListLLM, GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, PromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

from quco.errors import BackendUnavailableError, BadInputError  # noqa: E402
from quco.integrations.langchain import QucoGuardRunnable, QucoRetriever  # noqa: E402
from quco.testing import FakeCorpus, FakeExtractor, FakeRetriever  # noqa: E402

DOCS = [
    "Paris is the capital of France. Paris has the Eiffel Tower.",
    "France is a country in Europe. Paris is in France.",
    "Zorblax Quint was a painter from Vienna.",
]
CORPUS = DOCS * 400  # Paris/France frequent (>= 1000), Zorblax Quint rare (400)

PROMPT = PromptTemplate.from_template("Context:\n{context}\nQuestion: {question}\nAnswer:")


class Recorder:
    """Records the prompts an LLM receives."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def __call__(self, x: Any) -> Any:
        self.prompts.append(x.to_string() if hasattr(x, "to_string") else str(x))
        return x


def guarded(responses: list[str], **kw: Any) -> tuple[QucoGuardRunnable, Recorder, FakeRetriever]:
    rec = Recorder()
    ret = FakeRetriever(DOCS)
    chain = PROMPT | RunnableLambda(rec) | FakeListLLM(responses=responses)
    kw.setdefault("entity_threshold", "1000")  # the paper's count unscaled: in this toy corpus the default rate (about 0) calls nothing rare
    g = QucoGuardRunnable(chain, extractor=FakeExtractor(), stats=FakeCorpus(CORPUS), retriever=ret, **kw)
    return g, rec, ret


def test_stage1_adds_evidence_for_a_rare_question_entity() -> None:
    g, rec, ret = guarded(["Vienna."])
    out = g.invoke({"question": "Where was Zorblax Quint born?"})
    assert isinstance(out, AIMessage) and out.content == "Vienna."
    report = out.response_metadata["quco"]
    assert report["stage1"]["retrieved"] and report["retrievals"] == 1 and report["flagged"]
    assert "Zorblax Quint was a painter from Vienna." in rec.prompts[0]
    assert ret.queries == ["Where was Zorblax Quint born?"]


def test_no_evidence_for_a_frequent_question() -> None:
    g, rec, _ = guarded(["Paris is the capital of France."])
    out = g.invoke({"question": "What is the capital of France?"})
    report = out.response_metadata["quco"]
    assert not report["stage1"]["retrieved"] and not report["flagged"] and report["retrievals"] == 0
    assert "Context:\n\nQuestion" in rec.prompts[0]  # context key set to "" so the template works


def test_stage2_flags_a_sentence_with_an_unseen_pair() -> None:
    g, _, _ = guarded(["Paris is in France. Vienna is the capital of France."])
    out = g.invoke({"question": "What is the capital of France?"})
    sents = out.response_metadata["quco"]["sentences"]
    assert [s["flagged"] for s in sents] == [False, True]
    assert sents[1]["reasons"][0]["kind"] == "zero_cooccurrence" and not sents[1]["retrieved"]
    assert out.content == "Paris is in France. Vienna is the capital of France."  # flag mode keeps the text


def test_rewrite_reruns_the_chain_with_evidence() -> None:
    g, rec, ret = guarded(["Vienna is the capital of France.", "Paris is the capital of France."], on_risk="rewrite")
    out = g.invoke({"question": "What is the capital of France?"})
    assert out.content == "Paris is the capital of France."
    report = out.response_metadata["quco"]
    assert report["rewritten"] and report["retrievals"] == 1 and report["sentences"][0]["retrieved"]
    assert ret.queries[0] == "Vienna is capital of" and "Paris is the capital" in rec.prompts[1]  # head + relation, no tail


def test_rewrite_sentence_by_sentence_with_a_rewriter() -> None:
    rewriter = FakeListLLM(responses=["Paris is the capital of France. Extra text."])
    g, _, _ = guarded(["Paris is in France. Vienna is the capital of France."], on_risk="rewrite", rewriter=rewriter)
    out = g.invoke({"question": "What is the capital of France?"})
    assert out.content == "Paris is in France. Paris is the capital of France."
    s = out.response_metadata["quco"]["sentences"]
    assert s[1]["rewritten"] and s[1]["draft"] == "Vienna is the capital of France." and not s[0]["rewritten"]


def test_string_input_gets_evidence_prefix() -> None:
    rec = Recorder()
    chain = RunnableLambda(rec) | FakeListLLM(responses=["Vienna."])
    g = QucoGuardRunnable(chain, extractor=FakeExtractor(), stats=FakeCorpus(CORPUS), retriever=FakeRetriever(DOCS),
                          entity_threshold="1000")
    g.invoke("Where was Zorblax Quint born?")
    assert rec.prompts[0].startswith("Evidence:\n[1] Zorblax Quint") and rec.prompts[0].endswith("Question: Where was Zorblax Quint born?")


def test_chat_model_output_keeps_its_metadata() -> None:
    chat = GenericFakeChatModel(messages=iter([AIMessage(content="Vienna is the capital of France.", response_metadata={"model": "fake"})]))
    g = QucoGuardRunnable(chat, extractor=FakeExtractor(), stats=FakeCorpus(CORPUS), retriever=FakeRetriever(DOCS))
    out = g.invoke("What is the capital of France?")
    assert out.response_metadata["model"] == "fake" and out.response_metadata["quco"]["flagged"]


def test_batch_ainvoke_and_streaming() -> None:
    g, _, _ = guarded(["Paris.", "Vienna is the capital of France.", "Paris."])
    outs = g.batch([{"question": "What is the capital of France?"}] * 2, config={"max_concurrency": 1})
    assert [o.content for o in outs] == ["Paris.", "Vienna is the capital of France."]
    assert outs[1].response_metadata["quco"]["flagged"]

    out = asyncio.run(g.ainvoke({"question": "Where was Zorblax Quint born?"}))
    assert out.response_metadata["quco"]["stage1"]["retrieved"]

    g2, _, _ = guarded(["Vienna is the capital of France."])
    chunks = list(g2.stream({"question": "What is the capital of France?"}))
    assert len(chunks) >= 2 and "quco" in chunks[-1].response_metadata and chunks[-1].content == ""
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c  # type: ignore[assignment,operator]
    assert total.content == "Vienna is the capital of France."
    assert total.response_metadata["quco"]["sentences"][0]["flagged"]

    async def collect() -> list[Any]:
        return [c async for c in g2.astream({"question": "What is the capital of France?"})]

    achunks = asyncio.run(collect())
    assert "".join(str(c.content) for c in achunks) == "Vienna is the capital of France."
    assert "quco" in achunks[-1].response_metadata


def test_rewrite_mode_streams_one_final_chunk() -> None:
    g, _, _ = guarded(["Vienna is the capital of France.", "Paris is the capital of France."], on_risk="rewrite")
    chunks = list(g.stream({"question": "What is the capital of France?"}))
    assert len(chunks) == 1 and chunks[0].content == "Paris is the capital of France."


def test_bad_input_and_options() -> None:
    g, _, _ = guarded(["x"])
    with pytest.raises(BadInputError):
        g.invoke({"q": "missing key"})
    with pytest.raises(BadInputError):
        g.invoke("   ")
    with pytest.raises(BadInputError):
        guarded(["x"], on_risk="delete")
    with pytest.raises(BadInputError):
        guarded(["x"], policy="single")


def test_backend_down_fails_open_and_reports() -> None:
    chain = PROMPT | FakeListLLM(responses=["Vienna is the capital of France."])
    g = QucoGuardRunnable(
        chain, extractor=FakeExtractor(), stats=FakeCorpus(DOCS, fail=BackendUnavailableError("down")), retriever=FakeRetriever(DOCS)
    )
    report = g.invoke({"question": "What is the capital of France?"}).response_metadata["quco"]
    assert not report["flagged"] and {e["action"] for e in report["backend_errors"]} == {"open"}


def test_quco_retriever_is_a_langchain_retriever() -> None:
    r = QucoRetriever(retriever=FakeRetriever(DOCS), k=2)
    docs = r.invoke("Zorblax Quint painter")
    assert isinstance(docs[0], LCDocument) and docs[0].page_content == DOCS[2]
    assert docs[0].metadata["id"] == "2" and docs[0].metadata["score"] > 0 and len(docs) <= 2


@pytest.mark.slow
def test_guard_around_a_real_huggingface_pipeline(small_lm, extractor, small_stats, bm25_retriever) -> None:  # type: ignore[no-untyped-def]
    """The README quick start: ``prompt | HuggingFacePipeline`` over the default small model."""
    transformers = pytest.importorskip("transformers")
    from langchain_huggingface import HuggingFacePipeline

    lm = small_lm  # quco.models.load_causal_lm(): the default SmolLM2-135M-Instruct, offline
    pipe = transformers.pipeline(
        "text-generation", model=lm.model, tokenizer=lm.tokenizer, max_new_tokens=8, do_sample=False, return_full_text=False
    )
    llm = HuggingFacePipeline(pipeline=pipe)
    prompt = PromptTemplate.from_template("Use the context to answer briefly.\n{context}\nQuestion: {question}\nAnswer:")
    guard = QucoGuardRunnable(prompt | llm, extractor=extractor, stats=small_stats, retriever=bm25_retriever,
                              entity_threshold="1000")  # the paper's count unscaled: in this toy corpus the default rate (about 0) calls nothing rare
    out = guard.invoke({"question": "In which city was Marie Curie born?"})
    report = out.response_metadata["quco"]
    assert isinstance(out.content, str) and out.content.strip()
    assert report["stage1"]["entities"] and report["stage1"]["entities"][0]["text"] == "Marie Curie"
    # the small test corpus makes Marie Curie rare: stage 1 retrieved her passages
    assert report["stage1"]["retrieved"] and any("Curie" in d["text"] for d in report["stage1"]["documents"])


# -- both sides: token confidences from the wrapped chain's own messages ----------------------


def openai_logprobs(text: str, lps: dict[str, float] | None = None, default: float = -0.01) -> dict[str, Any]:
    """``response_metadata["logprobs"]`` as ChatOpenAI(logprobs=True) fills it: one entry per token."""
    toks = [t for t in text.replace(" ", "\x00 ").split("\x00") if t]
    lps = lps or {}
    content = [
        {"token": t, "logprob": lps.get(t.strip(), default), "bytes": list(t.encode()),
         "top_logprobs": [{"token": t, "logprob": lps.get(t.strip(), default), "bytes": None}]}
        for t in toks
    ]  # fmt: skip
    return {"content": content, "refusal": None}


def chat_guard(messages: list[AIMessage], **kw: Any) -> QucoGuardRunnable:
    chat = GenericFakeChatModel(messages=iter(messages))
    return QucoGuardRunnable(chat, extractor=FakeExtractor(), stats=FakeCorpus(CORPUS), retriever=FakeRetriever(DOCS), **kw)


def test_message_logprobs_are_read_into_confidences() -> None:
    from quco.integrations.langchain import message_confidence

    text = "Paris is the capital of France."
    msg = AIMessage(content=text, response_metadata={"logprobs": openai_logprobs(text, {"Paris": -2.0})})
    conf = message_confidence(msg)
    assert conf is not None and "".join(t.token for t in conf.tokens) == text
    assert conf.tokens[0].logprob == -2.0 and conf.min_prob == pytest.approx(0.1353, abs=1e-4)
    assert message_confidence(AIMessage(content=text)) is None and message_confidence("text") is None


def test_combined_uses_the_chain_logprobs() -> None:
    """The same answer, once confidently and once hesitantly generated: combined's risk follows."""
    text = "Vienna is the capital of France."
    sure = AIMessage(content=text, response_metadata={"logprobs": openai_logprobs(text, default=-0.01)})
    unsure = AIMessage(content=text, response_metadata={"logprobs": openai_logprobs(text, default=-3.0)})
    bare = AIMessage(content=text)
    g = chat_guard([sure, unsure, bare], policy="combined")
    q = "What is the capital of France?"
    reports = [g.invoke(q).response_metadata["quco"] for _ in range(3)]
    assert [r["confidence"]["source"] for r in reports] == ["model", "model", "none"]
    assert reports[0]["confidence"]["n_tokens"] == 6 and reports[0]["confidence"]["mean_logprob"] == pytest.approx(-0.01)
    risks = [r["sentences"][0]["risk"] for r in reports]
    assert risks[1] > risks[0] + 0.05  # less confident, riskier: the confidence side is used
    assert risks[2] != risks[0] and risks[2] != risks[1]  # without logprobs the model imputes them
    assert reports[0]["sentences"][0]["confidence"]["tokens"][0] == {"token": "Vienna", "prob": pytest.approx(0.99005, abs=1e-5)}


def test_flare_judges_each_sentence_by_its_own_tokens() -> None:
    text = "Paris is in France. Vienna is the capital of France."
    msg = AIMessage(content=text, response_metadata={"logprobs": openai_logprobs(text, {"Vienna": -2.3})})
    g = chat_guard([msg, AIMessage(content=text)], policy="flare", on_risk="rewrite", rewriter=FakeListLLM(responses=["Paris is."]))
    report = g.invoke("What is the capital of France?").response_metadata["quco"]
    s = report["sentences"]
    assert [x["flagged"] for x in s] == [False, True] and s[1]["reasons"][0]["subject"] == "Vienna"
    assert s[1]["query"] == "is the capital of France." and s[1]["rewritten"]  # FLARE's masked query
    assert len(s[0]["confidence"]["tokens"]) == 4 and len(s[1]["confidence"]["tokens"]) == 6
    report = g.invoke("What is the capital of France?").response_metadata["quco"]
    assert not report["flagged"] and report["sentences"][0]["reasons"][0]["kind"] == "no_confidence"


def test_streamed_chunks_carry_their_logprobs() -> None:
    from langchain_core.runnables import RunnableGenerator

    text = "Vienna is the capital of France."
    entries = openai_logprobs(text, {"Vienna": -2.3})["content"]

    def chat(_: Any) -> Any:
        for e in entries:  # as ChatOpenAI streams: one token and its logprob per chunk
            yield AIMessageChunk(content=e["token"], response_metadata={"logprobs": {"content": [e]}})

    g = QucoGuardRunnable(RunnableGenerator(chat), retriever=FakeRetriever(DOCS), policy="flare")
    chunks = list(g.stream("What is the capital of France?"))
    assert "".join(str(c.content) for c in chunks) == text
    report = chunks[-1].response_metadata["quco"]
    assert report["confidence"]["source"] == "model" and report["confidence"]["n_tokens"] == 6
    assert report["flagged"] and report["sentences"][0]["reasons"][0]["subject"] == "Vienna"


@pytest.mark.slow
def test_a_local_scorer_is_a_labelled_proxy(scorer) -> None:  # type: ignore[no-untyped-def]
    g, _, _ = guarded(["Vienna is the capital of France."], policy="combined", scorer=scorer)
    report = g.invoke({"question": "What is the capital of France?"}).response_metadata["quco"]
    conf = report["confidence"]
    assert conf["source"] == "proxy" and conf["proxy_model"] == scorer.name and conf["n_tokens"] >= 6
    direct = scorer.score("What is the capital of France?", "Vienna is the capital of France.")
    assert conf["seq_logprob"] == pytest.approx(direct.seq_logprob, abs=1e-4)


@pytest.mark.slow
def test_a_real_chat_openai_with_logprobs(llama_upstream, extractor, small_stats, bm25_retriever) -> None:  # type: ignore[no-untyped-def]
    """The README quick start: ChatOpenAI(logprobs=True) against a real served model (llama.cpp)."""
    langchain_openai = pytest.importorskip("langchain_openai")
    llm = langchain_openai.ChatOpenAI(
        base_url=llama_upstream.base_url, api_key=llama_upstream.api_key, model="smollm2",
        temperature=0, max_tokens=16, logprobs=True, top_logprobs=3, max_retries=0,
    )  # fmt: skip
    prompt = ChatPromptTemplate.from_messages([("user", "{context}\nQuestion: {question}")])
    guard = QucoGuardRunnable(prompt | llm, extractor=extractor, stats=small_stats, retriever=bm25_retriever, policy="combined")
    out = guard.invoke({"question": "In which city was Marie Curie born?"})
    report = out.response_metadata["quco"]
    assert out.content and report["confidence"]["source"] == "model"
    assert report["confidence"]["n_tokens"] == out.response_metadata["token_usage"]["completion_tokens"]
    assert report["sentences"] and all(s["rule"] == "combined" for s in report["sentences"])
    chunks = list(guard.stream({"question": "In which city was Marie Curie born?"}))
    streamed = chunks[-1].response_metadata["quco"]
    assert "".join(str(c.content) for c in chunks) == out.content
    assert streamed["confidence"]["source"] == "model" and streamed["confidence"]["n_tokens"] == report["confidence"]["n_tokens"]
