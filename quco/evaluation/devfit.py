"""Models and thresholds fitted on development rows, rated on the evaluation rows.

``quco eval detectors --fit-rows 0-299`` fits ``data``, ``confidence`` and
``combined`` once on the development rows (train on development, test on
evaluation) and rates them beside the cross-validated figures, which refit
on four fifths of the evaluation rows each fold. The inverse regularization
strength C of each model is chosen on the development rows alone (grouped
cross-validation, ROC-AUC over :data:`C_GRID`), so a small evaluation slice
never tunes anything.

The ``thresholds`` ablation rates the QuCo rule with four sets of
thresholds on the same rows: the paper's absolute counts (τ_entity 10³, τ_cooc
1, τ_tuple 20; the default until issue 11), the same scaled to the index's
size (``1e3@4e12``: 10³ per 4T tokens, τ_tuple too; τ_cooc stays 1, "never
co-occur"), today's default (τ_entity scaled, τ_cooc 1 and τ_tuple 20
absolute), and τ_entity/τ_cooc fitted on the development rows (Youden's J,
:func:`quco.risk.fit_thresholds.fit_thresholds`; τ_tuple stays 20).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from quco.evaluation.collect import EvalItem
from quco.evaluation.coverage_figs import flag_shares
from quco.evaluation.cv import cross_val_proba, group_folds
from quco.evaluation.metrics import evaluate_detector
from quco.risk.combined import RiskScorer
from quco.risk.policies import QucoPolicy

#: inverse L2 strengths tried on the development rows
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
#: suffix of the dev-fitted detectors' names (``combined_dev`` beside the cross-validated ``combined``)
DEV_SUFFIX = "_dev"
#: the index-relative variant of the thresholds ablation: the paper's counts per 4T tokens; τ_cooc stays 1
#: (the paper's "never co-occur": zero is zero at any corpus size)
RELATIVE_SPECS = ("1e3@4e12", "1", "20@4e12")


def _matrix(feats: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.asarray([[f.get(n, math.nan) for n in names] for f in feats], dtype=float).reshape(len(feats), len(names))


def fit_rows_of(items: Sequence[EvalItem], protocol: str) -> list[int]:
    """Indices of the development items a model is fitted on (``self``: comparison questions left out)."""
    return [i for i, it in enumerate(items) if not (protocol == "self" and it.comparison)]


def choose_C(feats: Sequence[Mapping[str, float]], y: Sequence[int], groups: Sequence[Any],
             names: Sequence[str], *, folds: int = 5, seed: int = 0) -> tuple[float, dict[str, float]]:
    """The C of :data:`C_GRID` with the best grouped cross-validated ROC-AUC on these rows (ties: the smaller C)."""
    X = _matrix(feats, names)
    ya = np.asarray(y, dtype=int)
    splits = group_folds(groups, folds, ya, seed)
    scores: dict[str, float] = {}
    best = (-1.0, C_GRID[0])
    for C in C_GRID:
        p = cross_val_proba(X, ya, groups, partial(RiskScorer, features=list(names), C=C), folds=splits)
        auc = evaluate_detector(ya, p, n_boot=0)["roc_auc"]
        scores[f"{C:g}"] = round(float(auc), 4) if auc is not None else math.nan
        if auc is not None and auc > best[0] + 1e-9:
            best = (float(auc), C)
    return best[1], scores


def fit_dev_models(items: Sequence[EvalItem], feats: Sequence[Mapping[str, float]], protocol: str,
                   features: Mapping[str, Sequence[str]], *, folds: int = 5, seed: int = 0,
                   provenance: Mapping[str, Any] | None = None) -> tuple[dict[str, RiskScorer], dict[str, Any]]:
    """Fit each of ``features`` (name -> feature names) on the development items.

    A model whose features are missing on every row (``confidence`` without a
    model) is skipped. Returns the fitted scorers, named ``<name>_dev``, and
    what was done (rows, chosen C, the C grid's development ROC-AUCs).
    """
    keep = fit_rows_of(items, protocol)
    fx = [feats[i] for i in keep]
    y = [items[i].label for i in keep]
    groups = [items[i].group for i in keep]
    info: dict[str, Any] = {"n": len(keep), "positives": int(sum(y)), "C_grid": list(C_GRID), "models": {}}
    out: dict[str, RiskScorer] = {}
    if len(set(y)) < 2 or len(set(groups)) < 2:
        info["skipped"] = "the development rows need both labels and two questions"
        return out, info
    for name, names in features.items():
        if not np.isfinite(_matrix(fx, names)).any():
            info["models"][name] = {"skipped": "its features are missing on every development row"}
            continue
        C, grid = choose_C(fx, y, groups, names, folds=folds, seed=seed)
        rs = RiskScorer(features=list(names), C=C)
        rs.fit(fx, y, provenance={**dict(provenance or {}), "C": C, "C_dev_cv_roc_auc": grid})
        out[name + DEV_SUFFIX] = rs
        info["models"][name] = {"C": C, "dev_cv_roc_auc_by_C": grid, "features": list(names)}
    return out, info


def _rule_figures(policy: QucoPolicy, items: Sequence[EvalItem], feats: Sequence[Mapping[str, float]],
                  n_boot: int, seed: int) -> dict[str, Any]:
    y = np.asarray([it.label for it in items], dtype=int)
    s = np.asarray([policy.score_features(f) for f in feats], dtype=float)
    m = evaluate_detector(y, s, None, n_boot=n_boot, seed=seed)
    return {
        "thresholds": {"tau_entity": policy.entity_threshold, "tau_cooc": policy.cooc_threshold,
                       "tau_tuple": policy.tuple_threshold},
        "roc_auc": m["roc_auc"],
        "ci": {"roc_auc": m["ci"].get("roc_auc")} if m.get("ci") else {},
        **flag_shares(y.tolist(), (s > 0.5).tolist()),  # NaN compares False: not flagged
    }


def thresholds_ablation(items: Sequence[EvalItem], feats: Sequence[Mapping[str, float]], *, claims: str,
                        tokens: int | None, dev: tuple[Sequence[EvalItem], Sequence[Mapping[str, float]]] | None,
                        protocol: str, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """The QuCo rule's ROC-AUC, flag rate, TPR and FPR with absolute, index-relative and dev-fitted thresholds."""
    from quco.risk.fit_thresholds import fit_thresholds
    from quco.risk.thresholds import ABSOLUTE_ENTITY, DEFAULT_COOC, DEFAULT_TUPLE, resolve

    out: dict[str, Any] = {}
    absolute = resolve(ABSOLUTE_ENTITY, DEFAULT_COOC, DEFAULT_TUPLE)
    variants = {"absolute": absolute}
    if tokens:
        variants["relative"] = resolve(*RELATIVE_SPECS, tokens=tokens)
        variants["default"] = resolve(tokens=tokens)  # τ_entity relative, τ_cooc and τ_tuple absolute
    for name, th in variants.items():
        out[name] = {"specs": list(th.specs), **({"index_tokens": tokens} if name != "absolute" else {}),
                     **_rule_figures(QucoPolicy.from_thresholds(th, claims=claims), items, feats, n_boot, seed)}
    if not tokens:
        out["relative"] = {"skipped": "the index's token count is unknown"}
    if dev is None:
        out["fitted"] = {"skipped": "no development rows (--fit-rows)"}
        return out
    d_items, d_feats = dev
    keep = fit_rows_of(d_items, protocol)
    fit = fit_thresholds([d_feats[i] for i in keep], [d_items[i].label for i in keep], claims=claims,
                         index_tokens=tokens)
    pol = QucoPolicy(fit["tau_entity"]["value"], fit["tau_cooc"]["value"], tuple_threshold=absolute.tuple_head,
                     claims=claims)
    out["fitted"] = {"specs": [fit["tau_entity"]["spec"], fit["tau_cooc"]["spec"], absolute.specs[2]],
                     "fit": fit, "dev_n": len(keep), **_rule_figures(pol, items, feats, n_boot, seed)}
    return out
