"""LangChain integration: guard an existing chain or LLM, expose quco retrievers.

:class:`QucoGuardRunnable` wraps any Runnable (``prompt | llm``, a chat model, an
LLM) with QuCo's two checks:

- **stage 1, before the chain runs**: the question's entities are counted in
  the corpus; when the question is risky (mean frequency below
  ``entity_threshold``, or the ``combined`` model's probability over
  ``risk_threshold``) the top-``k`` passages are retrieved and added to the
  chain's input: a dict input gets them under ``context_key`` (the key is
  always set, to ``""`` when nothing was retrieved, so a prompt template can
  use ``{context}``); a string input is prefixed with them.
- **stage 2, on the output**: each sentence is checked: its claims
  (``quco``: a (head, relation, tail) triplet whose head and tail never
  co-occur, or a (head, relation) tuple whose head is rare; ``claims="pairs"``:
  every head/tail entity pair; the evidence query is head ⊕ relation per
  flagged claim, never the tail), the fitted model over both sides
  (``combined``), or its tokens' probabilities (``flare``). With
  ``on_risk="flag"`` risky sentences are reported; with ``on_risk="rewrite"``
  evidence is retrieved for them and the answer is rewritten: sentence by
  sentence with ``rewriter`` (a Runnable taking a prompt string) when one is
  given, else by running the wrapped chain again with the evidence added (as in
  stage 1).

**Both sides.** When the chain returns a message with OpenAI-format token
logprobs in ``response_metadata["logprobs"]`` (``ChatOpenAI(logprobs=True)``,
and so any OpenAI-compatible server: vLLM, llama.cpp, ``quco proxy``), they are
the answer's token confidences: ``combined`` and ``flare`` use them, each
sentence with its own tokens (:mod:`quco.integrations.logprobs`). When it
returns none (an HF pipeline, a plain LLM), ``scorer`` (a local
:class:`~quco.lm.confidence.ConfidenceScorer`) may score the answer as a
**proxy**, reported as such (``report["confidence"]["source"] == "proxy"``);
without one the confidence side is absent (``"none"``).

**Output**: always an :class:`~langchain_core.messages.AIMessage` whose ``content``
is the (possibly rewritten) answer and whose ``response_metadata["quco"]`` is
the risk report (a JSON-ready dict: ``flagged``, ``reasons``, ``retrievals``,
``coverage``, ``confidence``, ``stage1``, ``sentences`` with ``risk``,
``reasons``, ``retrieved``, ``documents``...; see
:meth:`quco.integrations.session.GuardSession.report`). When the chain itself
returns a message, its other response metadata is kept.

``invoke``, ``ainvoke``, ``batch``/``abatch`` and ``stream``/``astream`` work.
Streaming passes the chain's chunks through as ``AIMessageChunk`` and ends with
an empty chunk carrying the report; with ``on_risk="rewrite"`` the answer is
buffered and sent as one chunk (a rewrite needs the whole answer).

:class:`QucoRetriever` is a ``BaseRetriever`` over any quco retriever. The other
direction (a LangChain retriever used by the guard) is
:class:`quco.retrieval.LangChainRetriever`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from quco._deps import require

require("langchain_core")

from langchain_core.callbacks import CallbackManagerForRetrieverRun  # noqa: E402
from langchain_core.documents import Document as LCDocument  # noqa: E402
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage  # noqa: E402
from langchain_core.retrievers import BaseRetriever  # noqa: E402
from langchain_core.runnables import Runnable, RunnableConfig  # noqa: E402
from pydantic import ConfigDict  # noqa: E402

from quco.corpus.base import CorpusStats  # noqa: E402
from quco.errors import BadInputError  # noqa: E402
from quco.guard.checks import OnBackendError  # noqa: E402
from quco.guard.trace import SentenceRecord  # noqa: E402
from quco.integrations.logprobs import confidence_from_logprobs, has_logprobs  # noqa: E402
from quco.integrations.session import AnswerGuard, GuardSession, evidence_block  # noqa: E402
from quco.nlp.sentences import sentence_spans  # noqa: E402
from quco.prompts import rewrite_prompt  # noqa: E402
from quco.protocols import ClaimExtractor, Extractor, Retriever, Scorer  # noqa: E402
from quco.risk.coverage import DEFAULT_ACTION, DEFAULT_FLOOR  # noqa: E402
from quco.risk.thresholds import DEFAULT_COOC, DEFAULT_ENTITY, ThresholdSpec  # noqa: E402
from quco.types import Confidence, Document  # noqa: E402

__all__ = ["QucoGuardRunnable", "QucoRetriever", "message_confidence", "to_langchain_document"]


def to_langchain_document(d: Document) -> LCDocument:
    """A quco Document as a LangChain Document (id and score in the metadata)."""
    return LCDocument(page_content=d.text, metadata={**dict(d.metadata), "id": d.id, "score": float(d.score)}, id=d.id)


class QucoRetriever(BaseRetriever):
    """A quco retriever (BM25, dense, or any ``quco.protocols.Retriever``) as a LangChain retriever.

    Example:
        >>> from quco.retrieval import open_retriever  # doctest: +SKIP
        >>> lc = QucoRetriever(retriever=open_retriever("indexes/built/retrieval"), k=3)  # doctest: +SKIP
        >>> lc.invoke("Who wrote Emma?")  # doctest: +SKIP
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any
    """The quco retriever (``retrieve(query, k) -> list[quco.types.Document]``)."""
    k: int = 3
    """Documents per query."""

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        return [to_langchain_document(d) for d in self.retriever.retrieve(query, k=self.k)]


def _text_of(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, BaseMessage):
        return output.text if isinstance(output.text, str) else str(output.content)
    if isinstance(output, dict):
        for key in ("text", "output", "answer", "content"):
            if isinstance(output.get(key), str):
                return str(output[key])
    return str(output)


def _logprob_entries(output: Any) -> list[Any]:
    """The chat-format logprob entries a message carries (``response_metadata["logprobs"]``)."""
    if not isinstance(output, BaseMessage):
        return []
    lp = output.response_metadata.get("logprobs")
    if isinstance(lp, dict) and isinstance(lp.get("content"), list):
        return list(lp["content"])
    if isinstance(lp, list):
        return list(lp)
    return []


def message_confidence(message: Any) -> Confidence | None:
    """Token confidences from a LangChain message's OpenAI-format logprobs, or None when it has none.

    Reads ``response_metadata["logprobs"]`` as ``ChatOpenAI(logprobs=True)``
    fills it (``{"content": [{"token", "logprob", "top_logprobs"}, ...]}``), and
    the legacy completions shape. Anything that is not a message gives None.

    Raises:
        BadInputError: the logprobs are in no known shape.
    """
    if not isinstance(message, BaseMessage):
        return None
    lp = message.response_metadata.get("logprobs")
    return confidence_from_logprobs(lp) if has_logprobs(lp) else None


class QucoGuardRunnable(Runnable[Any, AIMessage]):
    """Guard a LangChain chain or LLM with QuCo's stage 1 (input) and stage 2 (output).

    Args:
        chain: the Runnable to guard (e.g. ``prompt | llm``).
        extractor: entity extractor (``quco.nlp.entities.EntityExtractor``);
            needed by ``quco`` and ``combined``.
        stats: corpus statistics (``quco.corpus.open_stats(...)``); needed by
            ``quco`` and ``combined``.
        retriever: quco retriever for evidence.
        policy: ``"quco"`` (corpus rules), ``"combined"`` (fitted risk model over
            both sides) or ``"flare"`` (token probabilities below ``theta``).
        on_risk: ``"flag"`` (report risky sentences) or ``"rewrite"``.
        rewriter: Runnable taking a prompt string, used to rewrite risky
            sentences one by one; without it the chain is run again with the evidence.
        risk_model: fitted risk model for ``combined`` (default: the shipped one).
        scorer: local confidence scorer for answers that come without logprobs
            (reported as a proxy); None: no confidence side for them.
        k: passages per retrieval.
        entity_threshold: τ_entity, stage 1's threshold on the mean question-entity
            count: a count or a rate ``COUNT@TOKENS`` scaled to the index
            (:mod:`quco.risk.thresholds`).
        cooc_threshold: τ_cooc, stage 2's co-occurrence threshold (a count or a rate).
        coverage_floor: below this share of entities known to the corpus a
            check is ``out_of_coverage`` (:mod:`quco.risk.coverage`).
        on_out_of_coverage: ``"rule"`` (default), ``"retrieve"``, ``"pass"`` or ``"confidence-only"``.
        window: co-occurrence window in tokens.
        theta: FLARE's token-probability threshold.
        risk_threshold: ``combined``'s probability threshold.
        on_backend_error: corpus failures: ``"open"``, ``"closed"`` or ``"raise"``.
        question_key: key of the question in a dict input.
        context_key: key under which evidence is added to a dict input.
        max_evidence_chars: each passage is cut to this length.
        claims: stage 2 reads ``"triplets"`` (the paper) or ``"pairs"``.
        claim_extractor: claim extractor for triplet mode (default: the
            entity extractor's own, :class:`~quco.nlp.claims.ClaimParser`).
    """

    def __init__(
        self,
        chain: Runnable[Any, Any],
        *,
        extractor: Extractor | None = None,
        stats: CorpusStats | None = None,
        retriever: Retriever,
        policy: str = "quco",
        on_risk: str = "flag",
        rewriter: Runnable[Any, Any] | None = None,
        risk_model: Any = None,
        scorer: Scorer | None = None,
        k: int = 3,
        entity_threshold: ThresholdSpec = DEFAULT_ENTITY,
        cooc_threshold: ThresholdSpec = DEFAULT_COOC,
        coverage_floor: float = DEFAULT_FLOOR,
        on_out_of_coverage: str = DEFAULT_ACTION,
        window: int | None = 1000,
        theta: float = 0.4,
        risk_threshold: float = 0.5,
        on_backend_error: OnBackendError = "open",
        question_key: str = "question",
        context_key: str = "context",
        max_evidence_chars: int = 1000,
        claims: str = "triplets",
        claim_extractor: ClaimExtractor | None = None,
    ) -> None:
        self.guard = AnswerGuard(
            extractor=extractor,
            stats=stats,
            retriever=retriever,
            policy=policy,
            on_risk=on_risk,
            risk_model=risk_model,
            scorer=scorer,
            k=k,
            entity_threshold=entity_threshold,
            cooc_threshold=cooc_threshold,
            coverage_floor=coverage_floor,
            on_out_of_coverage=on_out_of_coverage,
            window=window,
            theta=theta,
            risk_threshold=risk_threshold,
            on_backend_error=on_backend_error,
            max_evidence_chars=max_evidence_chars,
            claims=claims,
            claim_extractor=claim_extractor,
        )
        self.chain = chain
        self.rewriter = rewriter
        self.question_key = question_key
        self.context_key = context_key

    @property
    def policy(self) -> str:
        return self.guard.policy

    @property
    def on_risk(self) -> str:
        return self.guard.on_risk

    # -- shared steps ---------------------------------------------------------------------

    def _question(self, input: Any) -> str:
        if isinstance(input, str):
            q = input
        elif isinstance(input, dict):
            if self.question_key not in input:
                raise BadInputError(f"the input dict has no {self.question_key!r} key (question_key)")
            q = str(input[self.question_key])
        elif isinstance(input, BaseMessage):
            q = _text_of(input)
        else:
            raise BadInputError(f"QucoGuardRunnable takes a string or a dict, not {type(input).__name__}")
        if not q.strip():
            raise BadInputError("the question is empty")
        return q.strip()

    def _stage1(self, input: Any) -> tuple[GuardSession, Any]:
        st = self.guard.start(self._question(input))
        return st, self._with_evidence(input, st.evidence)

    def _with_evidence(self, input: Any, docs: Sequence[Document]) -> Any:
        block = evidence_block(docs, self.guard.max_evidence_chars)
        if isinstance(input, dict):
            return {**input, self.context_key: block}
        if not block:
            return input
        text = _text_of(input)
        return f"Evidence:\n{block}\n\nQuestion: {text}" if isinstance(input, str) else f"Evidence:\n{block}\n\n{text}"

    def _confidence(self, st: GuardSession, output: Any, text: str, entries: list[Any] | None = None) -> tuple[Confidence | None, str]:
        """The answer's token confidences and their source: the chain's logprobs, the proxy scorer, or none."""
        conf = confidence_from_logprobs(entries) if entries else message_confidence(output)
        if conf is not None and len(conf):
            return conf, "model"
        with st.clock.time("scoring"):
            conf = self.guard.proxy_confidence(st.question, text)
        return (conf, "proxy") if conf is not None and len(conf) else (None, "none")

    def _rewrite_sentences(self, st: GuardSession, records: list[SentenceRecord], config: RunnableConfig | None) -> list[SentenceRecord]:
        out: list[SentenceRecord] = []
        prefix = ""
        for r in records:
            if r.retrieval and r.retrieval.documents and self.rewriter is not None:
                ev = [d.text[: self.guard.max_evidence_chars] for d in r.retrieval.documents]
                with st.clock.time("generation"):
                    new = _first_sentence(_text_of(self.rewriter.invoke(rewrite_prompt(st.question, ev, r.text, prefix), config)))
                if new:
                    r = SentenceRecord(
                        r.index, new, r.draft, r.entities, r.pairs, r.confidence, r.risk, r.retrieval, True, "stop",
                        r.timings, r.claims, r.coverage,
                    )
            out.append(r)
            prefix = f"{prefix} {r.text}".strip()
        return out

    def _message(
        self,
        st: GuardSession,
        output: Any,
        text: str,
        records: list[SentenceRecord],
        conf: tuple[Confidence | None, str],
        rerun: bool,
        draft: str | None = None,
    ) -> AIMessage:
        report = st.report(records, confidence=conf[0], source=conf[1], rewritten=rerun, draft=draft)
        meta = dict(output.response_metadata) if isinstance(output, BaseMessage) else {}
        meta["quco"] = report
        return AIMessage(content=text, response_metadata=meta)

    def _needs_rerun(self, st: GuardSession, records: list[SentenceRecord]) -> bool:
        return self.on_risk == "rewrite" and self.rewriter is None and st.needs_rewrite(records)

    def _check(self, st: GuardSession, output: Any, text: str) -> tuple[list[SentenceRecord], tuple[Confidence | None, str]]:
        conf = self._confidence(st, output, text)
        return st.check(text, conf[0]), conf

    # -- Runnable API ---------------------------------------------------------------------

    def _invoke(self, input: Any, config: RunnableConfig | None = None) -> AIMessage:
        st, chain_input = self._stage1(input)
        with st.clock.time("generation"):
            output = self.chain.invoke(chain_input, config)
        text = _text_of(output)
        records, conf = self._check(st, output, text)
        if self._needs_rerun(st, records):
            with st.clock.time("generation"):
                output = self.chain.invoke(self._with_evidence(input, st.rewrite_documents(records)), config)
            return self._message(st, output, _text_of(output), records, conf, True, draft=text)
        if self.on_risk == "rewrite":
            records = self._rewrite_sentences(st, records, config)
            text = " ".join(r.text for r in records) if any(r.rewritten for r in records) else text
        return self._message(st, output, text, records, conf, False)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        """Run stage 1, the chain, then stage 2; return the answer with the report."""
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def _ainvoke(self, input: Any, config: RunnableConfig | None = None) -> AIMessage:
        st, chain_input = self._stage1(input)
        with st.clock.time("generation"):
            output = await self.chain.ainvoke(chain_input, config)
        text = _text_of(output)
        records, conf = self._check(st, output, text)
        if self._needs_rerun(st, records):
            with st.clock.time("generation"):
                output = await self.chain.ainvoke(self._with_evidence(input, st.rewrite_documents(records)), config)
            return self._message(st, output, _text_of(output), records, conf, True, draft=text)
        if self.on_risk == "rewrite":
            records = self._rewrite_sentences(st, records, config)
            text = " ".join(r.text for r in records) if any(r.rewritten for r in records) else text
        return self._message(st, output, text, records, conf, False)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        """Async :meth:`invoke` (the chain runs with ``ainvoke``)."""
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def _final_chunk(self, st: GuardSession, last: Any, parts: list[str], entries: list[Any]) -> AIMessageChunk:
        text = "".join(parts)
        conf = self._confidence(st, last, text, entries)
        msg = self._message(st, last, text, st.check(text, conf[0]), conf, False)
        return AIMessageChunk(content="", response_metadata=msg.response_metadata)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[AIMessage]:
        """Stream the chain's output as ``AIMessageChunk`` s, then a chunk with the report."""
        if self.on_risk == "rewrite":
            yield AIMessageChunk(**_chunk_fields(self.invoke(input, config)))
            return
        st, chain_input = self._stage1(input)
        parts: list[str] = []
        entries: list[Any] = []
        last: Any = None
        for chunk in self.chain.stream(chain_input, config, **kwargs):
            piece = _text_of(chunk)
            parts.append(piece)
            entries.extend(_logprob_entries(chunk))
            last = chunk
            if piece:
                yield AIMessageChunk(content=piece)
        yield self._final_chunk(st, last, parts, entries)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[AIMessage]:
        """Async :meth:`stream`."""
        if self.on_risk == "rewrite":
            yield AIMessageChunk(**_chunk_fields(await self.ainvoke(input, config)))
            return
        st, chain_input = self._stage1(input)
        parts: list[str] = []
        entries: list[Any] = []
        last: Any = None
        async for chunk in self.chain.astream(chain_input, config, **kwargs):
            piece = _text_of(chunk)
            parts.append(piece)
            entries.extend(_logprob_entries(chunk))
            last = chunk
            if piece:
                yield AIMessageChunk(content=piece)
        yield self._final_chunk(st, last, parts, entries)


def _chunk_fields(msg: AIMessage) -> dict[str, Any]:
    return {"content": msg.content, "response_metadata": msg.response_metadata}


def _first_sentence(text: str) -> str:
    text = text.strip().split("\n", 1)[0]
    spans = sentence_spans(text)
    return text[spans[0][0] : spans[0][1]].strip() if spans else ""
