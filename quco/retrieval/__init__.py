"""Retrievers: query -> ranked passages (best first).

- :class:`BM25Retriever` (bm25s; QuCo-RAG found BM25 its best retriever);
- :class:`DenseRetriever` (sentence-transformers + FAISS, on GPU when FAISS has one);
- :class:`LangChainRetriever` (any LangChain ``BaseRetriever``).

All satisfy :class:`quco.protocols.Retriever` and add ``retrieve_many``.
Build an index directory with :func:`build_retriever` (``quco retrieval build``)
and load it with :func:`open_retriever`. Importing this package is light: bm25s,
faiss, sentence-transformers and langchain are imported when first used.
"""

from __future__ import annotations

from quco.retrieval.adapters import LangChainRetriever
from quco.retrieval.base import MAX_QUERY_CHARS, BaseRetriever, build_retriever, open_retriever
from quco.retrieval.bm25 import BM25Retriever
from quco.retrieval.collection import Passage, passages_from_corpus, split_passages
from quco.retrieval.dense import HNSW_THRESHOLD, DenseRetriever

__all__ = [
    "HNSW_THRESHOLD",
    "MAX_QUERY_CHARS",
    "BM25Retriever",
    "BaseRetriever",
    "DenseRetriever",
    "LangChainRetriever",
    "Passage",
    "build_retriever",
    "open_retriever",
    "passages_from_corpus",
    "split_passages",
]
