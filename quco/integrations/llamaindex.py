"""LlamaIndex integration: guard a query engine; quco retrievers and the packaged model as LlamaIndex parts.

:class:`QucoQueryEngine` wraps any LlamaIndex query engine with QuCo's checks:

- **stage 1** on the query: when it is risky, the top-``k`` passages of the
  quco retriever are added as evidence. For an engine that can retrieve and
  synthesize separately (``RetrieverQueryEngine``), they join the retrieved
  nodes and the question stays as asked; for any other engine they are put
  before the question in the query string.
- **stage 2** on the response text, sentence by sentence, as
  :class:`~quco.integrations.langchain.QucoGuardRunnable` does. With
  ``on_risk="rewrite"`` the engine is queried again with the evidence found
  for the risky sentences.

**Both sides.** A query engine's response does not carry the LLM's logprobs,
so the guard listens to LlamaIndex's instrumentation during the query: when
the last LLM call returned ``logprobs`` (``CompletionResponse.logprobs`` or
``ChatResponse.logprobs``, as :class:`HFLLM` and OpenAI-style LLMs with
``logprobs=True`` fill them) and its text is the response's, those are the
answer's token confidences (``source="model"``). LlamaIndex keeps, per token,
a list of alternatives: the first is taken as the emitted token (the most
likely one, which greedy decoding emits). Otherwise a local ``scorer`` may
score the answer as a labelled proxy.

The report is ``response.metadata["quco"]`` (the same fields as the LangChain
runnable's); the evidence nodes are in ``response.source_nodes``.

:class:`QucoRetriever` is a LlamaIndex retriever over any quco retriever;
:class:`HFLLM` is a LlamaIndex LLM over quco's offline transformers generator
(the packaged SmolLM2 by default), returning token logprobs.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence
from typing import Any

from quco._deps import require

require("llama_index.core", "llamaindex")

from llama_index.core.base.base_query_engine import BaseQueryEngine  # noqa: E402
from llama_index.core.base.base_retriever import BaseRetriever  # noqa: E402
from llama_index.core.base.llms.types import CompletionResponse, CompletionResponseGen, LLMMetadata, LogProb  # noqa: E402
from llama_index.core.base.response.schema import Response  # noqa: E402
from llama_index.core.instrumentation import get_dispatcher  # noqa: E402
from llama_index.core.instrumentation.event_handlers import BaseEventHandler  # noqa: E402
from llama_index.core.instrumentation.events import BaseEvent  # noqa: E402
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent  # noqa: E402
from llama_index.core.llms import CustomLLM  # noqa: E402
from llama_index.core.llms.callbacks import llm_completion_callback  # noqa: E402
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode  # noqa: E402
from pydantic import ConfigDict, PrivateAttr  # noqa: E402

from quco.corpus.base import CorpusStats  # noqa: E402
from quco.guard.checks import OnBackendError  # noqa: E402
from quco.integrations.session import AnswerGuard, GuardSession, evidence_block  # noqa: E402
from quco.protocols import Extractor, Retriever, Scorer  # noqa: E402
from quco.types import Confidence, Document, TokenConfidence  # noqa: E402

__all__ = ["HFLLM", "QucoQueryEngine", "QucoRetriever", "to_node"]


def to_node(d: Document) -> NodeWithScore:
    """A quco Document as a scored LlamaIndex node (the id kept)."""
    return NodeWithScore(node=TextNode(text=d.text, id_=d.id, metadata={**dict(d.metadata), "quco_id": d.id}), score=float(d.score))


class QucoRetriever(BaseRetriever):
    """A quco retriever (BM25, dense, any ``quco.protocols.Retriever``) as a LlamaIndex retriever.

    Args:
        retriever: the quco retriever.
        k: nodes per query.
    """

    def __init__(self, retriever: Retriever, k: int = 3) -> None:
        super().__init__()
        self.retriever = retriever
        self.k = k

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [to_node(d) for d in self.retriever.retrieve(query_bundle.query_str, k=self.k)]


class HFLLM(CustomLLM):
    """A LlamaIndex LLM over quco's transformers generator, offline (default: the packaged SmolLM2).

    ``complete`` returns the text with its token logprobs
    (``CompletionResponse.logprobs``: one list per token, the emitted token first).

    Args:
        generator: a :class:`quco.lm.generator.HFGenerator` (or anything with its
            ``generate``); None loads the default model.
        max_new_tokens: most tokens per completion.
        stop: strings that end a completion.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    max_new_tokens: int = 64
    stop: list[str] = []
    _generator: Any = PrivateAttr()

    def __init__(self, generator: Any = None, *, max_new_tokens: int = 64, stop: Sequence[str] = ()) -> None:
        super().__init__(max_new_tokens=max_new_tokens, stop=list(stop))
        if generator is None:
            from quco.lm.generator import HFGenerator

            generator = HFGenerator()
        self._generator = generator

    @classmethod
    def class_name(cls) -> str:
        return "quco_hf_llm"

    @property
    def metadata(self) -> LLMMetadata:
        lm = getattr(self._generator, "lm", None)
        return LLMMetadata(
            context_window=int(getattr(lm, "context_length", 2048)),
            num_output=self.max_new_tokens,
            model_name=str(getattr(self._generator, "name", "quco-hf")),
        )

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        gen = self._generator.generate(prompt, max_new_tokens=self.max_new_tokens, stop=self.stop)
        logprobs = [[LogProb(token=t.token, logprob=t.logprob, bytes=list(t.token.encode()))] for t in gen.confidence.tokens]
        return CompletionResponse(text=gen.text, logprobs=logprobs, raw={"finish_reason": gen.finish_reason})

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        resp = self.complete(prompt, formatted=formatted, **kwargs)

        def gen() -> CompletionResponseGen:
            yield CompletionResponse(text=resp.text, delta=resp.text, logprobs=resp.logprobs, raw=resp.raw)

        return gen()


# -- the LLM's logprobs, heard through LlamaIndex's instrumentation ----------------------------

_HEARD: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("quco_llamaindex_heard", default=None)


class _LLMEndListener(BaseEventHandler):
    """Keeps the responses of the LLM calls made inside a guarded query (per context)."""

    @classmethod
    def class_name(cls) -> str:
        return "QucoLLMEndListener"

    def handle(self, event: BaseEvent, **kwargs: Any) -> Any:
        heard = _HEARD.get()
        if heard is not None and isinstance(event, LLMCompletionEndEvent | LLMChatEndEvent):
            heard.append(event.response)


_LISTENING: list[bool] = []


def _listen() -> None:
    if not _LISTENING:
        get_dispatcher().add_event_handler(_LLMEndListener())
        _LISTENING.append(True)


def _response_text(r: Any) -> str:
    if isinstance(r, CompletionResponse):
        return r.text
    msg = getattr(r, "message", None)
    return str(getattr(msg, "content", "") or "")


def llm_confidence(responses: Sequence[Any], text: str) -> Confidence | None:
    """Token confidences of the last LLM response when it is ``text`` and carries logprobs."""
    if not responses:
        return None
    last = responses[-1]
    lps = getattr(last, "logprobs", None)
    if not lps or _response_text(last).strip() != text.strip():
        return None
    tokens = [TokenConfidence(pos[0].token, -1, float(pos[0].logprob), float("nan")) for pos in lps if pos]
    return Confidence(tuple(tokens)) if tokens else None


class QucoQueryEngine(BaseQueryEngine):
    """Guard a LlamaIndex query engine with QuCo's stage 1 (query) and stage 2 (response).

    Args:
        query_engine: the engine to guard.
        extractor: entity extractor (needed by ``quco`` and ``combined``).
        stats: corpus statistics (needed by ``quco`` and ``combined``).
        retriever: quco retriever for evidence.
        policy: ``"quco"``, ``"combined"`` or ``"flare"``.
        on_risk: ``"flag"`` or ``"rewrite"``.
        risk_model: fitted risk model for ``combined`` (default: the shipped one).
        scorer: local confidence scorer for answers without LLM logprobs (a labelled proxy).
        k: passages per retrieval.
        **options: ``entity_threshold``, ``window``, ``theta``, ``risk_threshold``,
            ``on_backend_error``, ``max_evidence_chars`` (see
            :class:`~quco.integrations.session.AnswerGuard`).
    """

    def __init__(
        self,
        query_engine: BaseQueryEngine,
        *,
        extractor: Extractor | None = None,
        stats: CorpusStats | None = None,
        retriever: Retriever,
        policy: str = "quco",
        on_risk: str = "flag",
        risk_model: Any = None,
        scorer: Scorer | None = None,
        k: int = 3,
        on_backend_error: OnBackendError = "open",
        **options: Any,
    ) -> None:
        self.guard = AnswerGuard(
            extractor=extractor, stats=stats, retriever=retriever, policy=policy, on_risk=on_risk,
            risk_model=risk_model, scorer=scorer, k=k, on_backend_error=on_backend_error, **options,
        )  # fmt: skip
        self.query_engine = query_engine
        super().__init__(callback_manager=getattr(query_engine, "callback_manager", None))
        _listen()

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {"query_engine": self.query_engine}

    def _ask(self, bundle: QueryBundle, docs: Sequence[Document]) -> tuple[Any, list[Any]]:
        """The inner engine's response with ``docs`` as evidence, and the LLM responses heard meanwhile."""
        heard: list[Any] = []
        token = _HEARD.set(heard)
        try:
            if not docs:
                return self.query_engine.query(bundle), heard
            extra = [to_node(d) for d in docs]
            try:
                nodes = self.query_engine.retrieve(bundle)
            except NotImplementedError:
                block = evidence_block(docs, self.guard.max_evidence_chars)
                return self.query_engine.query(f"Evidence:\n{block}\n\nQuestion: {bundle.query_str}"), heard
            seen = {n.node.node_id for n in extra}
            return self.query_engine.synthesize(bundle, extra + [n for n in nodes if n.node.node_id not in seen]), heard
        finally:
            _HEARD.reset(token)

    def _confidence(self, st: GuardSession, heard: list[Any], text: str) -> tuple[Confidence | None, str]:
        conf = llm_confidence(heard, text)
        if conf is not None:
            return conf, "model"
        with st.clock.time("scoring"):
            conf = self.guard.proxy_confidence(st.question, text)
        return (conf, "proxy") if conf is not None and len(conf) else (None, "none")

    def _query(self, query_bundle: QueryBundle) -> Response:
        st = self.guard.start(query_bundle.query_str)
        with st.clock.time("generation"):
            resp, heard = self._ask(query_bundle, st.evidence)
        text = _text(resp)
        conf, source = self._confidence(st, heard, text)
        records = st.check(text, conf)
        if self.guard.on_risk == "rewrite" and st.needs_rewrite(records):
            with st.clock.time("generation"):
                resp, _ = self._ask(query_bundle, st.rewrite_documents(records))
            report = st.report(records, confidence=conf, source=source, rewritten=True, draft=text)
        else:
            report = st.report(records, confidence=conf, source=source)
        return Response(response=_text(resp), source_nodes=list(getattr(resp, "source_nodes", []) or []),
                        metadata={**(getattr(resp, "metadata", None) or {}), "quco": report})  # fmt: skip

    async def _aquery(self, query_bundle: QueryBundle) -> Response:
        ctx = contextvars.copy_context()
        return await asyncio.to_thread(ctx.run, self._query, query_bundle)


def _text(resp: Any) -> str:
    """The text of a response (a streaming one is read to its end)."""
    if hasattr(resp, "get_response"):
        resp = resp.get_response()
    return str(getattr(resp, "response", resp) or "")
