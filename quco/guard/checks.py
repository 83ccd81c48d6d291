"""The guard's checks: evidence gathering and a verdict, per policy.

:class:`Checker` is shared by :class:`~quco.guard.core.Guard` and the LangChain
runnable. It extracts entities (and, in triplet mode, the sentence's claims),
queries the corpus (batched: one ``count_many`` and one ``cooccur_many`` per
check), applies the policy's rule and builds the retrieval queries: in
triplet mode one ``head ⊕ relation`` query per flagged claim (never the
tail), in entity-pair mode the failing pair and the sentence. Corpus failures follow ``on_backend_error``:

- ``"raise"``: the error propagates;
- ``"open"``: the check is skipped (not flagged, no retrieval forced);
- ``"closed"``: the check counts as failed (flagged, retrieval fires).

Either way the failure is reported (``Verdict.errors``). Counts a fail-open or
fail-closed backend made up itself (``quco.corpus.remote.DegradedCount``) are
reported the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from quco.corpus.base import CorpusStats
from quco.errors import BadInputError, QucoError
from quco.guard.rules import (
    POLICIES,
    claim_queries,
    combined_rule,
    flare_query,
    flare_rule,
    pair_query,
    quco_stage1,
    quco_stage2,
)
from quco.guard.trace import Clock
from quco.protocols import ClaimExtractor, Extractor, Retriever
from quco.risk.coverage import DEFAULT_ACTION, DEFAULT_FLOOR, Coverage, check_action, check_floor, coverage_of
from quco.risk.features import ClaimCount, EntityCount, PairCount, Signals
from quco.risk.policies import CLAIM_MODES
from quco.risk.thresholds import (
    DEFAULT_COOC,
    DEFAULT_ENTITY,
    DEFAULT_TUPLE,
    Threshold,
    Thresholds,
    ThresholdSpec,
    resolve,
)
from quco.types import Claim, Confidence, Count, Document, Entity, Reason, Risk

OnBackendError = Literal["open", "closed", "raise"]

T = TypeVar("T")


@dataclass(frozen=True)
class Verdict:
    """The outcome of one check.

    Attributes:
        risk: the verdict (``None`` when the policy does not check here).
        entities: checked entities with their counts.
        pairs: checked pairs with their co-occurrence counts (entity-pair mode).
        query: the retrieval query when the check fired, else ``None`` (in
            triplet mode the queries joined with " | ", for display).
        claims: checked claims with their counts (triplet mode).
        queries: the retrieval queries (one per flagged claim in triplet mode;
            ``(query,)`` otherwise); empty when the check did not fire.
        errors: backend failures met during the check (messages).
        action: what was done about them: ``"open"``, ``"closed"`` or ``""``.
        coverage: the share of the check's named entities known to the corpus
            (``None`` for policies without a data side).
    """

    risk: Risk | None = None
    entities: tuple[EntityCount, ...] = ()
    pairs: tuple[PairCount, ...] = ()
    query: str | None = None
    errors: tuple[str, ...] = ()
    action: str = ""
    claims: tuple[ClaimCount, ...] = ()
    queries: tuple[str, ...] = ()
    coverage: Coverage | None = None

    def __post_init__(self) -> None:
        if self.query is not None and not self.queries:
            object.__setattr__(self, "queries", (self.query,))

    @property
    def fired(self) -> bool:
        return self.query is not None


class _BackendFailure(Exception):
    """Internal: a corpus call failed under a fail-open/closed setting."""


class Checker:
    """Runs a policy's stage-1 (question) and stage-2 (sentence) checks.

    Args:
        policy: one of :data:`~quco.guard.rules.POLICIES`.
        extractor: entity extractor (needed by ``quco`` and ``combined``).
        stats: corpus backend (needed by ``quco`` and ``combined``).
        risk_model: fitted risk model (needed by ``combined``).
        entity_threshold: QuCo stage-1 threshold τ_entity on the mean entity
            count: an absolute count or a rate ``COUNT@TOKENS`` scaled to the
            index (:class:`~quco.risk.thresholds.Threshold`).
        window: co-occurrence window in tokens.
        theta: FLARE's token-probability threshold.
        risk_threshold: ``combined``'s probability threshold.
        on_backend_error: ``"open"``, ``"closed"`` or ``"raise"``.
        clock: where time is accounted (extraction / corpus / scoring).
        claims: stage 2 reads ``"triplets"`` (the sentence's claims, the
            paper) or ``"pairs"`` (every entity pair, quco before claims).
        claim_extractor: the claim extractor (triplet mode); default: the
            entity extractor's own (``extractor.claim_extractor()``, the
            spaCy :class:`~quco.nlp.claims.ClaimParser` sharing its pipeline).
        tuple_threshold: a (head, relation) tuple whose head occurs fewer
            times is risky (paper: 20; a count or a rate).
        cooc_threshold: τ_cooc: a triplet (pair) whose head and tail co-occur
            fewer times is risky (paper: 1, i.e. never; a count or a rate).
        thresholds: the thresholds already resolved for this index (a guard
            resolves them once and passes them to each answer's checker);
            when given, the three specs above are ignored.
        max_queries: most retrieval queries per flagged sentence (triplet mode).
        coverage_floor: a check whose share of named entities known to the
            corpus is below this is ``out_of_coverage`` (:mod:`quco.risk.coverage`).
        on_out_of_coverage: what an ``out_of_coverage`` check does:
            ``"retrieve"`` (default: risky, retrieve), ``"pass"`` (no
            retrieval on the data side's account) or ``"confidence-only"``
            (``quco``: FLARE's rule on the sentence; ``combined``: the model
            with its data features neutral).
    """

    def __init__(
        self,
        policy: str,
        extractor: Extractor | None,
        stats: CorpusStats | None,
        *,
        risk_model: Any = None,
        entity_threshold: ThresholdSpec = DEFAULT_ENTITY,
        window: int | None = 1000,
        theta: float = 0.4,
        risk_threshold: float = 0.5,
        on_backend_error: OnBackendError = "open",
        clock: Clock | None = None,
        claims: str = "triplets",
        claim_extractor: ClaimExtractor | None = None,
        tuple_threshold: ThresholdSpec = DEFAULT_TUPLE,
        max_queries: int = 3,
        cooc_threshold: ThresholdSpec = DEFAULT_COOC,
        thresholds: Thresholds | None = None,
        coverage_floor: float = DEFAULT_FLOOR,
        on_out_of_coverage: str = DEFAULT_ACTION,
    ) -> None:
        if policy not in POLICIES:
            raise BadInputError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
        if on_backend_error not in ("open", "closed", "raise"):
            raise BadInputError(f"on_backend_error must be 'open', 'closed' or 'raise', not {on_backend_error!r}")
        if policy in ("quco", "combined"):
            if extractor is None:
                raise QucoError(f"policy {policy!r} needs an entity extractor")
            if stats is None:
                raise QucoError(f"policy {policy!r} needs corpus statistics (an index or a server URL)")
        if policy == "combined" and risk_model is None:
            raise QucoError("policy 'combined' needs a fitted risk model (risk_model=...)")
        if claims not in CLAIM_MODES:
            raise BadInputError(f"claims must be 'triplets' or 'pairs', not {claims!r}")
        if max_queries < 1:
            raise BadInputError(f"max_queries must be at least 1, got {max_queries}")
        if claims == "triplets" and policy in ("quco", "combined") and claim_extractor is None:
            claim_extractor = default_claim_extractor(extractor)
        self.claims = claims
        self.claim_extractor = claim_extractor
        self.coverage_floor = check_floor(coverage_floor)
        self.on_out_of_coverage = check_action(on_out_of_coverage)
        uses_corpus = policy in ("quco", "combined")
        #: the effective thresholds (rates scaled to the index's token count)
        specs = (entity_threshold, cooc_threshold, tuple_threshold)
        if thresholds is None:
            parsed = [Threshold.parse(x) for x in specs]  # a bad spec fails under every policy
            if not uses_corpus and any(t.is_rate for t in parsed):  # no index to scale to: not used anyway
                parsed = [Threshold.parse(d) for d in (DEFAULT_ENTITY, DEFAULT_COOC, DEFAULT_TUPLE)]
            thresholds = resolve(*parsed, stats=stats if uses_corpus else None)
        self.thresholds = thresholds
        self.tuple_threshold = self.thresholds.tuple_head
        self.cooc_threshold = self.thresholds.cooc
        self.max_queries = max_queries
        self.policy = policy
        self.extractor = extractor
        self.stats = stats
        self.risk_model = risk_model
        self.entity_threshold = self.thresholds.entity
        self.window = window
        self.theta = theta
        self.risk_threshold = risk_threshold
        self.on_backend_error: OnBackendError = on_backend_error
        self.clock = clock or Clock()

    # -- corpus access with the fail-open/closed behaviour ------------------------------

    def _corpus(self, call: Callable[[], list[Count]], errors: list[str]) -> list[Count]:
        with self.clock.time("corpus"):
            try:
                out = call()
            except (QucoError, OSError) as exc:
                if self.on_backend_error == "raise":
                    raise
                errors.append(f"{type(exc).__name__}: {exc}")
                raise _BackendFailure from exc
        for c in out:
            msg = getattr(c, "error", "")
            if msg:  # the backend degraded this count itself
                errors.append(str(msg))
        return out

    def _counts(self, ents: Sequence[Entity], errors: list[str]) -> tuple[EntityCount, ...]:
        terms = list(dict.fromkeys(e.text for e in ents))
        if not terms or self.stats is None:
            return ()
        stats = self.stats
        counts = dict(zip(terms, self._corpus(lambda: stats.count_many(terms), errors), strict=True))
        return tuple(EntityCount(e, counts[e.text]) for e in ents)

    def _pairs(self, ents: Sequence[Entity], q_ents: Sequence[Entity], errors: list[str]) -> tuple[PairCount, ...]:
        if self.extractor is None or self.stats is None:
            return ()
        with self.clock.time("extraction"):
            pairs = self.extractor.pairs(ents, q_ents)
        keys = list(dict.fromkeys((p.head.text, p.tail.text) for p in pairs))
        if not keys:
            return ()
        stats = self.stats
        coocs = dict(zip(keys, self._corpus(lambda: stats.cooccur_many(keys, window=self.window), errors), strict=True))
        return tuple(PairCount(p, coocs[(p.head.text, p.tail.text)]) for p in pairs)

    def _claims(self, question: str, sentence: str, errors: list[str]) -> tuple[ClaimCount, ...]:
        """The sentence's claims with their counts: head/tail co-occurrence (triplets), head frequency (tuples)."""
        if self.claim_extractor is None or self.stats is None:
            return ()
        with self.clock.time("extraction"):
            found = self.claim_extractor.claims_many([sentence], [question])[0]
        claims: list[Claim] = []
        seen: set[tuple[str, str, str | None]] = set()
        for c in found:  # a repeated claim is checked once
            key = (c.head.text, c.relation, c.tail.text if c.tail else None)
            if key not in seen:
                seen.add(key)
                claims.append(c)
        if not claims:
            return ()
        heads = list(dict.fromkeys(c.head.text for c in claims if c.tail is None))
        keys = list(dict.fromkeys((c.head.text, c.tail.text) for c in claims if c.tail is not None))
        stats = self.stats
        counts = dict(zip(heads, self._corpus(lambda: stats.count_many(heads), errors), strict=True)) if heads else {}
        coocs = (
            dict(zip(keys, self._corpus(lambda: stats.cooccur_many(keys, window=self.window), errors), strict=True))
            if keys
            else {}
        )
        return tuple(ClaimCount(c, claim_count(c, counts, coocs)) for c in claims)

    def _failed(self, errors: list[str], query: str) -> Verdict:
        msg = "; ".join(errors)
        reason = Reason("backend_error", f"corpus check failed ({self.on_backend_error}): {msg}")
        if self.on_backend_error == "closed":
            return Verdict(Risk(1.0, True, self.policy, (reason,)), query=query, errors=tuple(errors), action="closed")
        return Verdict(Risk(0.0, False, self.policy, (reason,)), errors=tuple(errors), action="open")

    def _degraded_action(self, errors: list[str]) -> str:
        return ("closed" if self.on_backend_error == "closed" else "open") if errors else ""

    # -- checks ----------------------------------------------------------------------------

    def question_entities(self, question: str) -> list[Entity]:
        """Entities of the question (empty for policies that do not need them)."""
        if self.policy not in ("quco", "combined") or self.extractor is None:
            return []
        with self.clock.time("extraction"):
            return self.extractor.entities(question)

    def stage1(self, question: str, q_ents: Sequence[Entity]) -> Verdict:
        """The check on the question before generation."""
        if self.policy in ("none", "flare"):
            return Verdict()
        if self.policy == "single":
            r = Risk(1.0, True, "single", (Reason("always", "single-round retrieval with the question"),))
            return Verdict(r, query=question)
        errors: list[str] = []
        try:
            counts = self._counts(q_ents, errors)
        except _BackendFailure:
            return self._failed(errors, question)
        cov = coverage_of(counts, floor=self.coverage_floor)
        ooc = cov.out_of_coverage
        with self.clock.time("scoring"):
            signals = Signals(question_entities=counts, window=self.window)
            if self.policy == "quco":
                risk = quco_stage1(counts, self.entity_threshold)
                if ooc and self.on_out_of_coverage == "confidence-only":  # no token yet: nothing to judge
                    risk = Risk(0.0, False, risk.policy, risk.reasons)
            else:
                neutral = ooc and self.on_out_of_coverage == "confidence-only"
                risk = combined_rule(self.risk_model, signals, self.risk_threshold, data_neutral=neutral)
            if ooc:
                risk = self._out_of_coverage(risk, cov)
        return Verdict(
            risk,
            entities=counts,
            query=question if risk.flagged else None,
            errors=tuple(errors),
            action=self._degraded_action(errors),
            coverage=cov,
        )

    def _out_of_coverage(self, risk: Risk, cov: Coverage) -> Risk:
        """An ``out_of_coverage`` check's verdict under :attr:`on_out_of_coverage`.

        ``rule``: unchanged; ``retrieve``: flagged (a verdict the rule flagged anyway is kept as it
        is); ``pass``: not flagged; ``confidence-only``: the confidence-side
        decision already in ``risk``. The first reason says what was done.
        """
        act = self.on_out_of_coverage
        if act == "rule":  # the data rule's own verdict; the Verdict still carries the coverage
            return risk
        if act == "retrieve" and risk.flagged:  # the rule fired anyway: its verdict and reasons stand
            return risk
        then = {
            "retrieve": "treated as risky (retrieve)",
            "pass": "no retrieval on the corpus's account (pass)",
            "confidence-only": "judged on the model's confidence alone",
        }[act]
        reason = Reason("out_of_coverage", f"{cov.describe()}: {then}", "", cov.share)
        if act == "retrieve":
            flagged, p = True, max(risk.probability, 1.0 if self.policy == "quco" else risk.probability)
        elif act == "pass":
            flagged, p = False, (0.0 if self.policy == "quco" else risk.probability)
        else:
            flagged, p = risk.flagged, risk.probability
        return Risk(p, flagged, risk.policy, (reason, *risk.reasons))

    def sentence(
        self,
        question: str,
        q_ents: Sequence[Entity],
        q_counts: Sequence[EntityCount],
        sentence: str,
        confidence: Confidence | None,
    ) -> Verdict:
        """The check on one generated sentence (QuCo stage 2, FLARE or combined)."""
        if self.policy in ("none", "single"):
            return Verdict()
        if self.policy == "flare":
            with self.clock.time("scoring"):
                risk = flare_rule(confidence, self.theta)
                query = flare_query(sentence, confidence, self.theta, question) if risk.flagged else None
            return Verdict(risk, query=query)
        if self.extractor is None:  # pragma: no cover - checked in __init__
            return Verdict()
        with self.clock.time("extraction"):
            ents = self.extractor.entities(sentence)
        errors: list[str] = []
        triplets = self.claims == "triplets"
        claims: tuple[ClaimCount, ...] = ()
        pairs: tuple[PairCount, ...] = ()
        try:
            counts = self._counts(ents, errors)
            if triplets:
                claims = self._claims(question, sentence, errors)
            if not triplets or self.policy == "combined":  # a fitted model may use the pair features
                pairs = self._pairs(ents, q_ents, errors)
        except _BackendFailure:
            # fail-closed query: triplet mode never queries the sentence (it holds the suspect tails)
            fallback = question if triplets else " ".join([*(e.text for e in ents), sentence.strip()])
            return self._failed(errors, fallback)
        cov = coverage_of(q_counts, counts, floor=self.coverage_floor)
        ooc = cov.out_of_coverage
        confidence_only = ooc and self.on_out_of_coverage == "confidence-only"
        with self.clock.time("scoring"):
            if self.policy == "quco" and confidence_only:
                risk = flare_rule(confidence, self.theta)
                risk = Risk(risk.probability, risk.flagged, "quco-stage2", risk.reasons)
            elif self.policy == "quco":
                risk = quco_stage2(
                    pairs, self.window, counts, claims=claims if triplets else None,
                    tuple_threshold=self.tuple_threshold, cooc_threshold=self.cooc_threshold,
                )
            else:
                new = {e.key for e in self.extractor.new_entities(ents, q_ents)}
                signals = Signals(
                    question_entities=tuple(q_counts),
                    answer_entities=counts,
                    new_answer_entities=tuple(c for c in counts if c.entity.key in new),
                    pairs=pairs,
                    confidence=confidence,
                    window=self.window,
                    claims=claims if triplets else None,
                )
                risk = combined_rule(self.risk_model, signals, self.risk_threshold, data_neutral=confidence_only)
            if ooc:
                risk = self._out_of_coverage(risk, cov)
            query = None
            queries: tuple[str, ...] = ()
            if risk.flagged:
                if confidence_only:  # the confidence side fired: FLARE's masked draft
                    query = flare_query(sentence, confidence, self.theta, question)
                elif triplets and claims:
                    queries = tuple(claim_queries(claims, risk, max_queries=self.max_queries))
                    query = " | ".join(queries)
                elif pairs and not triplets:
                    query = pair_query(pairs, sentence)
                else:  # nothing to anchor a query on: FLARE's masked draft
                    query = flare_query(sentence, confidence, self.theta, question)
        return Verdict(
            risk, counts, pairs, query, tuple(errors), self._degraded_action(errors), claims, queries, cov
        )


def claim_count(claim: Claim, counts: dict[str, Count], coocs: dict[tuple[str, str], Count]) -> Count:
    """The count stage 2 checks a claim by: its head/tail co-occurrence (triplet) or its head's frequency (tuple)."""
    if claim.tail is None:
        return counts[claim.head.text]
    return coocs[(claim.head.text, claim.tail.text)]


def default_claim_extractor(extractor: Extractor | None) -> ClaimExtractor:
    """The entity extractor's own claim extractor (``extractor.claim_extractor()``).

    Raises:
        QucoError: the extractor offers none (pass ``claim_extractor=`` or use ``claims="pairs"``).
    """
    make = getattr(extractor, "claim_extractor", None)
    if not callable(make):
        raise QucoError(
            f"claims='triplets' needs a claim extractor: {type(extractor).__name__} has no claim_extractor(); "
            "pass claim_extractor=... (quco.nlp.claims.ClaimParser) or use claims='pairs'"
        )
    return make()  # type: ignore[no-any-return]


def retrieve_union(retriever: Retriever, queries: Sequence[str], k: int) -> list[Document]:
    """The union of the top ``k`` documents of each query, deduplicated (same id or same text), in query order.

    One query gives :func:`retrieve_unique`'s result.
    """
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    out: list[Document] = []
    for q in dict.fromkeys(queries):
        for d in retrieve_unique(retriever, q, k):
            norm = " ".join(d.text.split()).casefold()
            if d.id in seen_ids or norm in seen_texts:
                continue
            seen_ids.add(d.id)
            seen_texts.add(norm)
            out.append(d)
    return out


def retrieve_unique(retriever: Retriever, query: str, k: int) -> list[Document]:
    """Top ``k`` documents for ``query`` with duplicates (same id or same text) removed.

    Asks for ``2k`` so that ``k`` remain after deduplication when possible.
    """
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    out: list[Document] = []
    for d in retriever.retrieve(query, k=2 * k):
        norm = " ".join(d.text.split()).casefold()
        if d.id in seen_ids or norm in seen_texts or not norm:
            continue
        seen_ids.add(d.id)
        seen_texts.add(norm)
        out.append(d)
        if len(out) >= k:
            break
    return out
