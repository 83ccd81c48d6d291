"""Streaming, resumable audits: JSONL of answers in, one JSON line of evidence per answer out.

:class:`Auditor` turns a batch of :class:`~quco.audit.rows.AuditRow` into output
records (one extraction pass and one corpus query per distinct term and pair
per batch, through :meth:`quco.analyze.Analyzer.analyze_many`).
:func:`run_audit` streams an input file through it in batches of input lines:

- constant memory: the input is read line by line in binary and decoded per
  line; only one batch is held at a time;
- atomic per batch: the batch's records are appended to ``OUT`` (flush +
  fsync), its bad rows to the side file, then a small state file is replaced
  (write + fsync + rename) with the input lines and bytes consumed and the
  byte lengths of ``OUT`` and the side file;
- resumable: when the state file matches the input and the options, a re-run
  truncates ``OUT`` and the side file to their committed lengths and
  continues from the next input line. Batches are cut at fixed input-line
  boundaries, so a resumed run writes exactly the bytes an uninterrupted one
  would.

Output record (one JSON object per line, input order; floats rounded to 6
decimals, a missing figure is ``null``)::

    id, line, question, answer, label?      # label only when the row had one
    risk, flagged, risk_policy              # headline: the 'combined' verdict when there is one, else 'quco'
    verdicts: {policy: {probability, flagged, reasons: [{kind, message, subject, value}]}}
    question_entities / answer_entities: [{text, surface, label, start, end, new?, count, approx}]
    pairs: [{head, tail, count, approx}]    # co-occurrence within the window
    claims: [{head, relation, tail, kind, count, approx, head_span, tail_span, relation_span, ...}]
                                            # triplet mode only: a triplet's count is its head/tail
                                            # co-occurrence, a tuple's its head's frequency
    sentences: [{text, start, end, risk, flagged, verdicts, entities, pairs, claims}]
    confidence: {mean_logprob, min_prob, max_entropy, seq_logprob, n_tokens}   # with a model only
    context: {entities: [{text, supported}], supported_share}                 # when the row had context
    ...the row's other fields, unchanged (a name that clashes with one above gets an ``input_`` prefix)

Entity offsets (``start``/``end``) are character offsets in the question or
the answer (sentence entities: in the answer); so are claim spans (an
answer-span claim's head span: in the question).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quco.analyze import Analysis, AnalysisItem, Analyzer
from quco.audit.rows import AuditRow, BadRow, RawLine, parse_raw, read_lines
from quco.audit.verdicts import Judge
from quco.errors import BadInputError, QucoError
from quco.guard.trace import claim_dict
from quco.nlp.sentences import sentence_spans
from quco.prompts import qa_prompt
from quco.protocols import Extractor, Scorer
from quco.risk.features import EntityCount, PairCount
from quco.types import Confidence, Entity, Pair, Risk

log = logging.getLogger(__name__)

STATE_VERSION = 1
#: Output keys; a passed-through input field with one of these names gets an ``input_`` prefix.
OUTPUT_KEYS = frozenset(
    {
        "id", "line", "question", "answer", "label", "risk", "flagged", "risk_policy", "verdicts",
        "question_entities", "answer_entities", "pairs", "sentences", "confidence", "context", "claims",
    }
)  # fmt: skip


def side_paths(out: str | Path) -> tuple[Path, Path]:
    """The bad-row side file and the state file that go with an output file.

    ``audit.jsonl`` → ``audit.bad.jsonl`` and ``audit.state.json``; a name
    without ``.jsonl`` gets the suffixes appended.
    """
    p = Path(out)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(stem + ".bad.jsonl"), p.with_name(stem + ".state.json")


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
    bounded LRU memo. Thread-safe: :func:`run_audit` fills the memo for the
    next batch in a background thread (:meth:`Auditor.prefetch`) while the
    current batch's corpus queries run; the wrapped extractor is called by one
    thread at a time.

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
        verdicts = self.judge.judge(a.signals)
        head = self.judge.headline
        rec: dict[str, Any] = {"id": row.id, "line": row.line, "question": row.question, "answer": row.answer}
        if row.label is not None:
            rec["label"] = row.label
        top = verdicts[head]
        rec["risk"] = _num(top.probability)
        rec["flagged"] = bool(top.flagged)
        rec["risk_policy"] = head
        rec["verdicts"] = {k: _risk_dict(v) for k, v in verdicts.items()}
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
            sv = self.judge.judge(s.signals)
            sents.append(
                {
                    "text": s.text,
                    "start": s.start,
                    "end": s.end,
                    "risk": _num(sv[head].probability),
                    "flagged": bool(sv[head].flagged),
                    "verdicts": {k: _risk_dict(v) for k, v in sv.items()},
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


# ---------------------------------------------------------------------- files


@dataclass(frozen=True)
class AuditSummary:
    """What an audit run did.

    Attributes:
        out: the output file.
        bad_path: the side file of bad rows.
        lines: input lines consumed in all.
        audited: answers written to ``out`` in all.
        bad: bad rows in all.
        resumed_at: input lines already done when this run started (0: fresh).
        seconds: wall time of this run.
        audited_now: answers audited by this run.
    """

    out: Path
    bad_path: Path
    lines: int
    audited: int
    bad: int
    resumed_at: int
    seconds: float
    audited_now: int

    @property
    def answers_per_s(self) -> float:
        return self.audited_now / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _State:
    settings: dict[str, Any]
    input_path: str
    lines: int = 0
    in_offset: int = 0
    in_fingerprint: str = ""
    out_bytes: int = 0
    bad_bytes: int = 0
    audited: int = 0
    bad: int = 0
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "settings": self.settings,
            "input": {"path": self.input_path, "offset": self.in_offset, "fingerprint": self.in_fingerprint},
            "lines": self.lines,
            "out_bytes": self.out_bytes,
            "bad_bytes": self.bad_bytes,
            "audited": self.audited,
            "bad": self.bad,
            "done": self.done,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> _State:
        inp = d["input"]
        return cls(
            settings=dict(d["settings"]),
            input_path=str(inp["path"]),
            lines=int(d["lines"]),
            in_offset=int(inp["offset"]),
            in_fingerprint=str(inp["fingerprint"]),
            out_bytes=int(d["out_bytes"]),
            bad_bytes=int(d["bad_bytes"]),
            audited=int(d["audited"]),
            bad=int(d["bad"]),
            done=bool(d["done"]),
        )


def _fingerprint(f: Any, offset: int) -> str:
    """Hash of the first 64 KiB and the last 4 KiB of the consumed part of the input."""
    keep = f.tell()
    h = hashlib.sha256(str(offset).encode())
    f.seek(0)
    h.update(f.read(min(offset, 1 << 16)))
    tail = max(0, offset - 4096)
    f.seek(tail)
    h.update(f.read(offset - tail))
    f.seek(keep)
    return h.hexdigest()[:32]


def _write_state(path: Path, state: _State) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state.to_dict(), f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - platform without directory fsync
        pass


def _read_state(path: Path) -> _State | None:
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        if d.get("version") != STATE_VERSION:
            return None
        return _State.from_dict(d)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _dumps(rec: Mapping[str, Any]) -> bytes:
    return (json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode(
        "utf-8"
    )


def _commit(fh: Any, chunks: list[bytes]) -> int:
    if chunks:
        fh.write(b"".join(chunks))
    fh.flush()
    os.fsync(fh.fileno())
    return int(fh.tell())


def run_audit(
    input_path: str | Path,
    out_path: str | Path,
    auditor: Auditor,
    *,
    batch_size: int = 64,
    settings: Mapping[str, Any] | None = None,
    restart: bool = False,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> AuditSummary:
    """Audit a JSONL file into ``out_path``, resuming an interrupted run.

    Args:
        input_path: the input JSONL (see :mod:`quco.audit.rows`).
        out_path: the output JSONL; its side file and state file are
            :func:`side_paths`.
        auditor: the auditor.
        batch_size: input lines per batch (and per commit).
        settings: the options that change the output (index, model, window...);
            a resumed run must have the same ones.
        restart: ignore a previous run's state and start over.
        progress: show a tqdm progress bar (answers/s) on stderr.
        on_batch: called with the input lines consumed after each commit.

    Returns:
        An :class:`AuditSummary`.

    Raises:
        BadInputError: the input is missing, ``batch_size`` is not positive,
            or the state left by an earlier run does not match this input or
            these settings (pass ``restart=True``).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BadInputError(f"batch size must be a positive integer, got {batch_size!r}")
    src = Path(input_path)
    if not src.is_file():
        raise BadInputError(f"input file not found: {src}")
    out = Path(out_path)
    if out.resolve() == src.resolve():
        raise BadInputError("the output file must differ from the input file")
    out.parent.mkdir(parents=True, exist_ok=True)
    bad_path, state_path = side_paths(out)
    sett = {**dict(settings or {}), "batch_size": batch_size}
    sett = json.loads(json.dumps(sett, sort_keys=True, default=str))
    t0 = time.perf_counter()

    with open(src, "rb") as fin:
        state = None if restart else _read_state(state_path)
        resume = False
        if state is not None and out.exists():
            if state.settings != sett:
                raise BadInputError(
                    f"{out} was started with other options ({state_path}); "
                    "rerun with the same options, or with --restart to start over"
                )
            if (
                out.stat().st_size < state.out_bytes
                or _fingerprint(fin, state.in_offset) != state.in_fingerprint
            ):
                raise BadInputError(
                    f"{out} does not match its state file {state_path} or the input changed; "
                    "pass --restart to start over"
                )
            resume = True
        if state is None or not resume:
            state = _State(settings=sett, input_path=str(src), in_fingerprint=_fingerprint(fin, 0))
            _write_state(state_path, state)  # before OUT is truncated: a crash now restarts cleanly
        state.done = False
        resumed_at = state.lines if resume else 0

        with open(out, "r+b" if resume else "wb") as fout:
            fout.truncate(state.out_bytes)
            fout.seek(state.out_bytes)
            bad_fh = None
            if resume and bad_path.exists():
                bad_fh = open(bad_path, "r+b")  # noqa: SIM115 - closed below
                bad_fh.truncate(state.bad_bytes)
                bad_fh.seek(state.bad_bytes)
            elif bad_path.exists():
                bad_path.unlink()
            fin.seek(state.in_offset)
            bar = _progress(progress, state.audited)
            done_now = 0
            try:
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="quco-audit-prefetch") as pool:
                    # while batch k is analysed and committed, batch k+1's entities are extracted
                    pending: _Pending | None = None

                    def commit(p: _Pending) -> None:
                        nonlocal done_now, bad_fh
                        p.ready.result()
                        n, bad_fh = _run_batch(p, auditor, state, fin, fout, bad_fh, bad_path, state_path)
                        done_now += n
                        if bar is not None:
                            bar.update(n)
                        if on_batch is not None:
                            on_batch(state.lines)

                    for raws in _batches(read_lines(fin, start_line=state.lines), batch_size):
                        rows, bad = _parse_batch(raws)
                        nxt = _Pending(raws, rows, bad, pool.submit(auditor.prefetch, rows))
                        if pending is not None:
                            commit(pending)
                        pending = nxt
                    if pending is not None:
                        commit(pending)
                state.done = True
                _write_state(state_path, state)
            finally:
                if bar is not None:
                    bar.close()
                if bad_fh is not None:
                    bad_fh.close()
    return AuditSummary(
        out, bad_path, state.lines, state.audited, state.bad, resumed_at, time.perf_counter() - t0, done_now
    )


def _progress(enabled: bool, initial: int) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(initial=initial, unit=" answers", desc="audit", dynamic_ncols=True, mininterval=0.5)


@dataclass(frozen=True)
class _Pending:
    """A parsed batch waiting for its entity prefetch."""

    raws: list[RawLine]
    rows: list[AuditRow]
    bad: list[BadRow]
    ready: Future[None]


def _batches(lines: Iterator[RawLine], size: int) -> Iterator[list[RawLine]]:
    batch: list[RawLine] = []
    for raw in lines:
        batch.append(raw)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _parse_batch(raws: Sequence[RawLine]) -> tuple[list[AuditRow], list[BadRow]]:
    rows: list[AuditRow] = []
    bad: list[BadRow] = []
    for raw in raws:
        parsed = parse_raw(raw)
        if isinstance(parsed, AuditRow):
            rows.append(parsed)
        elif isinstance(parsed, BadRow):
            bad.append(parsed)
    return rows, bad


def _run_batch(
    batch: _Pending,
    auditor: Auditor,
    state: _State,
    fin: Any,
    fout: Any,
    bad_fh: Any,
    bad_path: Path,
    state_path: Path,
) -> tuple[int, Any]:
    """Audit one parsed batch and commit it; returns (answers written, bad-file handle)."""
    rows, bad = batch.rows, batch.bad
    good, more_bad = auditor.audit_or_isolate(rows)
    bad = sorted(bad + more_bad, key=lambda b: b.line)
    state.out_bytes = _commit(fout, [_dumps(rec) for _, rec in good])
    if bad:
        if bad_fh is None:
            bad_fh = open(bad_path, "ab")  # noqa: SIM115 - closed by run_audit
        state.bad_bytes = _commit(bad_fh, [_dumps(b.to_dict()) for b in bad])
    state.lines = batch.raws[-1].line
    state.in_offset = batch.raws[-1].end
    state.in_fingerprint = _fingerprint(fin, state.in_offset)
    state.audited += len(good)
    state.bad += len(bad)
    _write_state(state_path, state)
    return len(good), bad_fh
