"""Detectors compared head to head: data side, confidence side, combined, rules, baselines.

Every detector gives each rated answer a risk score (**higher = riskier**) and
a probability of hallucination:

- fitted models (:class:`~quco.risk.combined.RiskScorer`, logistic over
  standardized features with missing indicators), each cross-validated with
  grouped by question (``StratifiedGroupKFold``) (:mod:`quco.evaluation.cv`):
  ``data`` (the data side's features in the claims mode:
  :func:`~quco.risk.features.data_features`; triplets: the claim features in
  place of the entity-pair ones), ``confidence`` (all CONFIDENCE_FEATURES),
  ``combined`` (both), and one single-feature model per aggregate
  (``mean_logprob``, ``min_prob``, ...). A single feature's ranking metrics
  (ROC-AUC, PR-AUC, recall) rate the raw feature with its a-priori sign
  (:data:`SIGN`), its ECE/Brier the cross-validated one-feature model, whose
  own ROC-AUC is ``cv_roc_auc`` (with one weak feature and few negatives,
  cross-validated ROC-AUC is biased below 0.5, so the raw figure is the fair one);
- rules: ``quco_rule`` (stage 1 or 2, :class:`~quco.risk.policies.QucoPolicy` in the claims mode),
  ``quco_stage1``, ``quco_stage2`` and ``flare`` (:class:`~quco.risk.policies.FlarePolicy`):
  ranking metrics from the rule's continuous score, ECE/Brier from its 0/1 decision;
- ``shipped``: the default model shipped with quco (fitted on rows 0–1999),
  rated as it is, only on rows it was not fitted on (2000 on);
- baselines: ``length`` (the answer's word count, longer = riskier; probability
  from a cross-validated logistic on it)
  and ``random`` (uniform random ranking, the training folds' base rate as
  probability).

The headline metric is ROC-AUC of ``combined``, ``data`` and ``confidence``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quco.analyze import AnalysisItem, Analyzer
from quco.evaluation.collect import EvalItem
from quco.evaluation.cv import N_FOLDS, SplitHook, cross_val_proba, group_folds
from quco.evaluation.devfit import DEV_SUFFIX
from quco.evaluation.metrics import evaluate_detector
from quco.risk.combined import RiskScorer, fit_logistic
from quco.risk.features import (
    ALL_FEATURES,
    CLAIM_FEATURES,
    CONFIDENCE_FEATURES,
    DATA_FEATURES,
    NGRAM_FEATURES,
    data_features,
)
from quco.risk.policies import FlarePolicy, QucoPolicy

#: the three cross-validated models compared on equal terms (entity-pair mode; see :func:`fitted_features`)
FITTED: dict[str, tuple[str, ...]] = {
    "data": DATA_FEATURES,
    "confidence": CONFIDENCE_FEATURES,
    "combined": ALL_FEATURES,
}
#: single aggregates, each as its own cross-validated one-feature model
SINGLES: tuple[str, ...] = ("mean_logprob", "min_prob", "max_entropy", "seq_logprob") + DATA_FEATURES + CLAIM_FEATURES


def fitted_features(claims: str = "pairs", *, ngrams: bool = False) -> dict[str, tuple[str, ...]]:
    """The features of ``data``, ``confidence`` and ``combined`` in a claims mode (``"pairs"``: :data:`FITTED`).

    ``ngrams``: the data side (and so ``combined``) also gets the n-gram
    novelty features (:data:`~quco.risk.features.NGRAM_FEATURES`; the
    ``ngram`` ablation).
    """
    data = data_features(claims) + (NGRAM_FEATURES if ngrams else ())
    return {"data": data, "confidence": CONFIDENCE_FEATURES, "combined": data + CONFIDENCE_FEATURES}
#: a-priori sign of each raw feature: +1 when a higher value means more risk
SIGN: dict[str, float] = {
    "q_ent_freq_min": -1, "q_ent_freq_mean": -1, "a_ent_freq_min": -1, "a_ent_freq_mean": -1,
    "pair_cooc_min": -1, "pair_cooc_max": -1, "zero_cooc": 1, "n_pairs": 1, "n_entities": 1,
    "any_approx": 1, "mean_logprob": -1, "min_prob": -1, "max_entropy": 1, "seq_logprob": -1,
    "length": 1, "claim_cooc_min": -1, "zero_claim": 1, "n_claims": 1, "tuple_head_min": -1,
    "ngram_novel_share": 1, "ngram_longest_match": -1,
}
RULES = ("quco_rule", "quco_stage1", "quco_stage2", "flare")
BASELINES = ("length", "random")


def analyze_items(
    items: Sequence[EvalItem], analyzer: Analyzer, *, batch: int = 64, progress: bool = True
) -> list[dict[str, float]]:
    """Feature dicts of the items' answers (answer level), analyzed in batches.

    Each dict also holds the answer's entity coverage share
    (:data:`~quco.evaluation.coverage_figs.ENTITY_COVERAGE`; no model uses it).
    """
    out: list[dict[str, float]] = []
    bar = None
    if progress and len(items) > batch:
        from tqdm import tqdm

        bar = tqdm(total=len(items), desc="analyzing answers", unit="ans", leave=False)
    from quco.evaluation.coverage_figs import ENTITY_COVERAGE
    from quco.risk.coverage import signals_coverage
    from quco.risk.features import feature_vector

    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        res = analyzer.analyze_many(
            [AnalysisItem(it.question, it.answer, it.confidence, it.prompt) for it in chunk]
        )
        out.extend({**feature_vector(a.signals), ENTITY_COVERAGE: signals_coverage(a.signals).share} for a in res)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def _matrix(feats: Sequence[Mapping[str, float]], names: Sequence[str]) -> np.ndarray:
    return np.asarray([[f.get(n, math.nan) for n in names] for f in feats], dtype=float).reshape(len(feats), len(names))


def word_length(answer: str) -> float:
    """Words in an answer (the length baseline's only feature)."""
    return float(len(answer.split()))


class _LengthModel:
    """Logistic regression on the answer's word count (standardized)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _LengthModel:
        self.mu_, self.sd_ = float(X.mean()), float(X.std()) or 1.0
        self.w_, self.b_ = fit_logistic((X - self.mu_) / self.sd_, np.asarray(y, dtype=float))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-(((X - self.mu_) / self.sd_) @ self.w_ + self.b_)))
        return np.column_stack([1 - p, p])


class _BaseRate:
    """Predicts the training folds' share of hallucinations for every row."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> _BaseRate:
        self.p_ = float(np.mean(y))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([np.full(len(X), 1 - self.p_), np.full(len(X), self.p_)])


@dataclass
class DetectorRun:
    """Scores of every detector on one set of rows (for metrics and figures)."""

    y: np.ndarray
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    probs: dict[str, np.ndarray | None] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    features: dict[str, tuple[str, ...]] = field(default_factory=dict)
    raw: dict[str, np.ndarray] = field(default_factory=dict)  # cross-validated p of one-feature models


def score_detectors(
    items: Sequence[EvalItem],
    feats: Sequence[Mapping[str, float]],
    *,
    n_splits: int = N_FOLDS,
    seed: int = 0,
    on_split: SplitHook | None = None,
    singles: Sequence[str] = SINGLES,
    scorer_options: Mapping[str, Any] | None = None,
    fixed_models: Mapping[str, RiskScorer] | None = None,
    claims: str = "pairs",
    ngrams: bool = False,
    rule: QucoPolicy | None = None,
) -> DetectorRun:
    """Cross-validated (or rule) scores of every detector.

    Args:
        items: rated answers (labels and groups).
        feats: their feature dicts, in the same order.
        n_splits: folds of the grouped cross-validation.
        seed: seed of the random baseline.
        on_split: fold hook passed to :func:`~quco.evaluation.cv.cross_val_proba`.
        singles: single features to rate as their own one-feature models.
        scorer_options: extra options of the fitted :class:`RiskScorer` models.
        fixed_models: already-fitted scorers rated as they are (no refit), e.g.
            the shipped default model on rows it was not fitted on.
        claims: the data side's claims mode (``"pairs"`` or ``"triplets"``):
            the ``data``/``combined`` features and the QuCo rule's stage 2.
        ngrams: fit ``data`` and ``combined`` with the n-gram novelty features too.
        rule: the QuCo rule with the thresholds in force for the index
            (:meth:`QucoPolicy.from_thresholds`); None: the policy's absolute defaults.
    """
    y = np.asarray([it.label for it in items], dtype=int)
    groups = [it.group for it in items]
    run = DetectorRun(y)
    opts = dict(scorer_options or {})
    folds = group_folds(groups, n_splits, y, seed)

    def fitted(name: str, names: Sequence[str], kind: str) -> None:
        X = _matrix(feats, names)
        p = cross_val_proba(
            X, y, groups, lambda: RiskScorer(features=list(names), **opts), on_split=on_split, folds=folds
        )
        covered = np.isfinite(X).any(axis=1)
        run.scores[name] = np.where(covered, p, np.nan) if not covered.all() else p
        run.probs[name] = p
        run.kinds[name] = kind
        run.features[name] = tuple(names)

    for name, names in fitted_features(claims, ngrams=ngrams).items():
        fitted(name, names, "fitted")
    for f in singles:
        if not np.isfinite(_matrix(feats, (f,))).any():
            continue  # never computed here (e.g. claim features without a claim extractor)
        fitted(f, (f,), "single")
        # ranking by the raw feature with its a-priori sign (no fitting, so no CV
        # artefact); the cross-validated one-feature model gives the probability
        run.raw[f] = run.probs[f]  # type: ignore[assignment]
        run.scores[f] = SIGN.get(f, 1.0) * _matrix(feats, (f,))[:, 0]

    for name, model in (fixed_models or {}).items():
        p = model.predict_proba(list(feats))[:, 1]
        run.scores[name] = p
        run.probs[name] = p
        run.kinds[name] = "dev-fitted" if name.endswith(DEV_SUFFIX) else "shipped"
        run.features[name] = tuple(model.feature_names_)

    quco = rule if rule is not None else QucoPolicy(claims=claims)
    flare = FlarePolicy()
    u = np.asarray([quco.stage_scores(f) for f in feats], dtype=float).reshape(len(feats), 2)
    rule_scores = {
        "quco_rule": np.asarray([quco.score_features(f) for f in feats], dtype=float),
        "quco_stage1": u[:, 0],
        "quco_stage2": u[:, 1],
        "flare": np.asarray([flare.score_features(f) for f in feats], dtype=float),
    }
    boundary = {"quco_rule": 0.5, "quco_stage1": 0.5, "quco_stage2": 0.5, "flare": 1.0 - flare.theta}
    for name, s in rule_scores.items():
        run.scores[name] = s
        run.probs[name] = np.where(np.isfinite(s), (s > boundary[name]).astype(float), 0.0)
        run.kinds[name] = "rule"

    L = np.asarray([[word_length(it.answer)] for it in items], dtype=float).reshape(len(items), 1)
    run.scores["length"] = L[:, 0]  # longer = riskier, as in HaluEval's given hallucinated answers
    run.probs["length"] = cross_val_proba(L, y, groups, _LengthModel, folds=folds)
    run.raw["length"] = run.probs["length"]  # type: ignore[assignment]
    run.kinds["length"] = "baseline"
    rng = np.random.default_rng(seed)
    run.scores["random"] = rng.random(len(items))
    run.probs["random"] = cross_val_proba(np.zeros((len(items), 1)), y, groups, _BaseRate, folds=folds)
    run.kinds["random"] = "baseline"
    return run


def metrics_of(run: DetectorRun, *, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Metrics of every detector of ``run`` (see :func:`quco.evaluation.metrics.evaluate_detector`)."""
    out: dict[str, dict[str, Any]] = {}
    for name, s in run.scores.items():
        m = evaluate_detector(run.y, s, run.probs.get(name), n_boot=n_boot, seed=seed)
        m["kind"] = run.kinds[name]
        if name in run.features:
            m["features"] = list(run.features[name])
        if name in run.raw:
            cv = evaluate_detector(run.y, run.raw[name], None, n_boot=0)
            m["cv_roc_auc"] = cv["roc_auc"]
            m["sign"] = "+" if SIGN.get(name, 1.0) > 0 else "-"
        out[name] = m
    return out


def accuracy(items: Sequence[EvalItem]) -> float | None:
    """Share of correct answers (label 0)."""
    return round(1.0 - float(np.mean([it.label for it in items])), 4) if items else None


Slicer = Callable[[EvalItem], bool]


def slices_for(protocol: str) -> dict[str, Slicer]:
    """The row subsets reported for a protocol; the first is the headline."""
    if protocol == "self":
        return {
            "pooled": lambda it: not it.comparison,
            "closed_book": lambda it: not it.comparison and it.condition == "closed_book",
            "with_passage": lambda it: not it.comparison and it.condition == "with_passage",
            "comparison": lambda it: it.comparison,
        }
    return {"all": lambda it: True}


SLICE_NOTES = {
    "pooled": "both conditions, comparison questions excluded (the headline)",
    "closed_book": "closed-book answers, comparison questions excluded",
    "with_passage": "answers given the row's knowledge passage, comparison questions excluded",
    "comparison": "comparison questions (gold answer named in the question), both conditions",
    "all": "every row",
}


def evaluate_slices(
    items: Sequence[EvalItem],
    feats: Sequence[Mapping[str, float]],
    protocol: str,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    n_splits: int = N_FOLDS,
    singles: Sequence[str] = SINGLES,
    fixed_models: Mapping[str, RiskScorer] | None = None,
    claims: str = "pairs",
    ngrams: bool = False,
    rule: QucoPolicy | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, DetectorRun]]:
    """Metrics per slice (each slice cross-validated on its own rows) and the runs behind them.

    ``ngrams``: fit ``data`` and ``combined`` with the n-gram novelty features too; ``rule``: the
    QuCo rule to rate (see :func:`score_detectors`).
    """
    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, DetectorRun] = {}
    for name, keep in slices_for(protocol).items():
        idx = [i for i, it in enumerate(items) if keep(it)]
        sub = [items[i] for i in idx]
        entry: dict[str, Any] = {
            "n": len(sub),
            "note": SLICE_NOTES.get(name, ""),
            "accuracy": accuracy(sub),
            "questions": len({it.group for it in sub}),
        }
        ys = {it.label for it in sub}
        if len({it.group for it in sub}) < 2 or len(ys) < 2:
            entry["detectors"] = {}
            entry["skipped"] = "fewer than two questions or only one label"
        else:
            run = score_detectors(sub, [feats[i] for i in idx], n_splits=n_splits, seed=seed, singles=singles,
                                  fixed_models=fixed_models, claims=claims, ngrams=ngrams, rule=rule)
            entry["detectors"] = metrics_of(run, n_boot=n_boot, seed=seed)
            runs[name] = run
        results[name] = entry
    return results, runs


def length_beside(detectors: dict[str, dict[str, Any]]) -> None:
    """Write the length baseline's ROC-AUC beside every detector (the ``paired`` protocol's rule)."""
    base = detectors.get("length", {}).get("roc_auc")
    for m in detectors.values():
        m["length_baseline_roc_auc"] = base
