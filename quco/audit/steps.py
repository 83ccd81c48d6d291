"""The steps of an audit, the same functions under every engine.

An audit is one pipeline of steps; an engine only decides where they run
(STYLE.md: a distributed run is a different executor, not a different
program):

1. **cut**: :func:`cut_batches` reads the input from a line and cuts it into
   batches of ``batch_size`` input lines (a :class:`Span` says where a batch
   is in the file, so another process can read it again with
   :func:`read_span`);
2. **parse**: :func:`parse_batch` turns a batch's lines into rows and bad rows;
3. **analyse and record**: :func:`analyse_batch` audits the rows
   (:meth:`~quco.audit.records.Auditor.audit_or_isolate`) and encodes the
   records and bad rows as the bytes the output files get
   (:class:`BatchResult`); :func:`pipelined` runs it over a stream of parsed
   batches, extracting the next batch's entities while the current one is
   analysed;
4. **commit**: :func:`quco.audit.runner.run_audit` appends each
   :class:`BatchResult`, in input order, to the output and side files and
   records its state.

The local engine runs steps 1-3 in the calling process; the Ray engine
(:mod:`quco.audit.ray_engine`) cuts spans in the driver and runs steps 2-3 in
actors. Either way a batch's bytes depend only on its lines, so the output
files are byte-identical.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from quco.audit.records import Auditor
from quco.audit.rows import AuditRow, BadRow, RawLine, parse_raw, read_lines


@dataclass(frozen=True)
class Span:
    """Where one batch of input lines is in the input file.

    Attributes:
        seq: the batch's number in this run (0-based).
        first_line: input lines before the batch (its first line is ``first_line + 1``).
        last_line: the number of its last line.
        start: byte offset of its first line.
        end: byte offset just past its last line.
    """

    seq: int
    first_line: int
    last_line: int
    start: int
    end: int


@dataclass(frozen=True)
class ParsedBatch:
    """A batch of input lines, parsed.

    Attributes:
        span: where the lines are.
        rows: the valid rows, in input order.
        bad: the lines that cannot be used, in input order.
    """

    span: Span
    rows: list[AuditRow]
    bad: list[BadRow]


@dataclass(frozen=True)
class BatchResult:
    """What one batch adds to the output files, encoded.

    Attributes:
        seq: the batch's number in this run.
        last_line: the number of its last input line.
        end: input byte offset just past it.
        records: the JSON lines of its audited rows (``OUT``), in input order.
        bad: the JSON lines of its bad rows (the side file), in input order.
        audited: rows in ``records``.
        n_bad: rows in ``bad``.
    """

    seq: int
    last_line: int
    end: int
    records: bytes
    bad: bytes
    audited: int
    n_bad: int


def encode(rec: Mapping[str, Any]) -> bytes:
    """One output line: compact JSON, UTF-8, no NaN."""
    return (json.dumps(rec, ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n").encode(
        "utf-8"
    )


def cut_batches(fin: BinaryIO, start_line: int, batch_size: int) -> Iterator[list[RawLine]]:
    """Batches of ``batch_size`` lines from the current position of ``fin``.

    Args:
        fin: the input, opened in binary mode and positioned after ``start_line`` lines.
        start_line: lines consumed before the current position.
        batch_size: lines per batch (the last batch may be shorter).
    """
    batch: list[RawLine] = []
    for raw in read_lines(fin, start_line=start_line):
        batch.append(raw)
        if len(batch) >= batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def span_of(seq: int, raws: Sequence[RawLine], start: int) -> Span:
    """The :class:`Span` of a batch of lines that begins at byte ``start``."""
    return Span(seq, raws[0].line - 1, raws[-1].line, start, raws[-1].end)


def spans(fin: BinaryIO, start_line: int, start: int, batch_size: int) -> Iterator[Span]:
    """The spans of the batches :func:`cut_batches` would cut from byte ``start``."""
    fin.seek(start)
    pos = start
    for seq, raws in enumerate(cut_batches(fin, start_line, batch_size)):
        sp = span_of(seq, raws, pos)
        pos = sp.end
        yield sp


def read_span(path: str | Path, span: Span) -> list[RawLine]:
    """Read a batch's lines again (in another process), exactly as :func:`cut_batches` cut them.

    Raises:
        OSError: the file cannot be read.
        ValueError: the file no longer holds those lines (it changed).
    """
    raws: list[RawLine] = []
    with open(path, "rb") as f:
        f.seek(span.start)
        for raw in read_lines(f, start_line=span.first_line):
            raws.append(raw)
            if raw.line >= span.last_line:
                break
    if not raws or raws[-1].line != span.last_line or raws[-1].end != span.end:
        raise ValueError(
            f"{path} changed: lines {span.first_line + 1}-{span.last_line} are not where they were"
        )
    return raws


def parse_batch(span: Span, raws: Iterable[RawLine]) -> ParsedBatch:
    """Parse a batch's lines (blank lines are dropped)."""
    rows: list[AuditRow] = []
    bad: list[BadRow] = []
    for raw in raws:
        parsed = parse_raw(raw)
        if isinstance(parsed, AuditRow):
            rows.append(parsed)
        elif isinstance(parsed, BadRow):
            bad.append(parsed)
    return ParsedBatch(span, rows, bad)


def analyse_batch(auditor: Auditor, batch: ParsedBatch) -> BatchResult:
    """Audit a parsed batch and encode what it adds to the output files."""
    good, more_bad = auditor.audit_or_isolate(batch.rows)
    bad = sorted(batch.bad + more_bad, key=lambda b: b.line)
    return BatchResult(
        seq=batch.span.seq,
        last_line=batch.span.last_line,
        end=batch.span.end,
        records=b"".join(encode(rec) for _, rec in good),
        bad=b"".join(encode(b.to_dict()) for b in bad),
        audited=len(good),
        n_bad=len(bad),
    )


def pipelined(auditor: Auditor, batches: Iterable[ParsedBatch]) -> Iterator[BatchResult]:
    """:func:`analyse_batch` over a stream of batches, in order.

    While batch ``k`` is analysed, batch ``k + 1``'s entities are extracted in
    a background thread (:meth:`~quco.audit.records.Auditor.prefetch`; a
    no-op unless the extractor is a :class:`~quco.audit.records.MemoExtractor`).
    The input iterator is advanced one batch ahead.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="quco-audit-prefetch") as pool:
        pending: tuple[ParsedBatch, Future[None]] | None = None
        for batch in batches:
            nxt = (batch, pool.submit(auditor.prefetch, batch.rows))
            if pending is not None:
                pending[1].result()
                yield analyse_batch(auditor, pending[0])
            pending = nxt
        if pending is not None:
            pending[1].result()
            yield analyse_batch(auditor, pending[0])
