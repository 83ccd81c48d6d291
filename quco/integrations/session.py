"""One guarded call around somebody else's model: stage 1 on the question, stage 2 on the answer, the report.

The LangChain runnable, the LlamaIndex query engine and the ``quco proxy``
server all guard a model that quco does not drive token by token: the question
goes in, a whole answer comes out (with its token logprobs when the model
returns them). :class:`AnswerGuard` holds the components and options;
:meth:`AnswerGuard.start` runs stage 1 and returns a :class:`GuardSession`,
which checks the answer sentence by sentence (:meth:`GuardSession.check`) and
writes the report (:meth:`GuardSession.report`). The checks themselves are
:class:`quco.guard.checks.Checker`'s; only its public methods and
:class:`~quco.guard.checks.Verdict` fields are used here.

Token confidences come from the model's own logprobs (``source="model"``),
from a local :class:`~quco.lm.confidence.ConfidenceScorer` scoring the answer
as a **proxy** for a model that returned none (``source="proxy"``: a different
model's view of the same text, said so in the report), or are absent
(``source="none"``: ``flare`` cannot judge, ``combined`` imputes them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from quco.corpus.base import CorpusStats
from quco.errors import BadInputError, QucoError
from quco.guard.checks import Checker, OnBackendError, Verdict, retrieve_union
from quco.guard.trace import BackendError, Clock, Retrieval, SentenceRecord, Stage1Record
from quco.integrations.logprobs import split_confidence
from quco.nlp.sentences import sentence_spans
from quco.protocols import ClaimExtractor, Extractor, Retriever, Scorer
from quco.risk.coverage import DEFAULT_ACTION, DEFAULT_FLOOR
from quco.risk.thresholds import DEFAULT_COOC, DEFAULT_ENTITY, ThresholdSpec
from quco.types import Confidence, Document, Entity

__all__ = ["WRAPPER_POLICIES", "AnswerGuard", "GuardSession", "evidence_block"]

#: policies a wrapper offers (``single`` and ``none`` need no guard around a chain)
WRAPPER_POLICIES: tuple[str, ...] = ("quco", "combined", "flare")
#: what to do with a risky answer
ON_RISK: tuple[str, ...] = ("flag", "rewrite")
#: where token confidences came from
SOURCES: tuple[str, ...] = ("model", "proxy", "none")


def evidence_block(docs: Sequence[Document], limit: int) -> str:
    """Numbered passages, each cut to ``limit`` characters, one per line."""
    return "\n".join(f"[{i}] {' '.join(d.text[:limit].split())}" for i, d in enumerate(docs, 1))


def check_on_risk(on_risk: str) -> str:
    """``on_risk`` validated (``flag`` or ``rewrite``)."""
    if on_risk not in ON_RISK:
        raise BadInputError(f"on_risk must be 'flag' or 'rewrite', not {on_risk!r}")
    return on_risk


class AnswerGuard:
    """The components and options of a guard around an external model.

    Args:
        extractor: entity extractor (needed by ``quco`` and ``combined``).
        stats: corpus statistics (needed by ``quco`` and ``combined``).
        retriever: quco retriever for evidence (stage 1 and rewrites).
        policy: ``"quco"`` (corpus rules), ``"combined"`` (the fitted risk
            model over both sides) or ``"flare"`` (token confidences only).
        on_risk: ``"flag"`` or ``"rewrite"`` (the default of each call).
        risk_model: fitted risk model for ``combined`` (default: the shipped one).
        scorer: a local :class:`~quco.lm.confidence.ConfidenceScorer` that scores
            answers which came without logprobs (reported as a proxy); None: none.
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
        max_evidence_chars: each passage is cut to this length in prompts.
        claims: stage 2 reads ``"triplets"`` (the paper's claims: a triplet whose
            head and tail never co-occur, a tuple whose head is rare; the
            evidence query is head ⊕ relation, never the tail) or ``"pairs"``
            (every head/tail entity pair).
        claim_extractor: claim extractor for triplet mode (default: the entity
            extractor's own, :class:`~quco.nlp.claims.ClaimParser`).
    """

    def __init__(
        self,
        *,
        extractor: Extractor | None,
        stats: CorpusStats | None,
        retriever: Retriever | None,
        policy: str = "quco",
        on_risk: str = "flag",
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
        max_evidence_chars: int = 1000,
        claims: str = "triplets",
        claim_extractor: ClaimExtractor | None = None,
    ) -> None:
        if policy not in WRAPPER_POLICIES:
            raise BadInputError(f"policy must be one of {', '.join(WRAPPER_POLICIES)}, not {policy!r}")
        check_on_risk(on_risk)
        if retriever is None:
            raise QucoError("the guard needs a retriever (evidence for risky questions and rewrites)")
        if k < 1:
            raise BadInputError(f"k must be at least 1, not {k}")
        if policy == "combined" and risk_model is None:
            from quco.risk.combined import load_default_scorer

            risk_model = load_default_scorer()
        self.extractor = extractor
        self.stats = stats
        self.retriever: Retriever = retriever
        self.policy = policy
        self.on_risk = on_risk
        self.scorer = scorer
        self.k = k
        self.max_evidence_chars = max_evidence_chars
        self._checker_kwargs: dict[str, Any] = dict(
            risk_model=risk_model,
            entity_threshold=entity_threshold,
            cooc_threshold=cooc_threshold,
            coverage_floor=coverage_floor,
            on_out_of_coverage=on_out_of_coverage,
            window=window,
            theta=theta,
            risk_threshold=risk_threshold,
            on_backend_error=on_backend_error,
            claims=claims,
        )
        probe = Checker(policy, extractor, stats, claim_extractor=claim_extractor, **self._checker_kwargs)  # validate once
        self._checker_kwargs["claim_extractor"] = probe.claim_extractor  # built once, shared by every call
        self._checker_kwargs["thresholds"] = probe.thresholds  # rates scaled to the index once
        #: the effective thresholds
        self.thresholds = probe.thresholds

    def checker(self, clock: Clock | None = None) -> Checker:
        """A fresh :class:`Checker` with this guard's components and options."""
        return Checker(self.policy, self.extractor, self.stats, clock=clock, **self._checker_kwargs)

    def start(self, question: str) -> GuardSession:
        """Run stage 1 on ``question`` (retrieving evidence when it is risky).

        Raises:
            BadInputError: the question is empty.
        """
        q = question.strip() if isinstance(question, str) else ""
        if not q:
            raise BadInputError("the question is empty")
        clock = Clock()
        checker = self.checker(clock)
        q_ents = checker.question_entities(q)
        v = checker.stage1(q, q_ents)
        st = GuardSession(self, q, q_ents, v, None, clock, checker)
        st.note(v, "stage1")
        if v.fired and v.query is not None:
            st.retrieval = st.retrieve(v.query, "stage1")
        return st

    def proxy_confidence(self, prompt: str, answer: str) -> Confidence | None:
        """The local scorer's confidences for ``answer`` after ``prompt`` (None without a scorer)."""
        if self.scorer is None or not answer.strip():
            return None
        return self.scorer.score(prompt, answer)


@dataclass
class GuardSession:
    """One guarded call: the question, its stage-1 verdict, what was retrieved and the errors met."""

    guard: AnswerGuard
    question: str
    q_ents: list[Entity]
    stage1: Verdict
    retrieval: Retrieval | None
    clock: Clock
    checker: Checker
    errors: list[BackendError] = field(default_factory=list)
    retrievals: int = 0

    @property
    def evidence(self) -> tuple[Document, ...]:
        """Documents retrieved by stage 1 (empty when it did not fire)."""
        return self.retrieval.documents if self.retrieval else ()

    def note(self, v: Verdict, where: str) -> None:
        self.errors.extend(BackendError(where, "corpus", e, v.action) for e in v.errors)

    def retrieve(self, query: str, where: str, queries: Sequence[str] = ()) -> Retrieval:
        """The union of the top-``k`` unique documents of each query (``queries``, else ``query``), deduplicated;
        a retriever failure is reported, not raised (unless ``raise``)."""
        self.retrievals += 1
        qs = tuple(queries) or (query,)
        with self.clock.time("retrieval"):
            try:
                return Retrieval(query, tuple(retrieve_union(self.guard.retriever, qs, self.guard.k)), None, qs)
            except (QucoError, OSError) as exc:
                if self.checker.on_backend_error == "raise":
                    raise
                msg = f"{type(exc).__name__}: {exc}"
                self.errors.append(BackendError(where, "retriever", msg, "none"))
                return Retrieval(query, (), msg, qs)

    def check(self, text: str, confidence: Confidence | None = None, *, on_risk: str | None = None) -> list[SentenceRecord]:
        """Stage 2: check each sentence of ``text``; with ``rewrite``, retrieve evidence for the risky ones.

        Args:
            text: the answer.
            confidence: token confidences of the whole answer (split along its
                sentences), or None.
            on_risk: overrides the guard's ``on_risk`` for this call.
        """
        rewrite = check_on_risk(on_risk or self.guard.on_risk) == "rewrite"
        spans = sentence_spans(text)
        confs: list[Confidence | None] = (
            list(split_confidence(confidence, text, spans)) if confidence is not None and len(confidence) else [None] * len(spans)
        )
        records = []
        for i, ((a, b), conf) in enumerate(zip(spans, confs)):
            sent = text[a:b].strip()
            before = self.clock.snapshot()
            v = self.checker.sentence(self.question, self.q_ents, self.stage1.entities, sent, conf)
            self.note(v, f"sentence {i}")
            retrieval = (
                self.retrieve(v.query, f"sentence {i}", v.queries) if rewrite and v.fired and v.query is not None else None
            )
            records.append(
                SentenceRecord(
                    i, sent, sent, v.entities, v.pairs, conf, v.risk, retrieval, False, "stop", self.clock.since(before),
                    v.claims, v.coverage,
                )
            )
        return records

    def rewrite_documents(self, records: Sequence[SentenceRecord]) -> list[Document]:
        """Unique documents retrieved for risky sentences, then stage 1's."""
        docs: dict[str, Document] = {}
        for r in records:
            if r.retrieval:
                for d in r.retrieval.documents:
                    docs.setdefault(d.id, d)
        for d in self.evidence:
            docs.setdefault(d.id, d)
        return list(docs.values())

    def needs_rewrite(self, records: Sequence[SentenceRecord]) -> bool:
        """True when some sentence retrieved evidence (so a rewrite has something to use)."""
        return any(r.retrieval and r.retrieval.documents for r in records)

    def flagged(self, records: Sequence[SentenceRecord]) -> bool:
        return bool(self.stage1.risk and self.stage1.risk.flagged) or any(r.risk and r.risk.flagged for r in records)

    def reasons(self, records: Sequence[SentenceRecord]) -> list[dict[str, Any]]:
        """The reasons behind every flag, each with where it was raised (``stage1`` or ``sentence N``)."""
        out = []
        if self.stage1.risk and self.stage1.risk.flagged:
            out += [{"where": "stage1", **r.to_dict()} for r in self.stage1.risk.reasons]
        for rec in records:
            if rec.risk and rec.risk.flagged:
                out += [{"where": f"sentence {rec.index}", **r.to_dict()} for r in rec.risk.reasons]
        return out

    def coverage(self) -> dict[str, Any] | None:
        """Stage 1's coverage: the share of the question's named entities the corpus knows
        (:meth:`quco.risk.coverage.Coverage.to_dict`); None for a policy without a data side."""
        own = self.stage1.coverage
        return own.to_dict() if own is not None else None

    def report(
        self,
        records: Sequence[SentenceRecord],
        *,
        confidence: Confidence | None,
        source: str,
        on_risk: str | None = None,
        rewritten: bool = False,
        draft: str | None = None,
    ) -> dict[str, Any]:
        """The risk report as JSON-ready data.

        Args:
            records: stage 2's sentence records (of the draft when it was rewritten).
            confidence: the answer's token confidences (aggregates reported), or None.
            source: where they came from: ``model``, ``proxy`` or ``none``.
            on_risk: the mode this call ran with (default: the guard's).
            rewritten: the answer was regenerated (or sentences rewritten) with evidence.
            draft: the first answer when it was rewritten.
        """
        if source not in SOURCES:
            raise BadInputError(f"confidence source must be one of {', '.join(SOURCES)}, not {source!r}")
        conf: dict[str, Any] = {"source": source if confidence is not None and len(confidence) else "none"}
        if confidence is not None and len(confidence):
            conf.update({k: (None if math.isnan(v) else round(float(v), 6)) for k, v in confidence.aggregates().items()})
        if source == "proxy" and self.guard.scorer is not None:
            conf["proxy_model"] = str(getattr(self.guard.scorer, "name", type(self.guard.scorer).__name__))
        out: dict[str, Any] = {
            "policy": self.guard.policy,
            "on_risk": on_risk or self.guard.on_risk,
            "question": self.question,
            "flagged": self.flagged(records),
            "reasons": self.reasons(records),
            "retrievals": self.retrievals,
            "rewritten": rewritten or any(r.rewritten for r in records),
            "coverage": self.coverage(),
            "confidence": conf,
            "stage1": Stage1Record(self.stage1.entities, self.stage1.risk, self.retrieval, self.stage1.coverage).to_dict(),
            "sentences": [r.to_dict() for r in records],
            "backend_errors": [e.to_dict() for e in self.errors],
            "timings": self.clock.snapshot().to_dict(),
        }
        if draft is not None:
            out["draft"] = draft
        return out
