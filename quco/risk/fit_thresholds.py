"""Fitting τ_entity and τ_cooc for an index on labelled development answers (``quco calibrate --fit-thresholds``).

Each rule flags an answer when its figure is below the threshold: stage 1 when
the mean count of the named question entities is (``q_ent_freq_mean``),
stage 2 when the least co-occurring triplet's head and tail count is
(``claim_cooc_min``; ``pair_cooc_min`` in entity-pair mode). An answer without
the figure (no entity, no triplet) is never flagged by that rule. The
candidates are every observed count (flag the answers below it) and one past
the largest (flag all); the chosen one maximizes Youden's J (TPR − FPR, ties to
the smaller threshold), or, with ``target_flag_rate``, gives the flag rate
closest to it (ties to the larger J). Label 1 = hallucinated.

The thresholds are saved in the risk model's JSON with the index's identity
(its manifest's sha256) and token count, and as a rate ``COUNT@TOKENS`` that
``--tau-entity`` / ``--tau-cooc`` accept: a threshold fitted on one index then
scales to another.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quco.errors import BadInputError


@dataclass(frozen=True)
class FittedThreshold:
    """A threshold chosen on labelled answers.

    Attributes:
        value: the count threshold (flag when the figure is below it).
        j: Youden's J at it (TPR − FPR).
        tpr: share of the hallucinated answers flagged.
        fpr: share of the correct answers flagged.
        flag_rate: share of all answers flagged.
        judged: answers that had the figure.
    """

    value: float
    j: float
    tpr: float
    fpr: float
    flag_rate: float
    judged: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def fit_threshold(
    counts: Sequence[float], labels: Sequence[int], *, target_flag_rate: float | None = None
) -> FittedThreshold:
    """The threshold on ``counts`` (NaN: not judged) that best separates ``labels``.

    Raises:
        BadInputError: both labels must occur; the target rate must be in [0, 1].
    """
    if target_flag_rate is not None and not 0.0 <= target_flag_rate <= 1.0:
        raise BadInputError(f"the target flag rate must be in [0, 1], not {target_flag_rate}")
    if len(counts) != len(labels):
        raise BadInputError(f"{len(counts)} counts but {len(labels)} labels")
    pos = sum(1 for y in labels if y == 1)
    neg = len(labels) - pos
    if not pos or not neg:
        raise BadInputError("fitting a threshold needs both labels (0 and 1) among the rows")
    known = sorted({c for c in counts if not math.isnan(c)})
    candidates = [*known, (known[-1] + 1.0) if known else 1.0]
    best: tuple[tuple[float, ...], FittedThreshold] | None = None
    for t in candidates:
        flag = [not math.isnan(c) and c < t for c in counts]
        tp = sum(1 for f, y in zip(flag, labels, strict=True) if f and y == 1)
        fp = sum(1 for f, y in zip(flag, labels, strict=True) if f and y != 1)
        tpr, fpr = tp / pos, fp / neg
        rate = (tp + fp) / len(labels)
        ft = FittedThreshold(float(t), tpr - fpr, tpr, fpr, rate, sum(not math.isnan(c) for c in counts))
        key = (-abs(rate - target_flag_rate), ft.j) if target_flag_rate is not None else (ft.j, -t)
        if best is None or key > best[0]:
            best = (key, ft)
    if best is None:  # pragma: no cover - there is always one candidate
        raise BadInputError("no threshold to choose from")
    return best[1]


def _count(log_value: float) -> float:
    """Back from the features' ``log10(1 + count)`` scale."""
    return math.nan if math.isnan(log_value) else round(10.0**log_value - 1.0, 6)


def fit_thresholds(
    feats: Sequence[Mapping[str, float]],
    labels: Sequence[int],
    *,
    claims: str = "triplets",
    target_flag_rate: float | None = None,
    index_tokens: int | None = None,
    index_manifest_sha256: str | None = None,
) -> dict[str, Any]:
    """τ_entity and τ_cooc fitted on feature dicts (:func:`quco.risk.features.feature_vector`).

    Returns:
        The JSON record saved in the risk model (``thresholds``): each
        threshold with its figures and its rate spec, the method, the index's
        identity and size.
    """
    stage2 = "claim_cooc_min" if claims == "triplets" else "pair_cooc_min"
    ent = fit_threshold([_count(f.get("q_ent_freq_mean", math.nan)) for f in feats], labels,
                        target_flag_rate=target_flag_rate)
    cooc = fit_threshold([_count(f.get(stage2, math.nan)) for f in feats], labels, target_flag_rate=target_flag_rate)

    def spec(t: FittedThreshold) -> str:
        return f"{t.value:g}@{index_tokens}" if index_tokens else f"{t.value:g}"

    return {
        "method": "target_flag_rate" if target_flag_rate is not None else "youden",
        "target_flag_rate": target_flag_rate,
        "claims": claims,
        "tau_entity": {**ent.to_dict(), "spec": spec(ent), "feature": "q_ent_freq_mean"},
        "tau_cooc": {**cooc.to_dict(), "spec": spec(cooc), "feature": stage2},
        "index_tokens": index_tokens,
        "index_manifest_sha256": index_manifest_sha256,
    }
