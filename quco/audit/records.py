"""Audit records: the analysis of a batch of rows and the JSON record of each answer.

:class:`Auditor` turns a batch of :class:`~quco.audit.rows.AuditRow` into output
records (one extraction pass and one corpus query per distinct term and pair
per batch, through :meth:`quco.analyze.Analyzer.analyze_many`);
:class:`MemoExtractor` runs each distinct text through the extractor once.
The record format is described in :mod:`quco.audit.runner`. Both engines
(:mod:`quco.audit.runner`'s local one and :mod:`quco.audit.ray_engine`) use
these classes unchanged.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from quco.analyze import Analysis, AnalysisItem, Analyzer
from quco.audit.rows import AuditRow, BadRow
from quco.audit.verdicts import Judge
from quco.errors import BadInputError, QucoError
from quco.guard.trace import claim_dict
from quco.nlp.sentences import sentence_spans
from quco.prompts import qa_prompt
from quco.protocols import Extractor, Scorer
from quco.risk.features import EntityCount, PairCount
from quco.types import Confidence, Entity, Pair, Risk

log = logging.getLogger(__name__)

#: Output keys; a passed-through input field with one of these names gets an ``input_`` prefix.
OUTPUT_KEYS = frozenset(
    {
        "id", "line", "question", "answer", "label", "risk", "flagged", "risk_policy", "verdicts",
        "question_entities", "answer_entities", "pairs", "sentences", "confidence", "context", "claims",
        "coverage", "novelty",
    }
)  # fmt: skip


def _num(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return None
    return round(float(x), 6)


def _risk_dict(r: Risk) -> dict[str, Any]:
    return {
        "probability": _num(r.probability),
        "flagged": bool(r.flagged),
        "reasons": [
            {"kind": x.kind, "message": x.message, "subject": x.subject, "value": _num(x.value)}
            for x in r.reasons
        ],
    }


def _ent_dict(ec: EntityCount, offset: int = 0, new: bool | None = None) -> dict[str, Any]:
    e = ec.entity
    d: dict[str, Any] = {
        "text": e.text,
        "surface": e.surface,
        "label": e.label,
        "start": e.start + offset,
        "end": e.end + offset,
    }
    if new is not None:
        d["new"] = new
    d["count"] = int(ec.count.value)
    d["approx"] = bool(ec.count.approx)
    return d


def _pair_dict(pc: PairCount) -> dict[str, Any]:
    return {
        "head": pc.pair.head.text,
        "tail": pc.pair.tail.text,
        "count": int(pc.count.value),
        "approx": bool(pc.count.approx),
    }


def context_support(entities: Sequence[Entity], context: Sequence[str]) -> dict[str, Any]:
    """Whether each entity appears in the context (case-folded, whole words).

    Args:
        entities: the answer's entities.
        context: the documents retrieved for the answer.

    Returns:
        ``{"entities": [{"text", "supported"}], "supported_share"}``; the share
        is ``None`` when there is no entity.
    """
    hay = "\n".join(context).casefold()
    seen: set[str] = set()
    items: list[dict[str, Any]] = []
    for e in entities:
        if e.key in seen:
            continue
        seen.add(e.key)
        forms = {e.key, e.surface.casefold()}
        ok = any(re.search(r"(?<!\w)" + re.escape(f) + r"(?!\w)", hay) for f in forms if f)
        items.append({"text": e.text, "supported": ok})
    share = sum(bool(i["supported"]) for i in items) / len(items) if items else None
    return {"entities": items, "supported_share": _num(share)}


class MemoExtractor:
    """An extractor that runs each distinct text once: within a batch and across recent batches.

    The analysis of an answer extracts its question, the answer and each of its
    sentences; a one-sentence answer is its own sentence, and logged questions
    repeat. Entities depend on the text alone, so repeats are answered from a
    bounded LRU memo. Thread-safe: :func:`quco.audit.steps.pipelined` fills
    the memo for the next batch in a background thread
    (:meth:`Auditor.prefetch`) while the current batch's corpus queries run;
    the wrapped extractor is called by one thread at a time.

    Args:
        extractor: the real extractor.
        maxsize: texts remembered.
    """

    def __init__(self, extractor: Extractor, *, maxsize: int = 16_384) -> None:
        self.extractor = extractor
        self.maxsize = maxsize
        self._memo: OrderedDict[str, list[Entity]] = OrderedDict()
        self._lock = threading.Lock()
        self._run_lock = threading.Lock()

    def entities(self, text: str) -> list[Entity]:
        return self.entities_many([text])[0]

    def entities_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        distinct = list(dict.fromkeys(texts))
        found: dict[str, list[Entity]] = {}
        with self._lock:
            for t in distinct:
                hit = self._memo.get(t)
                if hit is not None:
                    self._memo.move_to_end(t)
                    found[t] = hit
        todo = [t for t in distinct if t not in found]
        if todo:
            with self._run_lock:
                got = self.extractor.entities_many(todo)
            with self._lock:
                for t, ents in zip(todo, got):
                    found[t] = ents
                    self._memo[t] = ents
                while len(self._memo) > self.maxsize:
                    self._memo.popitem(last=False)
        return [list(found[t]) for t in texts]

    def pairs(self, sentence: Sequence[Entity], question: Sequence[Entity] = ()) -> list[Pair]:
        return self.extractor.pairs(sentence, question)

    def new_entities(self, answer: Sequence[Entity], question: Sequence[Entity]) -> list[Entity]:
        return self.extractor.new_entities(answer, question)

    def claim_extractor(self) -> Any:
        """The wrapped extractor's claim extractor."""
        return self.extractor.claim_extractor()  # type: ignore[attr-defined]


class Auditor:
    """Audits batches of rows: analysis, policy verdicts and the output records.

    Args:
        analyzer: shares extraction and corpus queries across a batch.
        judge: the policies applied to each answer and sentence.
        scorer: the model's confidence scorer (``None``: data side only).
        prompt: builds the prompt an answer is scored under (default: the
            closed-book :func:`quco.prompts.qa_prompt`).
    """

    def __init__(
        self,
        analyzer: Analyzer,
        judge: Judge,
        *,
        scorer: Scorer | None = None,
        prompt: Callable[[str], str] = qa_prompt,
    ) -> None:
        self.analyzer = analyzer
        self.judge = judge
        self.scorer = scorer
        self.prompt = prompt

    def _confidences(self, rows: Sequence[AuditRow]) -> list[Confidence | None]:
        if self.scorer is None:
            return [None] * len(rows)
        prompts = [self.prompt(r.question) for r in rows]
        many = getattr(self.scorer, "score_many", None)
        if callable(many):
            return list(many(list(zip(prompts, [r.answer for r in rows]))))
        return [self.scorer.score(p, r.answer) for p, r in zip(prompts, rows)]

    def prefetch(self, rows: Sequence[AuditRow]) -> None:
        """Extract the entities of ``rows`` ahead of :meth:`audit` (fills a :class:`MemoExtractor`).

        A no-op unless the analyzer's extractor is a :class:`MemoExtractor`.
        Errors are left for :meth:`audit` to meet again.
        """
        ex = self.analyzer.extractor
        if not isinstance(ex, MemoExtractor) or not rows:
            return
        texts: list[str] = []
        for r in rows:
            texts += [r.question, r.answer]
            if self.analyzer.per_sentence:
                texts += [r.answer[a:b] for a, b in sentence_spans(r.answer)]
        try:
            ex.entities_many(texts)
        except QucoError as exc:
            log.debug("prefetch failed, the batch will be analysed without it: %s", exc)

    def audit(self, rows: Sequence[AuditRow]) -> list[dict[str, Any]]:
        """Output records for ``rows``, in order."""
        if not rows:
            return []
        confs = self._confidences(rows)
        items = [AnalysisItem(r.question, r.answer, c) for r, c in zip(rows, confs)]
        analyses = self.analyzer.analyze_many(items)
        return [self.record(r, a) for r, a in zip(rows, analyses)]

    def record(self, row: AuditRow, a: Analysis) -> dict[str, Any]:
        """The output record of one analysed row."""
        cov = self.judge.coverage(a.signals)
        verdicts = self.judge.judge(a.signals, cov)
        head = self.judge.headline
        rec: dict[str, Any] = {"id": row.id, "line": row.line, "question": row.question, "answer": row.answer}
        if row.label is not None:
            rec["label"] = row.label
        top = verdicts[head]
        rec["risk"] = _num(top.probability)
        rec["flagged"] = bool(top.flagged)
        rec["risk_policy"] = head
        rec["verdicts"] = {k: _risk_dict(v) for k, v in verdicts.items()}
        rec["coverage"] = cov.to_dict()
        if a.signals.novelty is not None:
            rec["novelty"] = a.signals.novelty.to_dict()
        new_keys = {ec.entity.key for ec in a.signals.new_answer_entities}
        rec["question_entities"] = [_ent_dict(ec) for ec in a.signals.question_entities]
        rec["answer_entities"] = [
            _ent_dict(ec, new=ec.entity.key in new_keys) for ec in a.signals.answer_entities
        ]
        rec["pairs"] = [_pair_dict(pc) for pc in a.signals.pairs]
        if a.signals.claims is not None:
            rec["claims"] = [claim_dict(cc) for cc in a.signals.claims]
        sents = []
        for s in a.sentences:
            s_cov = self.judge.coverage(s.signals)
            sv = self.judge.judge(s.signals, s_cov)
            sents.append(
                {
                    "text": s.text,
                    "start": s.start,
                    "end": s.end,
                    "risk": _num(sv[head].probability),
                    "flagged": bool(sv[head].flagged),
                    "verdicts": {k: _risk_dict(v) for k, v in sv.items()},
                    "coverage": s_cov.to_dict(),
                    "entities": [_ent_dict(ec, offset=s.start) for ec in s.signals.answer_entities],
                    "pairs": [_pair_dict(pc) for pc in s.signals.pairs],
                    **({"claims": [claim_dict(cc) for cc in s.signals.claims]} if s.signals.claims is not None else {}),
                }
            )
        rec["sentences"] = sents
        conf = a.signals.confidence
        if conf is not None:
            rec["confidence"] = {k: _num(v) for k, v in conf.aggregates().items()}
        if row.context is not None:
            rec["context"] = context_support(a.answer_entities, row.context)
        for k, v in row.extra.items():
            rec[f"input_{k}" if k in OUTPUT_KEYS else k] = v
        return rec

    def audit_or_isolate(
        self, rows: Sequence[AuditRow]
    ) -> tuple[list[tuple[int, dict[str, Any]]], list[BadRow]]:
        """:meth:`audit`, falling back to one row at a time when the batch has a row the analysis rejects.

        Returns:
            ``(line, record)`` for the rows audited and a :class:`BadRow` for
            each row whose analysis raised :class:`~quco.errors.BadInputError`.
        """
        try:
            return [(r.line, rec) for r, rec in zip(rows, self.audit(rows))], []
        except BadInputError as exc:
            if len(rows) == 1:
                return [], [BadRow(rows[0].line, f"cannot be analysed: {exc}")]
        good: list[tuple[int, dict[str, Any]]] = []
        bad: list[BadRow] = []
        for r in rows:
            try:
                good.append((r.line, self.audit([r])[0]))
            except BadInputError as exc:
                bad.append(BadRow(r.line, f"cannot be analysed: {exc}"))
        return good, bad
