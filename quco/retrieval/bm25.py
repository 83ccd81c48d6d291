"""BM25 retrieval with ``bm25s`` (QuCo-RAG found BM25 its best retriever).

Tokenization is bm25s's: lower-cased ``\\w\\w+`` words, English stop words
removed, and Snowball English stemming when PyStemmer is installed (it is
optional; the manifest records whether an index was built with it, and an index
built with stemming refuses to load without it, since its terms are stems).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from quco._deps import require
from quco.errors import CorruptIndexError, MissingDependencyError
from quco.retrieval.base import BaseRetriever
from quco.retrieval.collection import Passage

log = logging.getLogger(__name__)

STOPWORDS = "en"
STEMMER_NAME = "pystemmer-english"
SUBDIR = "bm25"


def load_stemmer(name: str | None = "auto") -> tuple[Callable[..., Any] | None, str | None]:
    """The stemming function and its name.

    Args:
        name: ``"auto"`` (PyStemmer's English stemmer when installed, else none),
            ``None`` (no stemming) or ``"pystemmer-english"`` (required).

    Returns:
        ``(stem_words, name)``, or ``(None, None)`` without stemming.

    Raises:
        MissingDependencyError: stemming is required but PyStemmer is missing.
    """
    if name is None:
        return None, None
    try:
        import Stemmer  # PyStemmer
    except ImportError as exc:
        if name == "auto":
            return None, None
        raise MissingDependencyError(
            "this BM25 index was built with stemming: pip install PyStemmer (or rebuild it)"
        ) from exc
    return Stemmer.Stemmer("english").stemWords, STEMMER_NAME


def _bm25s() -> Any:
    """Import bm25s; it sets its own logger to DEBUG at import, so put it back to WARNING."""
    bm25s = require("bm25s")
    logger = logging.getLogger("bm25s")
    if logger.level == logging.DEBUG:
        logger.setLevel(logging.WARNING)
    return bm25s


class BM25Retriever(BaseRetriever):
    """BM25 (Lucene variant) over a passage collection.

    Args:
        passages: the collection (indexed at construction).
        k1: term-frequency saturation.
        b: length normalization.
        stemmer: ``"auto"``, ``None`` or ``"pystemmer-english"`` (see :func:`load_stemmer`).
        show_progress: progress bars while indexing.

    Scores are BM25 scores (higher = more relevant); passages sharing no term
    with the query are never returned.
    """

    kind = "bm25"

    def __init__(
        self,
        passages: Sequence[Passage],
        *,
        k1: float = 1.5,
        b: float = 0.75,
        stemmer: str | None = "auto",
        show_progress: bool = False,
        _model: Any = None,
    ) -> None:
        super().__init__(passages)
        self.k1, self.b = k1, b
        self._stem, self.stemmer = load_stemmer(stemmer)
        if _model is not None:
            self._model = _model
            return
        bm25s = _bm25s()
        tokens = bm25s.tokenize(
            [p.text for p in self.passages],
            stopwords=STOPWORDS,
            stemmer=self._stem,
            show_progress=show_progress,
        )
        self._model = bm25s.BM25(k1=k1, b=b)
        self._model.index(tokens, show_progress=show_progress)

    @classmethod
    def from_texts(cls, texts: Sequence[str], **options: Any) -> BM25Retriever:
        """A retriever over plain strings (passage ids ``"0"``, ``"1"``...)."""
        return cls([Passage(str(i), t, {}) for i, t in enumerate(texts)], **options)

    def _tokens(self, query: str) -> list[str]:
        bm25s = _bm25s()
        toks = bm25s.tokenize(
            [query], stopwords=STOPWORDS, stemmer=self._stem, return_ids=False, show_progress=False
        )[0]
        vocab = self._model.vocab_dict
        return [t for t in toks if t and t in vocab]

    def _search(self, queries: list[str], fetch: int) -> list[list[tuple[int, float]]]:
        np = require("numpy")
        out: list[list[tuple[int, float]]] = []
        for q in queries:
            toks = self._tokens(q)
            if not toks:
                out.append([])
                continue
            scores = self._model.get_scores(toks)
            m = min(fetch, len(scores))
            top = np.argpartition(-scores, m - 1)[:m] if m < len(scores) else np.arange(len(scores))
            top = top[np.lexsort((top, -scores[top]))]  # score desc, row asc on ties
            out.append([(int(i), float(scores[i])) for i in top if scores[i] > 0])
        return out

    def save(self, directory: Path) -> dict[str, Any]:
        """Write bm25s's files under ``directory/bm25``; returns the manifest section."""
        self._model.save(str(directory / SUBDIR), show_progress=False)
        return {
            "k1": self.k1,
            "b": self.b,
            "method": "lucene",
            "stopwords": STOPWORDS,
            "stemmer": self.stemmer,
        }

    @classmethod
    def load(cls, directory: Path, passages: Sequence[Passage], section: dict[str, Any]) -> BM25Retriever:
        """Load a saved BM25 index.

        Raises:
            CorruptIndexError: bm25s's files are missing, damaged, or disagree
                with the passage count.
        """
        bm25s = _bm25s()
        sub = directory / SUBDIR
        if not sub.is_dir():
            raise CorruptIndexError(f"{sub} is missing: rebuild the retrieval index")
        try:
            model = bm25s.BM25.load(str(sub), show_progress=False)
        except (OSError, ValueError, KeyError) as exc:
            raise CorruptIndexError(
                f"{sub}: cannot load the BM25 index ({type(exc).__name__}): rebuild the retrieval index"
            ) from exc
        n_docs = int(model.scores.get("num_docs", -1))
        if n_docs != len(passages):
            raise CorruptIndexError(f"{sub}: {n_docs} indexed passages, {len(passages)} in passages.jsonl")
        return cls(
            passages,
            k1=float(section.get("k1", 1.5)),
            b=float(section.get("b", 0.75)),
            stemmer=section.get("stemmer"),
            _model=model,
        )
