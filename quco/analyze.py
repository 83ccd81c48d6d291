"""From (question, answer) to the evidence both sides need: :class:`~quco.risk.features.Signals`.

The :class:`Analyzer` is the glue shared by the guard, the audit and the
detector evaluation: it extracts entities (batched), forms the head/tail pairs
QuCo checks and, with a claim extractor, each sentence's claims (triplets and
tuples), queries the corpus once per distinct term and pair (batched), and
attaches the model's token confidences when they are given or a scorer is set.
Results come per answer and per sentence. Pairs are always computed; claims
only with a claim extractor (``Signals.claims`` is ``None`` without one), so one
analysis serves both claim modes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.nlp.sentences import sentence_spans
from quco.protocols import ClaimExtractor, Extractor, Scorer
from quco.risk.features import ClaimCount, EntityCount, Novelty, PairCount, Signals
from quco.types import Claim, Confidence, Count, Entity, Pair


def slice_confidence(conf: Confidence, text: str, start: int, end: int) -> Confidence:
    """The tokens of ``conf`` (whose texts concatenate to ``text``) that overlap ``[start, end)``."""
    out = []
    pos = 0
    for t in conf.tokens:
        a, b = pos, pos + len(t.token)
        pos = b
        if b > start and a < end:
            out.append(t)
    return Confidence(tuple(out))


@dataclass(frozen=True)
class SentenceAnalysis:
    """One sentence of an answer with its evidence."""

    text: str
    start: int
    end: int
    entities: tuple[Entity, ...]
    signals: Signals


@dataclass(frozen=True)
class Analysis:
    """An answer with its evidence as a whole and per sentence."""

    question: str
    answer: str
    question_entities: tuple[Entity, ...]
    answer_entities: tuple[Entity, ...]
    new_entities: tuple[Entity, ...]
    signals: Signals
    sentences: tuple[SentenceAnalysis, ...]


@dataclass(frozen=True)
class AnalysisItem:
    """Input of :meth:`Analyzer.analyze_many`: a question, an answer and optional confidence."""

    question: str
    answer: str
    confidence: Confidence | None = None
    prompt: str | None = None


class Analyzer:
    """Computes :class:`Analysis` objects, sharing corpus queries across a batch.

    Args:
        extractor: entity extractor (``quco.nlp.entities.EntityExtractor``).
        stats: corpus backend.
        scorer: optional confidence scorer, used when an item has a ``prompt``
            but no ``confidence``.
        window: co-occurrence window in tokens (``None`` with ``mode="doc"``).
        mode: ``"window"`` or ``"doc"``.
        per_sentence: also analyze each sentence of the answer.
        claim_extractor: extracts each sentence's claims (``None``: no claims,
            ``Signals.claims`` stays ``None``). An answer's claims are those of
            its sentences, with offsets in the answer.
        ngrams: also measure each answer's n-gram novelty
            (:func:`quco.corpus.ngrams.novelty_many`, batched over the items;
            answer level only: ``Signals.novelty`` of sentences stays ``None``).
    """

    def __init__(
        self,
        extractor: Extractor,
        stats: CorpusStats,
        *,
        scorer: Scorer | None = None,
        window: int | None = DEFAULT_WINDOW,
        mode: CoocMode = "window",
        per_sentence: bool = True,
        claim_extractor: ClaimExtractor | None = None,
        ngrams: bool = False,
    ) -> None:
        self.ngrams = ngrams
        self.claim_extractor = claim_extractor
        self.extractor = extractor
        self.stats = stats
        self.scorer = scorer
        self.window = window
        self.mode: CoocMode = mode
        self.per_sentence = per_sentence

    def analyze(
        self,
        question: str,
        answer: str,
        *,
        confidence: Confidence | None = None,
        prompt: str | None = None,
    ) -> Analysis:
        """Analyze one answer (see :meth:`analyze_many`)."""
        return self.analyze_many([AnalysisItem(question, answer, confidence, prompt)])[0]

    def _claims_of(self, items: Sequence[AnalysisItem]) -> list[list[list[Claim]]] | None:
        """Per item, per sentence of its answer: the claims (offsets in the answer), or None without an extractor."""
        if self.claim_extractor is None:
            return None
        from quco.nlp.claims import shift_claim

        all_spans = [sentence_spans(it.answer) for it in items]
        texts = [it.answer[a:b] for it, sp in zip(items, all_spans) for a, b in sp]
        questions = [it.question for it, sp in zip(items, all_spans) for _ in sp]
        found = self.claim_extractor.claims_many(texts, questions) if texts else []
        out: list[list[list[Claim]]] = []
        k = 0
        for sp in all_spans:
            per = []
            for a, _b in sp:
                per.append([shift_claim(c, a) for c in found[k]])
                k += 1
            out.append(per)
        return out

    def analyze_many(self, items: Sequence[AnalysisItem]) -> list[Analysis]:
        """Analyze a batch: one extraction pass and one corpus query per distinct term/pair."""
        spans = [sentence_spans(it.answer) if self.per_sentence else [] for it in items]
        claims = self._claims_of(items)
        texts: list[str] = []
        for it, sp in zip(items, spans):
            texts.append(it.question)
            texts.append(it.answer)
            texts.extend(it.answer[a:b] for a, b in sp)
        ents = self.extractor.entities_many(texts)

        plan = []  # (q_ents, a_ents, new, pairs, [(span, s_ents, s_new, s_pairs)])
        k = 0
        for _it, sp in zip(items, spans):
            q_ents, a_ents = ents[k], ents[k + 1]
            k += 2
            new = self.extractor.new_entities(a_ents, q_ents)
            pairs = self.extractor.pairs(a_ents, q_ents)
            sents = []
            for span in sp:
                s_ents = ents[k]
                k += 1
                sents.append(
                    (span, s_ents, self.extractor.new_entities(s_ents, q_ents), self.extractor.pairs(s_ents, q_ents))
                )
            plan.append((q_ents, a_ents, new, pairs, sents))

        terms: dict[str, None] = {}
        pair_keys: dict[tuple[str, str], None] = {}
        for q_ents, a_ents, _new, pairs, sents in plan:
            for e in (*q_ents, *a_ents):
                terms[e.text] = None
            for p in pairs:
                pair_keys[_pkey(p)] = None
            for _span, s_ents, _sn, s_pairs in sents:
                for e in s_ents:
                    terms[e.text] = None
                for p in s_pairs:
                    pair_keys[_pkey(p)] = None
        for per_item in claims or []:
            for sent_claims in per_item:
                for c in sent_claims:
                    if c.tail is None:
                        terms[c.head.text] = None
                    else:
                        pair_keys[(c.head.text, c.tail.text)] = None
        term_list = list(terms)
        pair_list = list(pair_keys)
        counts = dict(zip(term_list, self.stats.count_many(term_list))) if term_list else {}
        coocs = (
            dict(zip(pair_list, self.stats.cooccur_many(pair_list, window=self.window, mode=self.mode)))
            if pair_list
            else {}
        )

        novelty: list[Novelty | None] = [None] * len(items)
        if self.ngrams:
            from quco.corpus.ngrams import novelty_many

            novelty = novelty_many(self.stats, [it.answer for it in items])

        def ec(es: Sequence[Entity]) -> tuple[EntityCount, ...]:
            return tuple(EntityCount(e, counts.get(e.text, Count(0))) for e in es)

        def pc(ps: Sequence[Pair]) -> tuple[PairCount, ...]:
            return tuple(PairCount(p, coocs[_pkey(p)]) for p in ps)

        def cc(cs: Sequence[Claim]) -> tuple[ClaimCount, ...]:
            return tuple(
                ClaimCount(c, counts.get(c.head.text, Count(0)) if c.tail is None else coocs[(c.head.text, c.tail.text)])
                for c in cs
            )

        out = []
        for i, (it, (q_ents, a_ents, new, pairs, sents)) in enumerate(zip(items, plan)):
            conf = it.confidence
            if conf is None and self.scorer is not None and it.prompt is not None:
                conf = self.scorer.score(it.prompt, it.answer)
            q_ec = ec(q_ents)
            item_claims = claims[i] if claims is not None else None
            a_claims = cc([c for per in item_claims for c in per]) if item_claims is not None else None
            signals = Signals(q_ec, ec(a_ents), ec(new), pc(pairs), conf, self.window, a_claims, novelty[i])
            s_out = []
            for j, ((a, b), s_ents, s_new, s_pairs) in enumerate(sents):
                s_conf = slice_confidence(conf, it.answer, a, b) if conf is not None else None
                s_claims = cc(item_claims[j]) if item_claims is not None else None
                s_sig = Signals(q_ec, ec(s_ents), ec(s_new), pc(s_pairs), s_conf, self.window, s_claims)
                s_out.append(SentenceAnalysis(it.answer[a:b], a, b, tuple(s_ents), s_sig))
            out.append(
                Analysis(it.question, it.answer, tuple(q_ents), tuple(a_ents), tuple(new), signals, tuple(s_out))
            )
        return out


def _pkey(p: Pair) -> tuple[str, str]:
    return (p.head.text, p.tail.text)
