"""Passage collections: corpus documents split into passages, and their manifest.

A retrieval index directory holds::

    DIR/quco-retrieval.json   manifest (kind, passage count, models, sources...)
    DIR/passages.jsonl        one passage per line: {"id", "text", "metadata"}
    DIR/bm25/                 bm25s's own files (kind bm25 or both)
    DIR/dense/index.faiss     FAISS index over normalized embeddings (kind dense or both)

Long documents are split into passages of about ``passage_words`` words at
sentence boundaries; a document no longer than that stays whole. Each passage
keeps its source document's metadata and gets a passage id
``"<document id>#<n>"``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from quco._version import __version__
from quco.errors import BadInputError, CorruptIndexError, IndexNotFoundError
from quco.types import Document

log = logging.getLogger(__name__)

MANIFEST = "quco-retrieval.json"
PASSAGES = "passages.jsonl"
FORMAT_VERSION = 1
DEFAULT_PASSAGE_WORDS = 100
KINDS = ("bm25", "dense")

_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")


@dataclass(frozen=True)
class Passage:
    """A retrievable unit of text.

    Attributes:
        id: unique passage id (``"<document id>#<n>"`` for built collections).
        text: the passage text.
        metadata: the source document's metadata plus ``passage_id``.
    """

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_document(self, score: float) -> Document:
        """This passage as a retrieved :class:`~quco.types.Document` with ``score``."""
        return Document(self.id, self.text, float(score), dict(self.metadata))

    def to_json(self) -> str:
        return json.dumps(
            {"id": self.id, "text": self.text, "metadata": dict(self.metadata)}, ensure_ascii=False
        )


# --------------------------------------------------------------------------- splitting


def split_sentences(text: str) -> list[str]:
    """Split ``text`` after ``.``, ``!`` or ``?`` followed by white space."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def split_passages(text: str, passage_words: int = DEFAULT_PASSAGE_WORDS) -> list[str]:
    """Split a document into passages of about ``passage_words`` words.

    Sentences are packed greedily up to ``passage_words`` words; a sentence
    longer than that is cut into word windows; a last passage shorter than a
    quarter of the target joins the one before it. A document of at most
    ``passage_words`` words is returned whole.

    Args:
        text: the document text.
        passage_words: target passage length in words (>= 1).

    Returns:
        The passages, in document order (empty for a blank text).

    Raises:
        BadInputError: ``passage_words`` is below 1.
    """
    if passage_words < 1:
        raise BadInputError(f"passage_words must be >= 1, got {passage_words}")
    words = text.split()
    if not words:
        return []
    if len(words) <= passage_words:
        return [" ".join(words)]
    chunks: list[list[str]] = []
    cur: list[str] = []
    for sentence in split_sentences(text):
        sw = sentence.split()
        if cur and len(cur) + len(sw) > passage_words:
            chunks.append(cur)
            cur = []
        if len(sw) > passage_words:
            for i in range(0, len(sw), passage_words):
                piece = sw[i : i + passage_words]
                if len(piece) == passage_words:
                    chunks.append(piece)
                else:
                    cur = piece
        else:
            cur.extend(sw)
    if cur:
        if chunks and len(cur) < max(1, passage_words // 4):
            chunks[-1].extend(cur)
        else:
            chunks.append(cur)
    return [" ".join(c) for c in chunks]


# --------------------------------------------------------------------------- reading corpora


def corpus_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and directories into the corpus files, as the index builder does.

    Raises:
        CorpusError: a path is missing or unsupported, or no file was found.
    """
    from quco.corpus.reader import resolve_paths

    return resolve_paths([Path(p) for p in paths])


def passages_from_corpus(
    paths: Iterable[str | os.PathLike[str]],
    *,
    passage_words: int = DEFAULT_PASSAGE_WORDS,
    max_bad_rows_logged: int = 5,
) -> Iterator[Passage]:
    """Read corpus files and split their documents into passages.

    Documents come from :func:`quco.corpus.reader.iter_documents` (JSONL with a
    ``text`` field, plain text blocks, ``.gz``/``.zst``, directories). Bad rows
    are skipped and logged as warnings with their file and line number.
    A document's id is its ``id`` field when it has one, else ``file:line``;
    passage ``n`` of it is ``"<document id>#<n>"``.

    Args:
        paths: files or directories.
        passage_words: target passage length in words.
        max_bad_rows_logged: bad rows logged one by one before a summary.

    Returns:
        An iterator of passages with unique ids.

    Raises:
        CorpusError: missing path, unsupported file, or no usable document.
    """
    from quco.corpus.reader import ReadReport, iter_documents

    report = ReadReport()
    seen: set[str] = set()
    for doc in iter_documents([Path(p) for p in paths], report):
        raw_id = doc.metadata.get("id")
        key = str(raw_id) if raw_id not in (None, "") else f"{Path(doc.path).name}:{doc.line}"
        meta = {**doc.metadata, "source": doc.metadata.get("source", doc.path), "line": doc.line}
        for n, text in enumerate(split_passages(doc.text, passage_words)):
            pid = f"{key}#{n}"
            if pid in seen:  # repeated document ids in the corpus
                j = 1
                while f"{pid}~{j}" in seen:
                    j += 1
                pid = f"{pid}~{j}"
            seen.add(pid)
            yield Passage(pid, text, {**meta, "passage_id": pid})
    for bad in report.bad_rows[:max_bad_rows_logged]:
        log.warning("skipped %s", bad)
    if len(report.bad_rows) > max_bad_rows_logged:
        log.warning("skipped %d bad rows in all", len(report.bad_rows))


# --------------------------------------------------------------------------- persistence


def write_passages(path: Path, passages: Iterable[Passage]) -> int:
    """Write passages as JSONL; returns how many."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for p in passages:
            f.write(p.to_json() + "\n")
            n += 1
    return n


def read_passages(path: Path) -> list[Passage]:
    """Read a ``passages.jsonl`` file.

    Raises:
        CorruptIndexError: the file is missing or a line is not a passage.
    """
    if not path.is_file():
        raise CorruptIndexError(f"{path} is missing: rebuild with `quco retrieval build`")
    out: list[Passage] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                out.append(Passage(str(row["id"]), str(row["text"]), row.get("metadata") or {}))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CorruptIndexError(f"{path}:{lineno}: not a passage ({type(exc).__name__})") from exc
    return out


def new_manifest(
    kinds: Sequence[str], n_passages: int, sources: Sequence[Path], passage_words: int
) -> dict[str, Any]:
    """The manifest common part; retrievers add their own sections (``bm25``, ``dense``)."""
    from quco.models import file_sha256

    return {
        "format": "quco-retrieval",
        "format_version": FORMAT_VERSION,
        "kind": kinds[0] if len(kinds) == 1 else "both",
        "kinds": list(kinds),
        "passages": n_passages,
        "passage_words": passage_words,
        "embedding_model": None,
        "dims": None,
        "faiss_index": None,
        "sources": [{"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in sources],
        "quco_version": __version__,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def write_manifest(directory: Path, manifest: Mapping[str, Any]) -> None:
    (directory / MANIFEST).write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Load and check a retrieval directory's manifest.

    Raises:
        IndexNotFoundError: no directory or no manifest.
        CorruptIndexError: the manifest is unreadable or incomplete.
    """
    d = Path(directory)
    path = d / MANIFEST
    if not d.is_dir() or not path.is_file():
        raise IndexNotFoundError(
            f"no retrieval index at {d} (no {MANIFEST}; build one with `quco retrieval build`)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptIndexError(f"{path} is not valid JSON: rebuild the retrieval index") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != "quco-retrieval":
        raise CorruptIndexError(f"{path} is not a quco retrieval manifest")
    kinds = manifest.get("kinds")
    if not isinstance(kinds, list) or not kinds or any(k not in KINDS for k in kinds):
        raise CorruptIndexError(f"{path}: bad 'kinds' {kinds!r}")
    if not isinstance(manifest.get("passages"), int):
        raise CorruptIndexError(f"{path}: missing passage count")
    return manifest
