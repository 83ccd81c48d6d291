"""The guard's trace: what it saw, what it decided and why, as frozen records.

Every record has a ``to_dict`` that gives plain JSON types; :meth:`GuardResult.to_dict`
is the object ``quco ask --json`` prints.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from quco.risk.coverage import Coverage
from quco.risk.features import ClaimCount, EntityCount, PairCount
from quco.risk.thresholds import Thresholds
from quco.types import Confidence, Document, Risk

#: timing categories; ``overhead`` is the guard's own work (extraction + corpus + scoring)
CATEGORIES: tuple[str, ...] = ("generation", "extraction", "corpus", "scoring", "retrieval")


class Clock:
    """Accumulates wall time per category (see :data:`CATEGORIES`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(CATEGORIES, 0.0)

    @contextmanager
    def time(self, category: str) -> Iterator[None]:
        t0 = perf_counter()
        try:
            yield
        finally:
            self.seconds[category] = self.seconds.get(category, 0.0) + perf_counter() - t0

    def snapshot(self) -> Timings:
        return Timings(**{k: self.seconds.get(k, 0.0) for k in CATEGORIES})

    def since(self, before: Timings) -> Timings:
        now = self.snapshot()
        return Timings(**{k: getattr(now, k) - getattr(before, k) for k in CATEGORIES})


@dataclass(frozen=True)
class Timings:
    """Seconds spent per category."""

    generation: float = 0.0
    extraction: float = 0.0
    corpus: float = 0.0
    scoring: float = 0.0
    retrieval: float = 0.0

    @property
    def overhead(self) -> float:
        """The guard's own checks: extraction + corpus queries + risk scoring."""
        return self.extraction + self.corpus + self.scoring

    def to_dict(self) -> dict[str, float]:
        d = {k: round(float(getattr(self, k)), 6) for k in CATEGORIES}
        d["overhead"] = round(float(self.overhead), 6)
        return d


@dataclass(frozen=True)
class Retrieval:
    """One retrieval: the query (or queries) and the (deduplicated) documents returned.

    Attributes:
        query: the query; with several, joined with " | " for display.
        documents: the union of each query's top k, deduplicated.
        error: the retriever's failure, if any.
        queries: each query sent (stage 2 in triplet mode: one per flagged claim).
    """

    query: str
    documents: tuple[Document, ...] = ()
    error: str | None = None
    queries: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.queries:
            object.__setattr__(self, "queries", (self.query,))

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "queries": list(self.queries),
            "documents": [d.to_dict() for d in self.documents],
            "error": self.error,
        }


@dataclass(frozen=True)
class BackendError:
    """A backend failure during an answer and what the guard did about it.

    Attributes:
        where: ``"stage1"`` or ``"sentence N"``.
        component: ``"corpus"`` or ``"retriever"``.
        error: the error message.
        action: ``"open"`` (check skipped, no retrieval forced) or ``"closed"``
            (treated as risky, retrieval fired), or ``"none"`` for a failed
            retrieval (the answer went on without evidence).
    """

    where: str
    component: str
    error: str
    action: str

    def to_dict(self) -> dict[str, Any]:
        return {"where": self.where, "component": self.component, "error": self.error, "action": self.action}


def _entity_dict(ec: EntityCount) -> dict[str, Any]:
    return {"text": ec.entity.text, "label": ec.entity.label, "count": int(ec.count.value), "approx": ec.count.approx}


def _pair_dict(pc: PairCount) -> dict[str, Any]:
    return {
        "head": pc.pair.head.text,
        "tail": pc.pair.tail.text,
        "count": int(pc.count.value),
        "approx": pc.count.approx,
    }


def claim_dict(cc: ClaimCount, window: int | None = None) -> dict[str, Any]:
    """A claim with its count: ``{head, relation, tail, ..., kind, count, approx}``.

    ``kind`` is ``"triplet"`` (``count``: head/tail co-occurrence) or
    ``"tuple"`` (``count``: the head's corpus frequency).
    """
    return {
        **cc.claim.to_dict(),
        "kind": "triplet" if cc.claim.is_triplet else "tuple",
        "count": int(cc.count.value),
        "approx": bool(cc.count.approx),
    }


def _confidence_dict(c: Confidence | None) -> dict[str, Any] | None:
    if c is None or len(c) == 0:
        return None
    agg: dict[str, Any] = {k: (None if math.isnan(v) else round(float(v), 6)) for k, v in c.aggregates().items()}
    agg["tokens"] = [{"token": t.token, "prob": round(t.prob, 6)} for t in c.tokens]
    return agg


def _risk_fields(risk: Risk | None) -> dict[str, Any]:
    if risk is None:
        return {"risk": None, "flagged": False, "reasons": [], "rule": None}
    return {
        "risk": round(float(risk.probability), 6),
        "flagged": risk.flagged,
        "reasons": [r.to_dict() for r in risk.reasons],
        "rule": risk.policy,
    }


@dataclass(frozen=True)
class Stage1Record:
    """The check on the question before generation (policies ``quco``, ``combined``, ``single``).

    ``coverage``: the share of the question's named entities the corpus
    knows (``None`` for policies without a data side).
    """

    entities: tuple[EntityCount, ...] = ()
    risk: Risk | None = None
    retrieval: Retrieval | None = None
    coverage: Coverage | None = None

    @property
    def retrieved(self) -> bool:
        return self.retrieval is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "entities": [_entity_dict(e) for e in self.entities],
            **_risk_fields(self.risk),
            "retrieved": self.retrieved,
            "query": self.retrieval.query if self.retrieval else None,
            "documents": [d.to_dict() for d in self.retrieval.documents] if self.retrieval else [],
            "coverage": self.coverage.to_dict() if self.coverage else None,
        }


@dataclass(frozen=True)
class SentenceRecord:
    """One generated sentence with its evidence and the guard's decision.

    Attributes:
        index: position in the answer (0-based).
        text: the sentence kept in the answer (the rewrite when one was made).
        draft: the sentence as first generated.
        entities: entities of the draft with their corpus counts.
        pairs: head/tail pairs of the draft with their co-occurrence counts
            (entity-pair mode).
        confidence: the generator's token confidences for the draft.
        risk: the policy's verdict on the draft (``None`` when not checked).
        retrieval: the retrieval it triggered, if any.
        rewritten: True when ``text`` comes from a regeneration with evidence.
        finish_reason: the generator's finish reason for the kept text.
        timings: seconds spent on this sentence per category.
        claims: claims of the draft with their counts (triplet mode).
        coverage: the share of the question's and the draft's named entities
            the corpus knows (``None`` for policies without a data side).
    """

    index: int
    text: str
    draft: str
    entities: tuple[EntityCount, ...] = ()
    pairs: tuple[PairCount, ...] = ()
    confidence: Confidence | None = None
    risk: Risk | None = None
    retrieval: Retrieval | None = None
    rewritten: bool = False
    finish_reason: str = "stop"
    timings: Timings = field(default_factory=Timings)
    claims: tuple[ClaimCount, ...] = ()
    coverage: Coverage | None = None

    @property
    def retrieved(self) -> bool:
        return self.retrieval is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "text": self.text,
            "draft": self.draft,
            **_risk_fields(self.risk),
            "retrieved": self.retrieved,
            "rewritten": self.rewritten,
            "query": self.retrieval.query if self.retrieval else None,
            "queries": list(self.retrieval.queries) if self.retrieval else [],
            "documents": [d.to_dict() for d in self.retrieval.documents] if self.retrieval else [],
            "entities": [_entity_dict(e) for e in self.entities],
            "pairs": [_pair_dict(p) for p in self.pairs],
            "claims": [claim_dict(c) for c in self.claims],
            "confidence": _confidence_dict(self.confidence),
            "coverage": self.coverage.to_dict() if self.coverage else None,
            "finish_reason": self.finish_reason,
            "timings": self.timings.to_dict(),
        }


@dataclass(frozen=True)
class GuardResult:
    """The guarded answer and its trace.

    Attributes:
        question: the question as used (after truncation).
        answer: the final answer text.
        policy: the policy that ran.
        stage1: the check on the question.
        sentences: one record per generated sentence.
        retrievals: retrieval calls made.
        llm_calls: generator calls made (drafts and rewrites).
        tokens_generated: tokens generated over all calls.
        timings: seconds per category for the whole answer.
        seconds: wall time of the whole answer.
        stop_reason: ``"end"`` (answer finished), ``"budget"``, ``"max_sentences"``
            or ``"no_progress"``.
        backend_errors: backend failures and the fail-open/closed action taken.
        truncated: True when the question was cut to the guard's limit.
        model: the generator's name.
        prompt: the answer format (``"short"`` or ``"cot"``).
        claims: how stage 2 read sentences (``"triplets"`` or ``"pairs"``).
        thresholds: the effective data-side thresholds (rates scaled to the
            index), ``None`` for policies without a data side.
        on_out_of_coverage: what an ``out_of_coverage`` check did.
    """

    question: str
    answer: str
    policy: str
    stage1: Stage1Record
    sentences: tuple[SentenceRecord, ...]
    retrievals: int
    llm_calls: int
    tokens_generated: int
    timings: Timings
    seconds: float
    stop_reason: str
    backend_errors: tuple[BackendError, ...] = ()
    truncated: bool = False
    model: str = ""
    prompt: str = "short"
    claims: str = "triplets"
    thresholds: Thresholds | None = None
    on_out_of_coverage: str = "retrieve"

    @property
    def final_answer(self) -> str:
        """The answer the reply gives (after "the answer is", else its last sentence; :func:`quco.prompts.final_answer`)."""
        from quco.prompts import final_answer

        return final_answer(self.answer)

    @property
    def documents(self) -> list[Document]:
        """Every document used, in retrieval order."""
        out: list[Document] = []
        if self.stage1.retrieval:
            out.extend(self.stage1.retrieval.documents)
        for s in self.sentences:
            if s.retrieval:
                out.extend(s.retrieval.documents)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "final_answer": self.final_answer,
            "policy": self.policy,
            "prompt": self.prompt,
            "claims": self.claims,
            "model": self.model,
            "retrievals": self.retrievals,
            "llm_calls": self.llm_calls,
            "tokens_generated": self.tokens_generated,
            "stop_reason": self.stop_reason,
            "truncated": self.truncated,
            "thresholds": self.thresholds.to_dict() if self.thresholds else None,
            "on_out_of_coverage": self.on_out_of_coverage,
            "stage1": self.stage1.to_dict(),
            "sentences": [s.to_dict() for s in self.sentences],
            "backend_errors": [e.to_dict() for e in self.backend_errors],
            "timings": self.timings.to_dict(),
            "seconds": round(float(self.seconds), 6),
        }
