"""Risk scoring: features from both sides, rule policies, fitted combination."""

from __future__ import annotations

from quco.risk.combined import CombinedPolicy, RiskScorer, load_default_scorer, resolve_features
from quco.risk.features import (
    ALL_FEATURES,
    CONFIDENCE_FEATURES,
    DATA_FEATURES,
    EntityCount,
    PairCount,
    Signals,
    feature_vector,
)
from quco.risk.policies import FlarePolicy, QucoPolicy

__all__ = [
    "ALL_FEATURES",
    "CONFIDENCE_FEATURES",
    "DATA_FEATURES",
    "CombinedPolicy",
    "EntityCount",
    "FlarePolicy",
    "PairCount",
    "QucoPolicy",
    "RiskScorer",
    "Signals",
    "feature_vector",
    "load_default_scorer",
    "resolve_features",
]
