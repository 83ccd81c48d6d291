"""Risk scoring: features from both sides, rule policies, fitted combination."""

from __future__ import annotations

from quco.risk.combined import CombinedPolicy, RiskScorer, load_default_scorer, resolve_features
from quco.risk.features import (
    ALL_FEATURES,
    CLAIM_FEATURES,
    CONFIDENCE_FEATURES,
    DATA_FEATURES,
    ClaimCount,
    EntityCount,
    PairCount,
    Signals,
    data_features,
    feature_vector,
)
from quco.risk.policies import FlarePolicy, QucoPolicy

__all__ = [
    "ALL_FEATURES",
    "CLAIM_FEATURES",
    "CONFIDENCE_FEATURES",
    "DATA_FEATURES",
    "ClaimCount",
    "CombinedPolicy",
    "EntityCount",
    "FlarePolicy",
    "PairCount",
    "QucoPolicy",
    "RiskScorer",
    "Signals",
    "data_features",
    "feature_vector",
    "load_default_scorer",
    "resolve_features",
]
