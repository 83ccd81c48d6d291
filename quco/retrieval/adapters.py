"""Use any LangChain retriever (vector store, web search...) as a quco retriever.

``langchain_core`` is never imported here: the wrapped object only has to
answer ``invoke(query)`` (or the older ``get_relevant_documents(query)``) with
LangChain ``Document`` objects (``page_content``, ``metadata``, optional ``id``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from quco.errors import BackendUnavailableError, BadInputError
from quco.retrieval.base import check_k, clean_query, text_key
from quco.types import Document


class LangChainRetriever:
    """Adapter: LangChain ``BaseRetriever`` -> :class:`quco.protocols.Retriever`.

    LangChain retrievers choose their own result count (often a ``k`` in
    ``search_kwargs``); this adapter keeps the first ``k`` distinct texts.
    A document's score is its ``metadata["score"]`` when that is a number, else
    ``1 / rank`` (1.0, 0.5, 0.33... : order preserved, higher = better).

    Args:
        retriever: the LangChain retriever.
        config: optional ``RunnableConfig`` passed to ``invoke`` (callbacks, tags).
    """

    kind = "langchain"

    def __init__(self, retriever: Any, *, config: Any = None) -> None:
        if not (hasattr(retriever, "invoke") or hasattr(retriever, "get_relevant_documents")):
            raise BadInputError(f"{type(retriever).__name__} is not a LangChain retriever (no invoke method)")
        self.retriever = retriever
        self.config = config

    def _call(self, query: str) -> list[Any]:
        try:
            if hasattr(self.retriever, "invoke"):
                return list(self.retriever.invoke(query, config=self.config))
            return list(self.retriever.get_relevant_documents(query))
        except (ConnectionError, TimeoutError) as exc:
            raise BackendUnavailableError(f"LangChain retriever failed: {exc}") from exc

    def retrieve(self, query: str, k: int = 3) -> list[Document]:
        """The first ``k`` distinct documents the LangChain retriever returns for ``query``.

        Args:
            query: the query (blank -> ``[]``, truncated like other quco retrievers).
            k: number of documents wanted (>= 1).

        Returns:
            quco documents, best first.
        """
        k = check_k(k)
        q = clean_query(query)
        if not q:
            return []
        out: list[Document] = []
        seen: set[str] = set()
        for rank, doc in enumerate(self._call(q), 1):
            text = str(getattr(doc, "page_content", doc))
            key = text_key(text)
            if key in seen:
                continue
            seen.add(key)
            meta = dict(getattr(doc, "metadata", None) or {})
            raw = meta.get("score")
            score = float(raw) if isinstance(raw, int | float) and math.isfinite(raw) else 1.0 / rank
            doc_id = getattr(doc, "id", None) or meta.get("id") or str(rank - 1)
            out.append(Document(str(doc_id), text, score, meta))
            if len(out) == k:
                break
        return out

    def retrieve_many(self, queries: Sequence[str], k: int = 3) -> list[list[Document]]:
        """:meth:`retrieve` for each query, in order."""
        check_k(k)
        if isinstance(queries, str):
            raise BadInputError("retrieve_many takes a list of queries, not one string")
        return [self.retrieve(q, k) for q in queries]
