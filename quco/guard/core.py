"""The guard: sentence-at-a-time generation with QuCo's two checks (or a baseline's).

Loop (all policies):

1. Stage 1 on the question (``quco``: mean named-entity frequency below
   ``entity_threshold``; ``combined``: the risk model on question features;
   ``single``: always). When it fires, the question is the retrieval query and
   generation starts from the prompt (``prompt="short"``:
   :func:`~quco.prompts.qa_prompt`; ``"cot"``: :func:`~quco.prompts.cot_prompt`)
   with the evidence.
2. The generator writes the next sentence (``sentence=True``, ``prefix`` = the
   answer so far) with its own token confidences.
3. Stage 2 on that draft (``quco``: a triplet whose head and tail never
   co-occur, or a tuple whose head is rare; with ``claims="pairs"`` a
   head/tail pair with zero co-occurrence; ``flare``: a token below
   ``theta``; ``combined``: the risk model). When it fires: retrieve top-``k``
   per query (triplet mode: one ``head ⊕ relation`` query per flagged claim,
   never the tail; the union, deduplicated), regenerate the sentence from the
   prompt with that evidence and the same prefix, keep its first sentence.
   Generation continues from the accepted text; later sentences are
   generated with the latest evidence.
4. Stop at the end of the answer (end of sequence, the short-answer format's
   newline, or a "So the answer is ..." conclusion), at ``token_budget``
   generated tokens, after ``max_sentences``, or when no progress is made (an
   empty or repeated sentence).

Questions longer than :data:`MAX_QUESTION_CHARS` are truncated at a word
boundary (``GuardResult.truncated`` says so); evidence passages are cut to
``max_evidence_chars`` each in the prompt.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from quco.analyze import slice_confidence
from quco.corpus.base import CorpusStats
from quco.errors import BadInputError, QucoError
from quco.guard.checks import Checker, OnBackendError, Verdict, retrieve_union
from quco.guard.rules import POLICIES
from quco.guard.trace import BackendError, Clock, GuardResult, Retrieval, SentenceRecord, Stage1Record
from quco.nlp.sentences import sentence_spans
from quco.prompts import ANSWER_IS, PROMPTS, make_prompt
from quco.protocols import ClaimExtractor, Extractor, Generator, Retriever, Scorer
from quco.risk.coverage import DEFAULT_ACTION, DEFAULT_FLOOR
from quco.risk.thresholds import DEFAULT_COOC, DEFAULT_ENTITY, DEFAULT_TUPLE, ThresholdSpec
from quco.types import Confidence, Document, Generation

log = logging.getLogger(__name__)

#: Longer questions are truncated (at a word boundary) to this many characters.
MAX_QUESTION_CHARS = 2000

#: The short-answer prompt ends an answer with a newline.
STOP = ("\n",)

_SENT_END = re.compile(r"[.!?][\"')\]]*\s*$")


@dataclass(frozen=True)
class _Piece:
    """A generated sentence as it goes into the answer."""

    text: str  # stripped
    confidence: Confidence
    tokens: int
    ended: bool  # the answer ends after this piece
    finish_reason: str


def _first_sentence(gen: Generation) -> _Piece:
    """The first sentence of a generation, and whether the answer ends with it."""
    raw = gen.text
    conf = gen.confidence
    tokens = len(conf) if len(conf) else len(raw.split())
    ended = gen.finish_reason == "eos"
    lead = len(raw) - len(raw.lstrip())
    body = raw[lead:]
    nl = body.find("\n")
    if nl >= 0:  # the short-answer format ends an answer at a newline
        body, ended = body[:nl], True
    spans = sentence_spans(body)
    if len(spans) > 1:  # the generator ran past the first sentence
        body, ended = body[: spans[0][1]], False
    elif not ended and gen.finish_reason == "stop" and not _SENT_END.search(body):
        ended = True  # stopped by the stop string, not at a sentence end
    body = body.rstrip()
    if len(conf) and "".join(t.token for t in conf.tokens) == raw:
        conf = slice_confidence(conf, raw, lead, lead + len(body))
    return _Piece(body, conf, tokens, ended, gen.finish_reason)


def _join(answer: str, sentence: str) -> str:
    return f"{answer} {sentence}" if answer else sentence


class Guard:
    """A guarded question answerer.

    Args:
        generator: writes the answer with its own token confidences
            (``quco.lm.generator.HFGenerator`` or any ``Generator``).
        extractor: entity extractor (policies ``quco`` and ``combined``).
        stats: corpus statistics (policies ``quco`` and ``combined``).
        retriever: evidence retriever (every policy but ``none``).
        policy: ``"none"``, ``"single"``, ``"flare"``, ``"quco"`` or ``"combined"``.
        scorer: optional confidence scorer, used when the generator returns no
            token confidences.
        risk_model: fitted risk model for ``combined`` (default:
            ``quco.risk.combined.load_default_scorer()``).
        k: documents per retrieval (after deduplication).
        entity_threshold: τ_entity, stage 1's threshold on the mean named
            question-entity count: an absolute count (``1000``: the paper's,
            unscaled) or a rate ``COUNT@TOKENS`` scaled to the index's size
            (default :data:`~quco.risk.thresholds.PAPER_ENTITY_RATE`, the
            paper's rate: 0.0027 on the 10.7M-token demo index; 1000 on an
            index of unknown size).
        window: co-occurrence window in tokens (paper: 1000).
        theta: FLARE's token-probability threshold.
        risk_threshold: ``combined``'s probability threshold.
        max_sentences: most sentences in an answer.
        max_new_tokens: most tokens per generated sentence.
        token_budget: most tokens generated per answer, drafts and rewrites together.
        on_backend_error: corpus failures: ``"open"`` (skip the check),
            ``"closed"`` (treat as risky and retrieve) or ``"raise"``.
        max_evidence_chars: each evidence passage is cut to this length in prompts.
        few_shot: include the prompt's hand-written examples.
        prompt: ``"short"`` (a short phrase) or ``"cot"`` (one fact per
            sentence, ending "So the answer is X.").
        claims: stage 2 reads ``"triplets"`` (the sentence's claims, the
            paper) or ``"pairs"`` (every entity pair).
        claim_extractor: the claim extractor (triplet mode); default: the
            entity extractor's own (spaCy rules, :class:`~quco.nlp.claims.ClaimParser`).
        tuple_threshold: stage 2 flags a (head, relation) tuple whose head
            occurs fewer times (paper: 20; a count or a rate).
        cooc_threshold: τ_cooc: stage 2 flags a triplet (pair) whose head and
            tail co-occur fewer times (paper: 1, i.e. never; a count or a rate).
        max_queries: most stage-2 queries per flagged sentence (triplet mode).
        coverage_floor: a check whose share of named entities known to the
            corpus is below this is ``out_of_coverage`` (default 0.5).
        on_out_of_coverage: ``"retrieve"`` (default), ``"pass"`` or
            ``"confidence-only"`` (:mod:`quco.risk.coverage`).

    Raises:
        BadInputError: unknown policy or option value.
        QucoError: a component the policy needs is missing.
    """

    def __init__(
        self,
        generator: Generator,
        extractor: Extractor | None = None,
        stats: CorpusStats | None = None,
        retriever: Retriever | None = None,
        *,
        policy: str = "quco",
        scorer: Scorer | None = None,
        risk_model: Any = None,
        k: int = 3,
        entity_threshold: ThresholdSpec = DEFAULT_ENTITY,
        window: int | None = 1000,
        theta: float = 0.4,
        risk_threshold: float = 0.5,
        max_sentences: int = 4,
        max_new_tokens: int = 64,
        token_budget: int = 256,
        on_backend_error: OnBackendError = "open",
        max_evidence_chars: int = 1000,
        few_shot: bool = True,
        prompt: str = "short",
        claims: str = "triplets",
        claim_extractor: ClaimExtractor | None = None,
        tuple_threshold: ThresholdSpec = DEFAULT_TUPLE,
        max_queries: int = 3,
        cooc_threshold: ThresholdSpec = DEFAULT_COOC,
        coverage_floor: float = DEFAULT_FLOOR,
        on_out_of_coverage: str = DEFAULT_ACTION,
    ) -> None:
        if policy not in POLICIES:
            raise BadInputError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
        if prompt not in PROMPTS:
            raise BadInputError(f"unknown prompt {prompt!r}: choose one of {', '.join(PROMPTS)}")
        if policy != "none" and retriever is None:
            raise QucoError(f"policy {policy!r} needs a retriever (build one with `quco retrieval build`)")
        for name, v in (("k", k), ("max_sentences", max_sentences), ("max_new_tokens", max_new_tokens), ("token_budget", token_budget)):
            if v < 1:
                raise BadInputError(f"{name} must be at least 1, got {v}")
        if policy == "combined" and risk_model is None:
            risk_model = _default_risk_model()
        self.generator = generator
        self.retriever = retriever
        self.scorer = scorer
        self.policy = policy
        self.k = k
        self.max_sentences = max_sentences
        self.max_new_tokens = max_new_tokens
        self.token_budget = token_budget
        self.max_evidence_chars = max_evidence_chars
        self.few_shot = few_shot
        self.prompt = prompt
        self.claims = claims
        self.on_backend_error: OnBackendError = on_backend_error
        self.extractor = extractor
        self.stats = stats
        # validates the policy's needs once, and resolves the default claim extractor
        probe = Checker(
            policy,
            extractor,
            stats,
            risk_model=risk_model,
            entity_threshold=entity_threshold,
            window=window,
            theta=theta,
            risk_threshold=risk_threshold,
            on_backend_error=on_backend_error,
            claims=claims,
            claim_extractor=claim_extractor,
            tuple_threshold=tuple_threshold,
            max_queries=max_queries,
            cooc_threshold=cooc_threshold,
            coverage_floor=coverage_floor,
            on_out_of_coverage=on_out_of_coverage,
        )
        self.claim_extractor = probe.claim_extractor
        self.on_out_of_coverage = probe.on_out_of_coverage
        #: the effective thresholds (rates scaled to the index once, here)
        self.thresholds = probe.thresholds
        self._checker_args = dict(
            risk_model=risk_model,
            entity_threshold=entity_threshold,
            window=window,
            theta=theta,
            risk_threshold=risk_threshold,
            on_backend_error=on_backend_error,
            claims=claims,
            claim_extractor=probe.claim_extractor,
            thresholds=probe.thresholds,
            max_queries=max_queries,
            coverage_floor=coverage_floor,
            on_out_of_coverage=on_out_of_coverage,
        )

    # ------------------------------------------------------------------------------------

    def answer(self, question: str) -> GuardResult:
        """Answer ``question`` under the policy and return the answer with its trace.

        Raises:
            BadInputError: the question is not a string, is empty, or holds a
                lone surrogate (not valid Unicode).
        """
        if not isinstance(question, str):
            raise BadInputError(f"the question must be a string, not {type(question).__name__}")
        question = question.strip()
        if not question:
            raise BadInputError("the question is empty")
        try:
            question.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate, e.g. undecodable bytes of a command line
            raise BadInputError(f"the question is not valid Unicode (character {exc.start})") from None
        truncated = len(question) > MAX_QUESTION_CHARS
        if truncated:
            cut = question[:MAX_QUESTION_CHARS]
            question = (cut.rsplit(None, 1)[0] if " " in cut else cut).strip()
            log.warning("question truncated to %d characters", len(question))
        run = _Run(self, question)
        return run.go(truncated)

    def _prompt(self, question: str, evidence: Sequence[Document]) -> str:
        texts = [d.text[: self.max_evidence_chars] for d in evidence]
        return make_prompt(self.prompt, question, texts, few_shot=self.few_shot)


def _default_risk_model() -> Any:
    from quco.risk.combined import load_default_scorer

    return load_default_scorer()


class _Run:
    """State of one answer."""

    def __init__(self, guard: Guard, question: str) -> None:
        self.g = guard
        self.q = question
        self.clock = Clock()
        self.checker = Checker(guard.policy, guard.extractor, guard.stats, clock=self.clock, **guard._checker_args)  # type: ignore[arg-type]
        self.retrievals = 0
        self.llm_calls = 0
        self.tokens = 0
        self.errors: list[BackendError] = []

    def _retrieve(self, query: str, where: str, queries: Sequence[str] = ()) -> Retrieval:
        """One retrieval: the union of each query's top k (``queries``, else ``query`` alone)."""
        self.retrievals += 1
        qs = tuple(queries) or (query,)
        retriever = self.g.retriever
        if retriever is None:  # pragma: no cover - checked in Guard.__init__
            return Retrieval(query, (), "no retriever", qs)
        with self.clock.time("retrieval"):
            try:
                docs = retrieve_union(retriever, qs, self.g.k)
            except (QucoError, OSError) as exc:
                if self.g.on_backend_error == "raise":
                    raise
                msg = f"{type(exc).__name__}: {exc}"
                self.errors.append(BackendError(where, "retriever", msg, "none"))
                return Retrieval(query, (), msg, qs)
        return Retrieval(query, tuple(docs), None, qs)

    def _note(self, v: Verdict, where: str) -> None:
        for e in v.errors:
            self.errors.append(BackendError(where, "corpus", e, v.action or self.g.on_backend_error))

    def _generate(self, prompt: str, prefix: str, budget: int) -> _Piece:
        self.llm_calls += 1
        with self.clock.time("generation"):
            gen = self.g.generator.generate(
                prompt, prefix=prefix, max_new_tokens=budget, stop=STOP, sentence=True
            )
        piece = _first_sentence(gen)
        self.tokens += piece.tokens
        if not len(piece.confidence) and piece.text and self.g.scorer is not None and self.g.policy in ("flare", "combined"):
            with self.clock.time("scoring"):
                full = _join(prefix, piece.text)
                conf = self.g.scorer.score(prompt, full)
                sliced = slice_confidence(conf, full, len(full) - len(piece.text), len(full))
                piece = _Piece(piece.text, sliced, piece.tokens, piece.ended, piece.finish_reason)
        return piece

    def go(self, truncated: bool) -> GuardResult:
        t0 = perf_counter()
        g = self.g
        q_ents = self.checker.question_entities(self.q)
        v1 = self.checker.stage1(self.q, q_ents)
        self._note(v1, "stage1")
        evidence: tuple[Document, ...] = ()
        r1 = None
        if v1.fired and v1.query is not None:
            r1 = self._retrieve(v1.query, "stage1")
            evidence = r1.documents
        stage1 = Stage1Record(v1.entities, v1.risk, r1, v1.coverage)

        answer = ""
        sentences: list[SentenceRecord] = []
        seen: set[str] = set()
        stop_reason = "end"
        while True:
            if len(sentences) >= g.max_sentences:
                stop_reason = "max_sentences"
                break
            left = g.token_budget - self.tokens
            if left <= 0:
                stop_reason = "budget"
                break
            before = self.clock.snapshot()
            prompt = g._prompt(self.q, evidence)
            draft = self._generate(prompt, answer, min(g.max_new_tokens, left))
            if not draft.text:
                stop_reason = "end" if sentences and draft.finish_reason != "length" else "no_progress"
                break
            if draft.text.casefold() in seen:
                stop_reason = "no_progress"
                break
            where = f"sentence {len(sentences)}"
            v2 = self.checker.sentence(self.q, q_ents, v1.entities, draft.text, draft.confidence)
            self._note(v2, where)
            kept, retrieval, rewritten = draft, None, False
            if v2.fired and v2.query is not None:
                retrieval = self._retrieve(v2.query, where, v2.queries)
                left = g.token_budget - self.tokens
                if retrieval.documents and left > 0:
                    evidence = retrieval.documents
                    redo = self._generate(g._prompt(self.q, evidence), answer, min(g.max_new_tokens, left))
                    if redo.text:
                        kept, rewritten = redo, True
            answer = _join(answer, kept.text)
            seen.add(kept.text.casefold())
            sentences.append(
                SentenceRecord(
                    index=len(sentences),
                    text=kept.text,
                    draft=draft.text,
                    entities=v2.entities,
                    pairs=v2.pairs,
                    confidence=draft.confidence if len(draft.confidence) else None,
                    risk=v2.risk,
                    retrieval=retrieval,
                    rewritten=rewritten,
                    finish_reason=kept.finish_reason,
                    timings=self.clock.since(before),
                    claims=v2.claims,
                    coverage=v2.coverage,
                )
            )
            if kept.ended or (g.prompt == "cot" and ANSWER_IS.search(kept.text)):
                break
        return GuardResult(
            question=self.q,
            answer=answer.strip(),
            policy=g.policy,
            stage1=stage1,
            sentences=tuple(sentences),
            retrievals=self.retrievals,
            llm_calls=self.llm_calls,
            tokens_generated=self.tokens,
            timings=self.clock.snapshot(),
            seconds=perf_counter() - t0,
            stop_reason=stop_reason,
            backend_errors=tuple(self.errors),
            truncated=truncated,
            model=getattr(g.generator, "name", ""),
            prompt=g.prompt,
            claims=g.claims,
            thresholds=g.thresholds if g.policy in ("quco", "combined") else None,
            on_out_of_coverage=g.on_out_of_coverage,
        )
