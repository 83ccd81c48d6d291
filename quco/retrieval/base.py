"""What every quco retriever shares: input checks, de-duplication, build and open.

Input rules (all retrievers):

- ``k`` must be an integer >= 1, else :class:`~quco.errors.BadInputError`;
- a query that is not a string raises :class:`~quco.errors.BadInputError`;
- an empty or blank query returns ``[]`` (nothing to look for is not an error;
  a query made only of stop words also finds nothing in BM25);
- a query longer than :data:`MAX_QUERY_CHARS` characters is truncated.

Results are best first, and identical passage texts (after white-space
normalization) appear once, with the best score.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from quco.errors import BadInputError, CorpusError, CorruptIndexError
from quco.retrieval.collection import (
    DEFAULT_PASSAGE_WORDS,
    KINDS,
    MANIFEST,
    PASSAGES,
    Passage,
    corpus_files,
    new_manifest,
    passages_from_corpus,
    read_manifest,
    read_passages,
    write_manifest,
    write_passages,
)
from quco.types import Document

log = logging.getLogger(__name__)

#: queries are cut to this many characters before tokenization or encoding
MAX_QUERY_CHARS = 8192


def check_k(k: Any) -> int:
    """Validate a result count.

    Raises:
        BadInputError: ``k`` is not an integer >= 1.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise BadInputError(f"k must be an integer >= 1, got {k!r}")
    return k


def clean_query(query: Any) -> str:
    """Strip and truncate a query; ``""`` for a blank one.

    Raises:
        BadInputError: ``query`` is not a string.
    """
    if not isinstance(query, str):
        raise BadInputError(f"a query must be a string, got {type(query).__name__}")
    q = query.strip()
    if len(q) > MAX_QUERY_CHARS:
        log.debug("query of %d characters truncated to %d", len(q), MAX_QUERY_CHARS)
        q = q[:MAX_QUERY_CHARS]
    return q


def text_key(text: str) -> str:
    return " ".join(text.split())


class BaseRetriever(ABC):
    """A retriever over a fixed list of passages.

    Subclasses implement :meth:`_search` (raw hits by passage row) and
    :meth:`save`; this class handles input checks, de-duplication and batching.

    Attributes:
        kind: ``"bm25"`` or ``"dense"``.
        passages: the collection, in row order.
    """

    kind: str = ""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = list(passages)

    def __len__(self) -> int:
        return len(self.passages)

    @abstractmethod
    def _search(self, queries: list[str], fetch: int) -> list[list[tuple[int, float]]]:
        """Up to ``fetch`` (row, score) hits per non-empty query, best first."""

    @abstractmethod
    def save(self, directory: Path) -> dict[str, Any]:
        """Write this retriever's own files under ``directory``; returns its manifest fields."""

    def retrieve(self, query: str, k: int = 3) -> list[Document]:
        """The ``k`` best passages for ``query``, best first, without repeated texts.

        Args:
            query: the query text (blank -> ``[]``; truncated past MAX_QUERY_CHARS).
            k: number of documents wanted (>= 1).

        Returns:
            Up to ``k`` documents; fewer when the collection (or, for BM25, the
            set of passages sharing a term with the query) is smaller.
        """
        return self.retrieve_many([query], k)[0]

    def retrieve_many(self, queries: Sequence[str], k: int = 3) -> list[list[Document]]:
        """:meth:`retrieve` for many queries at once (batched search).

        Args:
            queries: query texts.
            k: number of documents wanted per query (>= 1).

        Returns:
            One list of documents per query, in query order.
        """
        k = check_k(k)
        if isinstance(queries, str):
            raise BadInputError("retrieve_many takes a list of queries, not one string")
        cleaned = [clean_query(q) for q in queries]
        out: list[list[Document]] = [[] for _ in cleaned]
        n = len(self.passages)
        todo = [i for i, q in enumerate(cleaned) if q]
        fetch = min(n, 2 * k + 8)
        while todo and n:
            hits = self._search([cleaned[i] for i in todo], fetch)
            retry: list[int] = []
            for i, h in zip(todo, hits, strict=True):
                docs = self._dedup(h, k)
                if len(docs) < k and len(h) >= fetch and fetch < n:
                    retry.append(i)
                else:
                    out[i] = docs
            todo = retry
            fetch = min(n, fetch * 4)
        return out

    def _dedup(self, hits: Iterable[tuple[int, float]], k: int) -> list[Document]:
        seen: set[str] = set()
        docs: list[Document] = []
        for row, score in hits:
            p = self.passages[row]
            key = text_key(p.text)
            if key in seen:
                continue
            seen.add(key)
            docs.append(p.to_document(score))
            if len(docs) == k:
                break
        return docs


# --------------------------------------------------------------------------- build / open


def _build_kind(
    kind: str, passages: list[Passage], *, embedding_model: str | None, show_progress: bool
) -> BaseRetriever:
    if kind == "bm25":
        from quco.retrieval.bm25 import BM25Retriever

        return BM25Retriever(passages, show_progress=show_progress)
    from quco.retrieval.dense import DenseRetriever

    return DenseRetriever.build(passages, model=embedding_model, show_progress=show_progress)


def _kinds(kind: str) -> tuple[str, ...]:
    if kind == "both":
        return KINDS
    if kind not in KINDS:
        raise BadInputError(f"unknown retriever kind {kind!r} (bm25, dense or both)")
    return (kind,)


def build_retriever(
    corpus: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    kind: str = "bm25",
    passage_words: int = DEFAULT_PASSAGE_WORDS,
    embedding_model: str | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Build a retrieval index directory from corpus files, atomically.

    The index is written into a temporary sibling directory and renamed to
    ``out`` when complete; an existing retrieval index at ``out`` is replaced.

    Args:
        corpus: corpus files or directories.
        out: the directory to create.
        kind: ``"bm25"``, ``"dense"`` or ``"both"``.
        passage_words: target passage length in words.
        embedding_model: sentence-transformers model name or path (dense; default
            the packaged all-MiniLM-L6-v2).
        show_progress: show progress bars on stderr.

    Returns:
        The manifest written.

    Raises:
        BadInputError: bad kind, or ``out`` is a non-empty directory that is not
            a retrieval index.
        CorpusError: a corpus path is missing or the corpus holds no text.
    """
    kinds = _kinds(kind)
    dest = Path(out)
    if dest.exists() and not (dest / MANIFEST).is_file() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadInputError(f"{dest} exists and is not a retrieval index; choose another --out")
    files = corpus_files(corpus)
    t0 = time.perf_counter()
    passages = list(passages_from_corpus(files, passage_words=passage_words))
    if not passages:
        raise CorpusError("the corpus holds no text to index")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_passages(tmp / PASSAGES, passages)
        manifest = new_manifest(kinds, len(passages), files, passage_words)
        for kd in kinds:
            retriever = _build_kind(
                kd, passages, embedding_model=embedding_model, show_progress=show_progress
            )
            section = retriever.save(tmp)
            manifest[kd] = section
            if kd == "dense":
                for key in ("embedding_model", "dims", "faiss_index"):
                    manifest[key] = section[key]
        manifest["build_seconds"] = round(time.perf_counter() - t0, 3)
        write_manifest(tmp, manifest)
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        if dest.exists():
            os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("built %s retrieval index: %d passages in %s", manifest["kind"], len(passages), dest)
    return manifest


def open_retriever(
    directory: str | os.PathLike[str], kind: str | None = None, **options: Any
) -> BaseRetriever:
    """Load a retriever from a directory made by :func:`build_retriever`.

    Args:
        directory: the retrieval index directory.
        kind: ``"bm25"`` or ``"dense"``; default the first kind built (BM25 for
            ``both``).
        **options: passed to the retriever's ``load`` (dense: ``use_gpu``).

    Returns:
        The retriever.

    Raises:
        IndexNotFoundError: no retrieval index at ``directory``.
        CorruptIndexError: its files are damaged or incomplete.
        BadInputError: ``kind`` was not built in this directory.
    """
    d = Path(directory)
    manifest = read_manifest(d)
    kind = kind or manifest["kinds"][0]
    if kind not in manifest["kinds"]:
        raise BadInputError(f"{d} holds no {kind} index (built: {', '.join(manifest['kinds'])})")
    passages = read_passages(d / PASSAGES)
    if len(passages) != manifest["passages"]:
        raise CorruptIndexError(
            f"{d}: {len(passages)} passages on disk, manifest says {manifest['passages']}: rebuild the index"
        )
    if kind == "bm25":
        from quco.retrieval.bm25 import BM25Retriever

        return BM25Retriever.load(d, passages, manifest.get("bm25") or {})
    from quco.retrieval.dense import DenseRetriever

    return DenseRetriever.load(d, passages, manifest.get("dense") or {}, **options)
