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
- **stage 2, on the output**: each sentence's claims are checked: a
  (head, relation, tail) triplet whose head and tail never co-occur, or a
  (head, relation) tuple whose head is rare (``claims="pairs"``: every
  head/tail entity pair's co-occurrence). The evidence query is ``head ⊕
  relation`` per flagged claim, never the tail. With ``on_risk="flag"`` risky sentences are reported;
  with ``on_risk="rewrite"`` evidence is retrieved for them and the answer is
  rewritten: sentence by sentence with ``rewriter`` (a Runnable taking a
  prompt string) when one is given, else by running the wrapped chain again
  with the evidence added (as in stage 1).

**Output**: always an :class:`~langchain_core.messages.AIMessage` whose ``content``
is the (possibly rewritten) answer and whose ``response_metadata["quco"]`` is
the risk report (a JSON-ready dict: ``flagged``, ``retrievals``, ``stage1``,
``sentences`` with ``risk``, ``reasons``, ``retrieved``, ``documents``...). When
the chain itself returns a message, its other response metadata is kept.

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
from dataclasses import dataclass, field
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
from quco.errors import BadInputError, QucoError  # noqa: E402
from quco.guard.checks import Checker, OnBackendError, Verdict, retrieve_union  # noqa: E402
from quco.guard.trace import BackendError, Clock, Retrieval, SentenceRecord, Stage1Record  # noqa: E402
from quco.nlp.sentences import sentence_spans  # noqa: E402
from quco.prompts import rewrite_prompt  # noqa: E402
from quco.protocols import ClaimExtractor, Extractor, Retriever  # noqa: E402
from quco.types import Document, Entity  # noqa: E402

__all__ = ["QucoGuardRunnable", "QucoRetriever", "to_langchain_document"]


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


def _evidence_block(docs: Sequence[Document], limit: int) -> str:
    return "\n".join(f"[{i}] {' '.join(d.text[:limit].split())}" for i, d in enumerate(docs, 1))


@dataclass
class _State:
    """One guarded call: the question, stage 1 and what was retrieved."""

    question: str
    q_ents: list[Entity]
    stage1: Verdict
    retrieval: Retrieval | None
    clock: Clock
    checker: Checker
    errors: list[BackendError] = field(default_factory=list)
    retrievals: int = 0


class QucoGuardRunnable(Runnable[Any, AIMessage]):
    """Guard a LangChain chain or LLM with QuCo's stage 1 (input) and stage 2 (output).

    Args:
        chain: the Runnable to guard (e.g. ``prompt | llm``).
        extractor: entity extractor (``quco.nlp.entities.EntityExtractor``).
        stats: corpus statistics (``quco.corpus.open_stats(...)``).
        retriever: quco retriever for evidence.
        policy: ``"quco"`` (corpus rules) or ``"combined"`` (fitted risk model,
            without token confidences here).
        on_risk: ``"flag"`` (report risky sentences) or ``"rewrite"``.
        rewriter: Runnable taking a prompt string, used to rewrite risky
            sentences one by one; without it the chain is run again with the evidence.
        risk_model: fitted risk model for ``combined``.
        k: passages per retrieval.
        entity_threshold: stage-1 threshold on the mean question-entity count.
        window: co-occurrence window in tokens.
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
        extractor: Extractor,
        stats: CorpusStats,
        retriever: Retriever,
        policy: str = "quco",
        on_risk: str = "flag",
        rewriter: Runnable[Any, Any] | None = None,
        risk_model: Any = None,
        k: int = 3,
        entity_threshold: float = 1000,
        window: int | None = 1000,
        risk_threshold: float = 0.5,
        on_backend_error: OnBackendError = "open",
        question_key: str = "question",
        context_key: str = "context",
        max_evidence_chars: int = 1000,
        claims: str = "triplets",
        claim_extractor: ClaimExtractor | None = None,
    ) -> None:
        if policy not in ("quco", "combined"):
            raise BadInputError(f"QucoGuardRunnable policy must be 'quco' or 'combined', not {policy!r}")
        if on_risk not in ("flag", "rewrite"):
            raise BadInputError(f"on_risk must be 'flag' or 'rewrite', not {on_risk!r}")
        if retriever is None:
            raise QucoError("QucoGuardRunnable needs a retriever")
        if policy == "combined" and risk_model is None:
            from quco.risk.combined import load_default_scorer

            risk_model = load_default_scorer()
        self.chain = chain
        self.retriever = retriever
        self.on_risk = on_risk
        self.rewriter = rewriter
        self.k = k
        self.question_key = question_key
        self.context_key = context_key
        self.max_evidence_chars = max_evidence_chars
        self.policy = policy
        self._checker_kwargs: dict[str, Any] = dict(
            risk_model=risk_model,
            entity_threshold=entity_threshold,
            window=window,
            risk_threshold=risk_threshold,
            on_backend_error=on_backend_error,
            claims=claims,
        )
        self.extractor = extractor
        self.stats = stats
        probe = Checker(policy, extractor, stats, claim_extractor=claim_extractor, **self._checker_kwargs)  # validate once
        self._checker_kwargs["claim_extractor"] = probe.claim_extractor

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

    def _retrieve(self, st: _State, query: str, where: str, queries: Sequence[str] = ()) -> Retrieval:
        st.retrievals += 1
        qs = tuple(queries) or (query,)
        with st.clock.time("retrieval"):
            try:
                return Retrieval(query, tuple(retrieve_union(self.retriever, qs, self.k)), None, qs)
            except (QucoError, OSError) as exc:
                if st.checker.on_backend_error == "raise":
                    raise
                msg = f"{type(exc).__name__}: {exc}"
                st.errors.append(BackendError(where, "retriever", msg, "none"))
                return Retrieval(query, (), msg, qs)

    def _note(self, st: _State, v: Verdict, where: str) -> None:
        st.errors.extend(BackendError(where, "corpus", e, v.action) for e in v.errors)

    def _stage1(self, input: Any) -> tuple[_State, Any]:
        q = self._question(input)
        clock = Clock()
        checker = Checker(self.policy, self.extractor, self.stats, clock=clock, **self._checker_kwargs)
        q_ents = checker.question_entities(q)
        v = checker.stage1(q, q_ents)
        st = _State(q, q_ents, v, None, clock, checker)
        self._note(st, v, "stage1")
        if v.fired and v.query is not None:
            st.retrieval = self._retrieve(st, v.query, "stage1")
        docs = st.retrieval.documents if st.retrieval else ()
        return st, self._with_evidence(input, docs)

    def _with_evidence(self, input: Any, docs: Sequence[Document]) -> Any:
        block = _evidence_block(docs, self.max_evidence_chars)
        if isinstance(input, dict):
            return {**input, self.context_key: block}
        if not block:
            return input
        text = _text_of(input)
        return f"Evidence:\n{block}\n\nQuestion: {text}" if isinstance(input, str) else f"Evidence:\n{block}\n\n{text}"

    def _stage2(self, st: _State, text: str) -> list[SentenceRecord]:
        records = []
        for i, (a, b) in enumerate(sentence_spans(text)):
            sent = text[a:b].strip()
            before = st.clock.snapshot()
            v = st.checker.sentence(st.question, st.q_ents, st.stage1.entities, sent, None)
            self._note(st, v, f"sentence {i}")
            retrieval = None
            if v.fired and v.query is not None and self.on_risk == "rewrite":
                retrieval = self._retrieve(st, v.query, f"sentence {i}", v.queries)
            records.append(
                SentenceRecord(
                    i, sent, sent, v.entities, v.pairs, None, v.risk, retrieval, False, "stop", st.clock.since(before), v.claims
                )
            )
        return records

    def _rewrite_plan(self, st: _State, records: list[SentenceRecord]) -> list[Document]:
        docs: dict[str, Document] = {}
        for r in records:
            if r.retrieval:
                for d in r.retrieval.documents:
                    docs.setdefault(d.id, d)
        if st.retrieval:
            for d in st.retrieval.documents:
                docs.setdefault(d.id, d)
        return list(docs.values())

    def _rewrite_sentences(self, st: _State, records: list[SentenceRecord], config: RunnableConfig | None) -> list[SentenceRecord]:
        out: list[SentenceRecord] = []
        prefix = ""
        for r in records:
            if r.retrieval and r.retrieval.documents and self.rewriter is not None:
                ev = [d.text[: self.max_evidence_chars] for d in r.retrieval.documents]
                with st.clock.time("generation"):
                    new = _first_sentence(_text_of(self.rewriter.invoke(rewrite_prompt(st.question, ev, r.text, prefix), config)))
                if new:
                    r = SentenceRecord(
                        r.index, new, r.draft, r.entities, r.pairs, None, r.risk, r.retrieval, True, "stop", r.timings, r.claims
                    )
            out.append(r)
            prefix = f"{prefix} {r.text}".strip()
        return out

    def _message(self, st: _State, output: Any, text: str, records: list[SentenceRecord], rewritten_answer: bool) -> AIMessage:
        report = {
            "policy": self.policy,
            "on_risk": self.on_risk,
            "question": st.question,
            "flagged": bool(st.stage1.risk and st.stage1.risk.flagged) or any(r.risk and r.risk.flagged for r in records),
            "retrievals": st.retrievals,
            "rewritten": rewritten_answer or any(r.rewritten for r in records),
            "stage1": Stage1Record(st.stage1.entities, st.stage1.risk, st.retrieval).to_dict(),
            "sentences": [r.to_dict() for r in records],
            "backend_errors": [e.to_dict() for e in st.errors],
            "timings": st.clock.snapshot().to_dict(),
        }
        meta = dict(output.response_metadata) if isinstance(output, BaseMessage) else {}
        meta["quco"] = report
        return AIMessage(content=text, response_metadata=meta)

    def _needs_rerun(self, records: list[SentenceRecord]) -> bool:
        return self.on_risk == "rewrite" and self.rewriter is None and any(r.retrieval and r.retrieval.documents for r in records)

    # -- Runnable API ---------------------------------------------------------------------

    def _invoke(self, input: Any, config: RunnableConfig | None = None) -> AIMessage:
        st, chain_input = self._stage1(input)
        with st.clock.time("generation"):
            output = self.chain.invoke(chain_input, config)
        text = _text_of(output)
        records = self._stage2(st, text)
        rerun = False
        if self._needs_rerun(records):
            with st.clock.time("generation"):
                output = self.chain.invoke(self._with_evidence(input, self._rewrite_plan(st, records)), config)
            text, rerun = _text_of(output), True
        elif self.on_risk == "rewrite":
            records = self._rewrite_sentences(st, records, config)
            text = " ".join(r.text for r in records) if any(r.rewritten for r in records) else text
        return self._message(st, output, text, records, rerun)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        """Run stage 1, the chain, then stage 2; return the answer with the report."""
        return self._call_with_config(self._invoke, input, config, **kwargs)

    async def _ainvoke(self, input: Any, config: RunnableConfig | None = None) -> AIMessage:
        st, chain_input = self._stage1(input)
        with st.clock.time("generation"):
            output = await self.chain.ainvoke(chain_input, config)
        text = _text_of(output)
        records = self._stage2(st, text)
        rerun = False
        if self._needs_rerun(records):
            with st.clock.time("generation"):
                output = await self.chain.ainvoke(self._with_evidence(input, self._rewrite_plan(st, records)), config)
            text, rerun = _text_of(output), True
        elif self.on_risk == "rewrite":
            records = self._rewrite_sentences(st, records, config)
            text = " ".join(r.text for r in records) if any(r.rewritten for r in records) else text
        return self._message(st, output, text, records, rerun)

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AIMessage:
        """Async :meth:`invoke` (the chain runs with ``ainvoke``)."""
        return await self._acall_with_config(self._ainvoke, input, config, **kwargs)

    def stream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Iterator[AIMessage]:
        """Stream the chain's output as ``AIMessageChunk`` s, then a chunk with the report."""
        if self.on_risk == "rewrite":
            yield AIMessageChunk(**_chunk_fields(self.invoke(input, config)))
            return
        st, chain_input = self._stage1(input)
        parts: list[str] = []
        last: Any = None
        for chunk in self.chain.stream(chain_input, config, **kwargs):
            piece = _text_of(chunk)
            parts.append(piece)
            last = chunk
            if piece:
                yield AIMessageChunk(content=piece)
        text = "".join(parts)
        msg = self._message(st, last, text, self._stage2(st, text), False)
        yield AIMessageChunk(content="", response_metadata=msg.response_metadata)

    async def astream(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> AsyncIterator[AIMessage]:
        """Async :meth:`stream`."""
        if self.on_risk == "rewrite":
            yield AIMessageChunk(**_chunk_fields(await self.ainvoke(input, config)))
            return
        st, chain_input = self._stage1(input)
        parts: list[str] = []
        last: Any = None
        async for chunk in self.chain.astream(chain_input, config, **kwargs):
            piece = _text_of(chunk)
            parts.append(piece)
            last = chunk
            if piece:
                yield AIMessageChunk(content=piece)
        text = "".join(parts)
        msg = self._message(st, last, text, self._stage2(st, text), False)
        yield AIMessageChunk(content="", response_metadata=msg.response_metadata)


def _chunk_fields(msg: AIMessage) -> dict[str, Any]:
    return {"content": msg.content, "response_metadata": msg.response_metadata}


def _first_sentence(text: str) -> str:
    text = text.strip().split("\n", 1)[0]
    spans = sentence_spans(text)
    return text[spans[0][0] : spans[0][1]].strip() if spans else ""
