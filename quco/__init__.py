"""quco: guard language-model answers against hallucination.

Two signals side by side: statistics of a pretraining-scale corpus (entity
frequency, exact co-occurrence from an infini-gram index) and the model's own
confidence. ``import quco`` is light: heavy dependencies (torch, transformers,
spaCy, faiss, infini-gram) are imported only by the functions that need them.
"""

from __future__ import annotations

from typing import Any

from quco._version import __version__
from quco.errors import (
    BackendUnavailableError,
    BadInputError,
    CorruptIndexError,
    IndexNotFoundError,
    MissingDependencyError,
    QucoError,
    TokenizerMismatchError,
)
from quco.types import (
    Claim,
    Confidence,
    Count,
    Document,
    Entity,
    Generation,
    Pair,
    Reason,
    Risk,
    TokenConfidence,
)

# name -> module that defines it, imported on first access
_LAZY = {
    "CorpusStats": "quco.corpus.base",
    "open_stats": "quco.corpus",
    "LocalStats": "quco.corpus.local",
    "RemoteStats": "quco.corpus.remote",
    "CachedStats": "quco.corpus.cache",
    "build_index": "quco.corpus.build",
    "EntityExtractor": "quco.nlp.entities",
    "ClaimParser": "quco.nlp.claims",
    "ConfidenceScorer": "quco.lm.confidence",
    "HFGenerator": "quco.lm.generator",
    "RiskScorer": "quco.risk.combined",
    "Guard": "quco.guard",
}

__all__ = [
    "__version__",
    "BackendUnavailableError",
    "BadInputError",
    "Claim",
    "Confidence",
    "CorruptIndexError",
    "Count",
    "Document",
    "Entity",
    "Generation",
    "IndexNotFoundError",
    "MissingDependencyError",
    "Pair",
    "QucoError",
    "Reason",
    "Risk",
    "TokenConfidence",
    "TokenizerMismatchError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'quco' has no attribute {name!r}")
