"""Streaming, resumable audits: JSONL of answers in, one JSON line of evidence per answer out.

:class:`~quco.audit.records.Auditor` turns a batch of rows into output records;
:mod:`quco.audit.steps` holds the steps applied to each batch of input lines
(cut, parse, analyse, encode), the same under every engine. :func:`run_audit`
is the executor's side: it takes the encoded batches from an engine
(:class:`LocalEngine`, or :class:`quco.audit.ray_engine.RayEngine`), in input
order, and commits them:

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
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from quco.audit.records import OUTPUT_KEYS, Auditor, MemoExtractor, context_support
from quco.audit.steps import BatchResult, ParsedBatch, cut_batches, parse_batch, pipelined, span_of
from quco.errors import BadInputError, QucoError

__all__ = [
    "OUTPUT_KEYS", "AuditSummary", "Auditor", "Engine", "LocalEngine", "MemoExtractor", "context_support",
    "run_audit", "side_paths",
]  # fmt: skip

STATE_VERSION = 1


def side_paths(out: str | Path) -> tuple[Path, Path]:
    """The bad-row side file and the state file that go with an output file.

    ``audit.jsonl`` → ``audit.bad.jsonl`` and ``audit.state.json``; a name
    without ``.jsonl`` gets the suffixes appended.
    """
    p = Path(out)
    stem = p.name[: -len(".jsonl")] if p.name.endswith(".jsonl") else p.name
    return p.with_name(stem + ".bad.jsonl"), p.with_name(stem + ".state.json")


# --------------------------------------------------------------------- engines


class Engine(Protocol):
    """Where the steps of :mod:`quco.audit.steps` run: it yields each batch's result, in input order."""

    name: str

    def results(
        self, src: Path, fin: BinaryIO, start_line: int, start: int, batch_size: int
    ) -> Iterator[BatchResult]:
        """Results of the batches of ``src`` after ``start_line`` lines (byte ``start``), in order.

        Args:
            src: the input file.
            fin: ``src`` opened in binary mode (shared with the committer, which
                may seek it and puts the position back).
            start_line: input lines already committed.
            start: the byte offset just past them.
            batch_size: input lines per batch.
        """
        ...


class LocalEngine:
    """The steps in this process: cut, parse, then analyse with the next batch's extraction prefetched.

    Args:
        auditor: the auditor.
    """

    name = "local"

    def __init__(self, auditor: Auditor) -> None:
        self.auditor = auditor

    def results(
        self, src: Path, fin: BinaryIO, start_line: int, start: int, batch_size: int
    ) -> Iterator[BatchResult]:
        fin.seek(start)

        def parsed() -> Iterator[ParsedBatch]:
            pos = start
            for seq, raws in enumerate(cut_batches(fin, start_line, batch_size)):
                span = span_of(seq, raws, pos)
                pos = span.end
                yield parse_batch(span, raws)

        yield from pipelined(self.auditor, parsed())


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


def _commit(fh: Any, data: bytes) -> int:
    if data:
        fh.write(data)
    fh.flush()
    os.fsync(fh.fileno())
    return int(fh.tell())


def run_audit(
    input_path: str | Path,
    out_path: str | Path,
    auditor: Auditor | Engine,
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
        auditor: the auditor (run by a :class:`LocalEngine`), or an engine
            (:class:`LocalEngine`, :class:`quco.audit.ray_engine.RayEngine`).
            Every engine writes the same bytes, so a run interrupted under
            one can be resumed under another.
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
    engine: Engine = LocalEngine(auditor) if isinstance(auditor, Auditor) else auditor
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
            bar = _progress(progress, state.audited)
            done_now = 0
            try:
                results = engine.results(src, fin, state.lines, state.in_offset, batch_size)
                with closing(results):  # type: ignore[type-var]
                    for expected, res in enumerate(results):
                        if res.seq != expected:
                            raise QucoError(
                                f"the {engine.name} engine returned batch {res.seq} where {expected} was due"
                            )
                        bad_fh = _commit_batch(res, state, fin, fout, bad_fh, bad_path, state_path)
                        done_now += res.audited
                        if bar is not None:
                            bar.update(res.audited)
                        if on_batch is not None:
                            on_batch(state.lines)
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


def _commit_batch(
    res: BatchResult, state: _State, fin: Any, fout: Any, bad_fh: Any, bad_path: Path, state_path: Path
) -> Any:
    """Append one batch to the output and side files, then record the new state; returns the bad-file handle."""
    state.out_bytes = _commit(fout, res.records)
    if res.bad:
        if bad_fh is None:
            bad_fh = open(bad_path, "ab")  # noqa: SIM115 - closed by run_audit
        state.bad_bytes = _commit(bad_fh, res.bad)
    state.lines = res.last_line
    state.in_offset = res.end
    state.in_fingerprint = _fingerprint(fin, state.in_offset)
    state.audited += res.audited
    state.bad += res.n_bad
    _write_state(state_path, state)
    return bad_fh
