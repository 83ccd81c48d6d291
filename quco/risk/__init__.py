"""Risk scoring: features from both sides, rule policies, fitted combination."""

from __future__ import annotations

from quco.risk.features import (
    ALL_FEATURES,
    CONFIDENCE_FEATURES,
    DATA_FEATURES,
    EntityCount,
    PairCount,
    Signals,
    feature_vector,
)

__all__ = [
    "ALL_FEATURES",
    "CONFIDENCE_FEATURES",
    "DATA_FEATURES",
    "EntityCount",
    "PairCount",
    "Signals",
    "feature_vector",
]
