"""Dense retrieval: sentence-transformers embeddings searched with FAISS.

Embeddings are L2-normalized, so the inner product is the cosine similarity
(the score, in [-1, 1], higher = more similar).

Index type, by collection size:

- up to :data:`HNSW_THRESHOLD` passages (50,000): exact search, ``IndexFlatIP``;
- past it: ``IndexHNSWFlat`` (inner product, M=32, efConstruction=200,
  efSearch=max(128, 4 x fetched)), approximate but fast on CPU.

When FAISS sees a GPU (``faiss.get_num_gpus() > 0``, i.e. faiss-gpu is
installed) a flat index is searched on the GPU; HNSW has no GPU version and
stays on the CPU. The index is always saved in its CPU form.

Threads: FAISS (OpenMP) and torch use all cores by default. On an
oversubscribed CPU (more busy processes than cores) one thread each
(``faiss.omp_set_num_threads(1)``, ``torch.set_num_threads(1)``) was measured
10-30x faster per single query (see ``scripts/bench_retrieval.py --threads``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from quco._deps import require
from quco.errors import BadInputError, CorruptIndexError, ModelNotFoundError
from quco.models import DEFAULT_EMBEDDINGS, apply_torch_threads, embedding_model_path
from quco.retrieval.base import BaseRetriever
from quco.retrieval.collection import Passage

log = logging.getLogger(__name__)

#: collections larger than this get an HNSW index instead of exact search
HNSW_THRESHOLD = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
SUBDIR = "dense"
INDEX_FILE = "index.faiss"


@lru_cache(maxsize=4)
def load_encoder(model: str | None = None, device: str | None = None) -> Any:
    """A SentenceTransformer (cached per model and device), loaded offline.

    Args:
        model: name or local path; default the packaged all-MiniLM-L6-v2.
        device: ``"cpu"``, ``"cuda"``...; default sentence-transformers' choice.

    Raises:
        ModelNotFoundError: the model cannot be loaded.
    """
    st = require("sentence_transformers")
    apply_torch_threads()
    path = embedding_model_path(model)
    try:
        return st.SentenceTransformer(path, device=device)
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(
            f"cannot load embedding model {model or DEFAULT_EMBEDDINGS!r}: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def gpu_available() -> bool:
    """True when the installed FAISS can use a GPU."""
    faiss = require("faiss")
    try:
        return bool(faiss.get_num_gpus() > 0)
    except AttributeError:  # pragma: no cover - very old faiss
        return False


def make_index(vectors: Any, *, hnsw_threshold: int = HNSW_THRESHOLD) -> Any:
    """A CPU FAISS index over row vectors (normalized, float32), chosen by size.

    Args:
        vectors: ``(n, d)`` array.
        hnsw_threshold: above this many rows, an HNSW index is built.

    Returns:
        ``faiss.IndexFlatIP`` or ``faiss.IndexHNSWFlat`` (inner product) holding the rows.
    """
    faiss = require("faiss")
    np = require("numpy")
    x = np.ascontiguousarray(vectors, dtype="float32")
    if x.ndim != 2 or x.shape[0] == 0:
        raise BadInputError(f"need a non-empty (n, d) array of vectors, got shape {x.shape}")
    d = int(x.shape[1])
    if x.shape[0] > hnsw_threshold:
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        index = faiss.IndexFlatIP(d)
    index.add(x)
    return index


def _on_device(index: Any, use_gpu: bool | None) -> Any:
    faiss = require("faiss")
    if use_gpu is False or not isinstance(index, faiss.IndexFlat):
        return index
    if not gpu_available():
        return index
    res = faiss.StandardGpuResources()
    log.info("FAISS index on GPU 0")
    gpu = faiss.index_cpu_to_gpu(res, 0, index)
    gpu._quco_res = res  # keep the resources alive with the index
    return gpu


class DenseRetriever(BaseRetriever):
    """Cosine-similarity search over sentence-transformers embeddings.

    Build with :meth:`build` (encodes the passages) or :meth:`from_embeddings`
    (vectors you computed); load a saved one with :meth:`load`.

    Args:
        passages: the collection, row i embedded as vector i of ``index``.
        index: a FAISS index (CPU form) over normalized vectors.
        model: embedding model name or path used for queries.
        use_gpu: ``None`` uses a GPU when FAISS has one; ``False`` never does.
        batch_size: encoding batch size.
    """

    kind = "dense"

    def __init__(
        self,
        passages: Sequence[Passage],
        index: Any,
        *,
        model: str | None = None,
        use_gpu: bool | None = None,
        batch_size: int = 64,
    ) -> None:
        super().__init__(passages)
        if int(index.ntotal) != len(self.passages):
            raise BadInputError(f"the index holds {index.ntotal} vectors for {len(self.passages)} passages")
        self.model = model or DEFAULT_EMBEDDINGS
        self.batch_size = batch_size
        self.cpu_index = index
        self.index = _on_device(index, use_gpu)
        self.dims = int(index.d)

    # ----------------------------------------------------------------- construction

    @classmethod
    def build(
        cls,
        passages: Sequence[Passage],
        *,
        model: str | None = None,
        batch_size: int = 64,
        hnsw_threshold: int = HNSW_THRESHOLD,
        use_gpu: bool | None = None,
        show_progress: bool = True,
    ) -> DenseRetriever:
        """Encode ``passages`` (batched, progress bar) and index them."""
        if not passages:
            raise BadInputError("no passages to index")
        encoder = load_encoder(model)
        vecs = encoder.encode(
            [p.text for p in passages],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )
        return cls(
            passages,
            make_index(vecs, hnsw_threshold=hnsw_threshold),
            model=model,
            use_gpu=use_gpu,
            batch_size=batch_size,
        )

    @classmethod
    def from_embeddings(
        cls,
        passages: Sequence[Passage],
        embeddings: Any,
        *,
        model: str | None = None,
        hnsw_threshold: int = HNSW_THRESHOLD,
        use_gpu: bool | None = None,
    ) -> DenseRetriever:
        """Index precomputed embeddings (normalized here); ``model`` encodes queries."""
        np = require("numpy")
        x = np.asarray(embeddings, dtype="float32")
        norms = np.linalg.norm(x, axis=1, keepdims=True) if x.ndim == 2 else 1.0
        x = x / np.maximum(norms, 1e-12)
        return cls(passages, make_index(x, hnsw_threshold=hnsw_threshold), model=model, use_gpu=use_gpu)

    # ----------------------------------------------------------------- search

    @property
    def index_type(self) -> str:
        return type(self.cpu_index).__name__

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> Any:
        """Normalized float32 embeddings of ``texts`` with the query model, shape ``(n, dims)``."""
        encoder = load_encoder(None if self.model == DEFAULT_EMBEDDINGS else self.model)
        return encoder.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        )

    def search_vectors(self, vectors: Any, k: int) -> tuple[Any, Any]:
        """FAISS search: ``(scores, rows)`` arrays of shape ``(n, k)``; rows -1 past the end."""
        np = require("numpy")
        x = np.ascontiguousarray(vectors, dtype="float32")
        hnsw = getattr(self.index, "hnsw", None)
        if hnsw is not None:
            hnsw.efSearch = max(HNSW_EF_SEARCH, 4 * k)
        return self.index.search(x, k)

    def embeddings(self) -> Any:
        """The stored passage vectors, ``(n, dims)`` (reconstructed from the index)."""
        return self.cpu_index.reconstruct_n(0, self.cpu_index.ntotal)

    def _search(self, queries: list[str], fetch: int) -> list[list[tuple[int, float]]]:
        scores, rows = self.search_vectors(self.encode(queries), fetch)
        return [
            [(int(r), float(s)) for s, r in zip(srow, rrow, strict=True) if r >= 0]
            for srow, rrow in zip(scores, rows, strict=True)
        ]

    # ----------------------------------------------------------------- persistence

    def save(self, directory: Path) -> dict[str, Any]:
        """Write the FAISS index under ``directory/dense``; returns the manifest section."""
        faiss = require("faiss")
        sub = directory / SUBDIR
        sub.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.cpu_index, str(sub / INDEX_FILE))
        return {
            "embedding_model": self.model,
            "dims": self.dims,
            "faiss_index": self.index_type,
            "metric": "inner_product (normalized: cosine)",
            "file": f"{SUBDIR}/{INDEX_FILE}",
        }

    @classmethod
    def load(
        cls,
        directory: Path,
        passages: Sequence[Passage],
        section: dict[str, Any],
        *,
        use_gpu: bool | None = None,
    ) -> DenseRetriever:
        """Load a saved dense index.

        Raises:
            CorruptIndexError: the FAISS file is missing, unreadable, or holds
                a different number of vectors than there are passages.
        """
        faiss = require("faiss")
        path = directory / SUBDIR / INDEX_FILE
        if not path.is_file():
            raise CorruptIndexError(f"{path} is missing: rebuild the retrieval index")
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as exc:
            raise CorruptIndexError(f"{path}: unreadable FAISS index: rebuild the retrieval index") from exc
        if int(index.ntotal) != len(passages):
            raise CorruptIndexError(f"{path}: {index.ntotal} vectors for {len(passages)} passages")
        dims = section.get("dims")
        if dims is not None and int(dims) != int(index.d):
            raise CorruptIndexError(f"{path}: {index.d} dimensions, manifest says {dims}")
        return cls(passages, index, model=section.get("embedding_model"), use_gpu=use_gpu)
