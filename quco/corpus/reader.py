"""Stream documents out of corpus files.

Inputs, by file name:

- ``*.jsonl`` / ``*.json``: one JSON object per line with a string ``text``
  field; the other fields are kept as the document's metadata.
- ``*.txt``: plain text, **one document per blank-line-separated block** (a
  paragraph block); its metadata is empty. A file with no blank line is one
  document.
- any of the above compressed as ``*.gz`` (gzip) or ``*.zst`` (zstandard).
- a directory: every file of a known type under it, recursively, in sorted
  order (other files are ignored).

Bad rows (malformed JSON or JSON nested too deeply, a row without a
non-empty string ``text``, bytes that are not UTF-8, a string holding a lone
surrogate escape such as ``"\ud800"``, which no UTF-8 file can hold) are
skipped and recorded as :class:`BadRow` with the file and 1-based line number,
so a partly bad corpus still yields its good rows. A file that cannot be read
to its end (a truncated or corrupt ``.gz``/``.zst``, a read error) keeps the
rows read before the damage and gets one :class:`BadRow` for the rest; reading
goes on with the next file. A missing path, an unsupported file type, or a
corpus that yields no usable document raises :class:`~quco.errors.CorpusError`.
"""

from __future__ import annotations

import gzip
import json
import logging
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from quco._deps import require
from quco.errors import CorpusError

log = logging.getLogger(__name__)

JSONL_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)
COMPRESSED_SUFFIXES = (".gz", ".zst")


@dataclass(frozen=True)
class SourceDoc:
    """One document read from a corpus file.

    Attributes:
        text: the document text.
        metadata: the row's other JSON fields (empty for text files).
        path: the file it came from.
        line: 1-based line number of the row (first line of a text block).
    """

    text: str
    metadata: dict[str, Any]
    path: str
    line: int


@dataclass(frozen=True)
class BadRow:
    """A skipped row: file, 1-based line number and why."""

    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class ReadReport:
    """What a read saw: the files read, documents yielded and bad rows skipped."""

    files: list[Path] = field(default_factory=list)
    documents: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)


def _kind(path: Path) -> str | None:
    """``"jsonl"``, ``"text"`` or None (unsupported) from the file name."""
    name = path.name.lower()
    for comp in COMPRESSED_SUFFIXES:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(TEXT_SUFFIXES):
        return "text"
    return None


def resolve_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories into the sorted list of corpus files.

    Args:
        paths: files or directories.

    Returns:
        The files to read, directories expanded recursively in sorted order.

    Raises:
        CorpusError: a path is missing, a file has an unsupported type, or
            no corpus file was found.
    """
    out: list[Path] = []
    given = [Path(p) for p in paths]
    if not given:
        raise CorpusError("no corpus path given")
    for p in given:
        if not p.exists():
            raise CorpusError(f"corpus path does not exist: {p}")
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and _kind(f) is not None)
            if not found:
                log.warning("no .jsonl/.txt(.gz/.zst) file under %s", p)
            out.extend(found)
        elif _kind(p) is None:
            raise CorpusError(
                f"unsupported corpus file type: {p} (expected .jsonl, .json or .txt, optionally .gz/.zst)"
            )
        else:
            out.append(p)
    if not out:
        raise CorpusError(f"no corpus file found in {', '.join(str(p) for p in given)}")
    return out


def _zstd_chunks(f: IO[bytes]) -> Iterator[bytes]:
    """Decompressed chunks of a zstandard file, frame after frame.

    Raises:
        EOFError: the file ends inside a frame (truncated), which the
            library's stream reader would pass over in silence.
    """
    zstd = require("zstandard")
    dctx = zstd.ZstdDecompressor()
    dobj, fed = dctx.decompressobj(), False
    while chunk := f.read(1 << 20):
        while chunk:
            out = dobj.decompress(chunk)
            fed = True
            if out:
                yield out
            if not dobj.eof:
                break
            chunk = dobj.unused_data  # the next frame starts here
            dobj, fed = dctx.decompressobj(), False
    if fed and not dobj.eof:
        raise EOFError("the zstandard stream ends inside a frame (truncated file)")


def _split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    rest = b""
    for chunk in chunks:
        parts = (rest + chunk).split(b"\n")
        rest = parts.pop()
        for p in parts:
            yield p + b"\n"
    if rest:
        yield rest


def _raw_lines(path: Path) -> Iterator[bytes]:
    name = path.name.lower()
    if name.endswith(".gz"):
        with gzip.open(path, "rb") as g:
            yield from g
    elif name.endswith(".zst"):
        with open(path, "rb") as f:
            yield from _split_lines(_zstd_chunks(f))
    else:
        with open(path, "rb") as f:
            yield from f


def _iter_lines(path: Path, report: ReadReport) -> Iterator[tuple[int, bytes]]:
    """Numbered lines of a file; a read that fails midway keeps the lines before and reports the rest."""
    line = 0
    try:
        for raw in _raw_lines(path):
            line += 1
            yield line, raw
    except (OSError, EOFError, zlib.error) as exc:
        reason = str(exc) or type(exc).__name__
    except Exception as exc:  # zstandard raises its own ZstdError
        if type(exc).__name__ != "ZstdError":
            raise
        reason = str(exc)
    else:
        return
    report.bad_rows.append(BadRow(str(path), line + 1, f"cannot read the rest of the file: {reason}"))
    log.warning("cannot read %s past line %d: %s", path, line, reason)


def _has_lone_surrogate(row: dict[str, Any]) -> bool:
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_jsonl(path: Path, report: ReadReport) -> Iterator[SourceDoc]:
    sp = str(path)
    for line, raw in _iter_lines(path, report):
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.bad_rows.append(BadRow(sp, line, f"not valid UTF-8 (byte {exc.start})"))
            continue
        if not s.strip():
            continue  # blank line, not a row
        try:
            row = json.loads(s)
        except json.JSONDecodeError as exc:
            report.bad_rows.append(BadRow(sp, line, f"malformed JSON ({exc.msg})"))
            continue
        except (ValueError, RecursionError) as exc:  # an int past Python's digit limit; deep nesting
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
            report.bad_rows.append(BadRow(sp, line, f"malformed JSON ({why})"))
            continue
        if not isinstance(row, dict):
            report.bad_rows.append(BadRow(sp, line, "row is not a JSON object"))
            continue
        if "text" not in row:
            report.bad_rows.append(BadRow(sp, line, "row has no 'text' field"))
            continue
        text = row.pop("text")
        if not isinstance(text, str):
            report.bad_rows.append(BadRow(sp, line, f"'text' is a {type(text).__name__}, not a string"))
            continue
        if not text.strip():
            report.bad_rows.append(BadRow(sp, line, "'text' is empty"))
            continue
        if "\\u" in s and (_has_lone_surrogate(row) or _has_lone_surrogate({"text": text})):
            report.bad_rows.append(BadRow(sp, line, "holds a lone surrogate escape (not valid Unicode)"))
            continue
        yield SourceDoc(text=text, metadata=row, path=sp, line=line)


def _read_text(path: Path, report: ReadReport) -> Iterator[SourceDoc]:
    sp = str(path)
    block: list[str] = []
    start = 0
    bad = False

    def flush() -> Iterator[SourceDoc]:
        text = "".join(block).strip("\n")
        if not bad and text.strip():
            yield SourceDoc(text=text, metadata={}, path=sp, line=start)

    for line, raw in _iter_lines(path, report):
        try:
            s = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            report.bad_rows.append(BadRow(sp, line, f"not valid UTF-8 (byte {exc.start}); block skipped"))
            if not block:
                start = line
            bad = True
            block.append("x\n")  # keep the block open so that it is skipped whole
            continue
        if not s.strip():
            yield from flush()
            block, bad = [], False
            continue
        if not block:
            start = line
        block.append(s)
    yield from flush()


def iter_documents(paths: Iterable[str | Path], report: ReadReport | None = None) -> Iterator[SourceDoc]:
    """Stream the usable documents of a corpus.

    Paths are resolved (and missing ones reported) before the first document
    is read. Bad rows are skipped and appended to ``report.bad_rows``.

    Args:
        paths: corpus files or directories.
        report: filled in while iterating (files, documents, bad rows).

    Returns:
        An iterator of :class:`SourceDoc`.

    Raises:
        CorpusError: missing path or unsupported file (at call time); a
            corpus with no usable document (at the end of iteration).
    """
    files = resolve_paths(paths)
    rep = report if report is not None else ReadReport()
    rep.files = list(files)
    return _iterate(files, rep)


def _iterate(files: list[Path], report: ReadReport) -> Iterator[SourceDoc]:
    for path in files:
        reader = _read_jsonl if _kind(path) == "jsonl" else _read_text
        for doc in reader(path, report):
            report.documents += 1
            yield doc
    if report.documents == 0:
        msg = f"no usable document in the corpus ({len(files)} file(s)"
        if report.bad_rows:
            msg += f", {len(report.bad_rows)} bad row(s); first: {report.bad_rows[0]}"
        raise CorpusError(msg + ")")
