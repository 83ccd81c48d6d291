"""Input rows of an audit: one JSON object per line, read as bytes and checked one by one.

A row needs ``question`` and ``answer`` (strings). Optional fields: ``id`` (a
string or an integer; the 1-based line number when absent), ``context`` (the
documents retrieved for the answer: a string or a list of strings), ``label``
(1 = hallucinated, 0 = faithful; ``true``/``false`` accepted). Any other field
passes through to the output row.

A line that cannot be used — not UTF-8, not JSON (or nested too deeply, or an
integer past Python's digit limit), not an object, a string holding a lone
surrogate escape such as ``"\ud800"`` (it cannot be written back as UTF-8), a
missing or non-string ``question``/``answer``, a badly typed optional field,
or a line longer than :data:`MAX_LINE_BYTES` — becomes a :class:`BadRow` with its line
number and the reason; it never stops the audit. Blank lines are skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

#: Longest line accepted; a longer one is skipped (read in chunks, never held whole).
MAX_LINE_BYTES = 16 * 1024 * 1024

_KNOWN = frozenset({"id", "question", "answer", "context", "label"})


@dataclass(frozen=True)
class AuditRow:
    """One valid input row.

    Attributes:
        line: 1-based line number in the input file.
        id: the row's ``id``, or ``line`` when it had none.
        question: the question asked.
        answer: the answer to audit.
        context: retrieved documents, or ``None`` when the row had none.
        label: 1 = hallucinated, 0 = faithful, ``None`` when unlabelled.
        extra: the row's other fields, passed through to the output.
    """

    line: int
    id: str | int
    question: str
    answer: str
    context: tuple[str, ...] | None = None
    label: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BadRow:
    """A line that was skipped, with why.

    Attributes:
        line: 1-based line number in the input file.
        reason: what is wrong with it (one line).
        excerpt: the start of the line (invalid bytes replaced), for the side file.
    """

    line: int
    reason: str
    excerpt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "reason": self.reason, "excerpt": self.excerpt}


def _excerpt(raw: bytes, n: int = 200) -> str:
    text = raw[: n * 4].decode("utf-8", errors="replace").rstrip("\r\n")
    return text if len(text) <= n else text[:n] + "…"


class _NonStandardJSON(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise _NonStandardJSON(name)


def parse_line(raw: bytes, line: int) -> AuditRow | BadRow | None:
    """Parse one input line.

    Args:
        raw: the line's bytes (with or without its newline).
        line: its 1-based line number.

    Returns:
        An :class:`AuditRow`, a :class:`BadRow`, or ``None`` for a blank line.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadRow(line, f"not valid UTF-8 (byte {exc.start})", _excerpt(raw))
    if not text.strip():
        return None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except _NonStandardJSON as exc:
        return BadRow(line, f"malformed JSON: {exc} is not valid JSON", _excerpt(raw))
    except json.JSONDecodeError as exc:
        return BadRow(line, f"malformed JSON: {exc.msg} at column {exc.colno}", _excerpt(raw))
    except RecursionError:
        return BadRow(line, "malformed JSON: nested too deeply", _excerpt(raw))
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        return BadRow(line, f"malformed JSON: {str(exc).split(':')[0]}", _excerpt(raw))
    if not isinstance(obj, dict):
        return BadRow(line, f"a row must be a JSON object, got {type(obj).__name__}", _excerpt(raw))
    if "\\u" in text and _has_lone_surrogate(obj):
        return BadRow(line, "a string holds a lone surrogate escape (not valid Unicode)", _excerpt(raw))
    return _check(obj, line, raw)


def _has_lone_surrogate(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check(obj: dict[str, Any], line: int, raw: bytes) -> AuditRow | BadRow:
    for key in ("question", "answer"):
        if key not in obj or obj[key] is None:
            return BadRow(line, f"missing field {key!r}", _excerpt(raw))
        if not isinstance(obj[key], str):
            return BadRow(
                line, f"field {key!r} must be a string, got {type(obj[key]).__name__}", _excerpt(raw)
            )
    if not obj["question"].strip():
        return BadRow(line, "field 'question' is empty", _excerpt(raw))
    rid: Any = obj.get("id")
    if rid is None:
        rid = line
    elif isinstance(rid, bool) or not isinstance(rid, (str, int)):
        return BadRow(
            line, f"field 'id' must be a string or an integer, got {type(rid).__name__}", _excerpt(raw)
        )
    ctx = obj.get("context")
    context: tuple[str, ...] | None
    if ctx is None:
        context = None
    elif isinstance(ctx, str):
        context = (ctx,)
    elif isinstance(ctx, list) and all(isinstance(c, str) for c in ctx):
        context = tuple(ctx)
    else:
        return BadRow(line, "field 'context' must be a string or a list of strings", _excerpt(raw))
    lab = obj.get("label")
    label: int | None
    if lab is None:
        label = None
    elif isinstance(lab, bool):
        label = int(lab)
    elif isinstance(lab, (int, float)) and lab in (0, 1):
        label = int(lab)
    else:
        return BadRow(line, f"field 'label' must be 0 or 1, got {lab!r}"[:120], _excerpt(raw))
    extra = {k: v for k, v in obj.items() if k not in _KNOWN}
    return AuditRow(line, rid, obj["question"], obj["answer"], context, label, extra)


@dataclass(frozen=True)
class RawLine:
    """One line read from the input: its number, bytes and the offset just past it."""

    line: int
    data: bytes
    end: int
    too_long: bool = False


def read_lines(f: BinaryIO, *, start_line: int = 0, max_bytes: int = MAX_LINE_BYTES) -> Iterator[RawLine]:
    """Lines of a binary file from its current position, in constant memory.

    Args:
        f: a file opened in binary mode, positioned at the start of line
            ``start_line + 1``.
        start_line: lines already consumed before the current position.
        max_bytes: a longer line is skipped in chunks and reported ``too_long``
            (with only its first ``max_bytes`` kept).

    Yields:
        :class:`RawLine` objects, in order.
    """
    line = start_line
    pos = f.tell()
    while True:
        data = f.readline(max_bytes + 1)
        if not data:
            return
        line += 1
        pos += len(data)
        too_long = False
        if len(data) > max_bytes and not data.endswith(b"\n"):
            too_long = True
            while True:  # drain the rest of the line without keeping it
                chunk = f.readline(1 << 20)
                pos += len(chunk)
                if not chunk or chunk.endswith(b"\n"):
                    break
        yield RawLine(line, data, pos, too_long)


def parse_raw(raw: RawLine) -> AuditRow | BadRow | None:
    """:func:`parse_line` for a :class:`RawLine` (a too-long line is a :class:`BadRow`)."""
    if raw.too_long:
        return BadRow(raw.line, "line too long (skipped unread)", _excerpt(raw.data))
    return parse_line(raw.data, raw.line)
