"""Metrics that rate a hallucination detector against labels.

Conventions (every function here):

- ``y`` holds labels with **1 = hallucinated (wrong)** and 0 = correct.
- ``score`` is the detector's output with **higher = more risk**. A detector
  whose natural figure points the other way (a log-probability) is negated
  before it gets here.
- ``prob`` is a probability of hallucination in [0, 1]; the calibration
  metrics (ECE, Brier) need one, the ranking metrics only need an order.
- ``NaN`` in a score means the detector had nothing to say for that row; the
  share of non-NaN rows is the detector's **coverage**. For the metrics, NaN
  scores are replaced by the mean of the covered scores (an uncovered row ranks
  in the middle), and ``roc_auc_covered`` rates the covered rows alone.

The headline number is **ROC-AUC** (greater is better, 0.5 = chance).
PR-AUC (average precision, greater is better; chance = the share of positives),
ECE (lower is better) and Brier score (lower is better) come beside it, with
recall at 5% and 10% false-positive rate (greater is better).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quco._deps import require
from quco.errors import BadInputError

#: number of equal-width bins on [0, 1] for ECE and reliability diagrams
ECE_BINS = 10
#: false-positive rates at which recall is reported
FPR_POINTS = (0.05, 0.10)


def _arrays(y: Sequence[float] | np.ndarray, s: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ya = np.asarray(y, dtype=float).ravel()
    sa = np.asarray(s, dtype=float).ravel()
    if ya.shape != sa.shape:
        raise BadInputError(f"labels and scores differ in length: {ya.size} vs {sa.size}")
    if ya.size and not np.isin(ya, (0.0, 1.0)).all():
        raise BadInputError("labels must be 0 (correct) or 1 (hallucinated)")
    return ya.astype(int), sa


def _two_classes(y: np.ndarray) -> bool:
    return bool(y.size) and 0 < int(y.sum()) < y.size


def roc_auc(y: Sequence[float] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Area under the ROC curve (sklearn's ``roc_auc_score``); NaN with one class only."""
    ya, sa = _arrays(y, score)
    if not _two_classes(ya):
        return math.nan
    return float(require("sklearn.metrics").roc_auc_score(ya, sa))


def pr_auc(y: Sequence[float] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Average precision (sklearn's ``average_precision_score``), positives = hallucinated."""
    ya, sa = _arrays(y, score)
    if not _two_classes(ya):
        return math.nan
    return float(require("sklearn.metrics").average_precision_score(ya, sa))


def brier(y: Sequence[float] | np.ndarray, prob: Sequence[float] | np.ndarray) -> float:
    """Brier score: mean squared difference between probability and label (lower is better)."""
    ya, pa = _arrays(y, prob)
    if not ya.size:
        return math.nan
    return float(require("sklearn.metrics").brier_score_loss(ya, np.clip(pa, 0.0, 1.0), pos_label=1))


def _bin_ids(prob: np.ndarray, n_bins: int) -> np.ndarray:
    # the same binning as sklearn's calibration_curve(strategy="uniform"):
    # bin 0 = [0, 1/n], bin k = (k/n, (k+1)/n]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.searchsorted(edges[1:-1], prob)


def ece(y: Sequence[float] | np.ndarray, prob: Sequence[float] | np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error with ``n_bins`` equal-width bins on [0, 1].

    ``ECE = sum_b (n_b / n) * |mean(y in b) - mean(prob in b)|`` over non-empty
    bins; bin 0 is ``[0, 0.1]`` and bin k is ``(k/10, (k+1)/10]`` (the binning
    of sklearn's ``calibration_curve(strategy="uniform")``). Lower is better.
    """
    ya, pa = _arrays(y, prob)
    if not ya.size:
        return math.nan
    pa = np.clip(pa, 0.0, 1.0)
    ids = _bin_ids(pa, n_bins)
    sum_p = np.bincount(ids, weights=pa, minlength=n_bins)
    sum_y = np.bincount(ids, weights=ya.astype(float), minlength=n_bins)
    return float(np.abs(sum_y - sum_p).sum() / ya.size)


def recall_at_fpr(y: Sequence[float] | np.ndarray, score: Sequence[float] | np.ndarray, fpr: float) -> float:
    """Recall (true-positive rate) at a false-positive rate of at most ``fpr``.

    The largest TPR among the thresholds of sklearn's ``roc_curve`` whose FPR
    does not exceed ``fpr`` (no interpolation between thresholds).
    """
    ya, sa = _arrays(y, score)
    if not _two_classes(ya):
        return math.nan
    f, t, _ = require("sklearn.metrics").roc_curve(ya, sa, drop_intermediate=False)
    ok = f <= fpr + 1e-12
    return float(t[ok].max()) if ok.any() else 0.0


def coverage(score: Sequence[float] | np.ndarray) -> float:
    """Share of rows where the score is not NaN (the detector had something to say)."""
    sa = np.asarray(score, dtype=float).ravel()
    return float(np.isfinite(sa).mean()) if sa.size else math.nan


def fill_missing(score: Sequence[float] | np.ndarray) -> np.ndarray:
    """NaN scores replaced by the mean of the covered ones (0.5 when none is covered)."""
    sa = np.asarray(score, dtype=float).ravel().copy()
    ok = np.isfinite(sa)
    sa[~ok] = float(sa[ok].mean()) if ok.any() else 0.5
    return sa


@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval."""

    low: float
    high: float

    def to_list(self) -> list[float | None]:
        return [_num(self.low), _num(self.high)]


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 6)


MetricFn = Callable[[np.ndarray, np.ndarray], float]


def bootstrap_interval(
    y: Sequence[float] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    metric: MetricFn,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of ``metric(y, score)`` over resampled rows.

    Resamples holding one class only are skipped for metrics that need both.

    Args:
        y: labels (1 = hallucinated).
        score: scores or probabilities (no NaN).
        metric: function of (labels, scores).
        n_boot: number of resamples.
        seed: seed of the resampling (same seed, same interval).
        level: coverage of the interval.

    Returns:
        The interval; NaN bounds when no resample gave a value.
    """
    ya, sa = _arrays(y, score)
    if not ya.size or n_boot <= 0:
        return Interval(math.nan, math.nan)
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n_boot):
        idx = rng.integers(0, ya.size, ya.size)
        v = metric(ya[idx], sa[idx])
        if math.isfinite(v):
            vals.append(v)
    return _percentiles(np.asarray(vals, dtype=float), level)


def _percentiles(vals: np.ndarray, level: float = 0.95) -> Interval:
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return Interval(math.nan, math.nan)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(vals, [a, 1.0 - a])
    return Interval(float(lo), float(hi))


# -- vectorized forms over a batch of resamples (one resample per row of a 2-D array) --
# Each equals the sklearn-based function above on every row (tested); they make
# 1000 bootstrap resamples of two dozen detectors cheap.


def batch_auc(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """ROC-AUC of each row (Mann-Whitney, ties count one half); NaN with one class."""
    ranks = require("scipy.stats").rankdata(S, axis=1)
    n1 = Y.sum(axis=1).astype(float)
    n0 = Y.shape[1] - n1
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = ((ranks * Y).sum(axis=1) - n1 * (n1 + 1) / 2.0) / (n1 * n0)
    auc[(n1 == 0) | (n0 == 0)] = np.nan
    return np.asarray(auc)


def _sorted_steps(Y: np.ndarray, S: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-S, axis=1, kind="stable")
    Ss = np.take_along_axis(S, order, axis=1)
    Ys = np.take_along_axis(Y, order, axis=1)
    last = np.ones_like(Ss, dtype=bool)
    last[:, :-1] = Ss[:, :-1] != Ss[:, 1:]  # the end of each run of tied scores = one threshold
    tp = np.cumsum(Ys, axis=1).astype(float)
    k = np.arange(1, S.shape[1] + 1, dtype=float)[None, :]
    return last, tp, k - tp


def batch_ap(Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """Average precision of each row, with sklearn's treatment of tied scores."""
    last, tp, fp = _sorted_steps(Y, S)
    n1 = tp[:, -1]
    tp_last = np.where(last, tp, 0.0)
    prev = np.zeros_like(tp)
    prev[:, 1:] = np.maximum.accumulate(tp_last, axis=1)[:, :-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ap = np.where(last, (tp - prev) * tp / (tp + fp), 0.0).sum(axis=1) / n1
    ap[(n1 == 0) | (n1 == Y.shape[1])] = np.nan
    return np.asarray(ap)


def batch_recall_at_fpr(Y: np.ndarray, S: np.ndarray, fpr: float) -> np.ndarray:
    """Largest TPR at a threshold whose FPR is at most ``fpr``, per row."""
    last, tp, fp = _sorted_steps(Y, S)
    n1 = tp[:, -1]
    n0 = fp[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = last & (fp / n0[:, None] <= fpr + 1e-12)
        r = np.where(ok, tp / n1[:, None], 0.0).max(axis=1)
    r[(n1 == 0) | (n0 == 0)] = np.nan
    return np.asarray(r)


def batch_ece(Y: np.ndarray, P: np.ndarray, n_bins: int = ECE_BINS) -> np.ndarray:
    """ECE of each row (see :func:`ece`)."""
    P = np.clip(P, 0.0, 1.0)
    ids = _bin_ids(P, n_bins) + n_bins * np.arange(P.shape[0])[:, None]
    diff = np.bincount(ids.ravel(), weights=(Y - P).ravel(), minlength=n_bins * P.shape[0])
    return np.asarray(np.abs(diff.reshape(P.shape[0], n_bins)).sum(axis=1) / P.shape[1])


def batch_brier(Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Brier score of each row."""
    return np.asarray(np.mean((np.clip(P, 0.0, 1.0) - Y) ** 2, axis=1))


BatchFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def resample_indices(n: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n) bootstrap row indices, seeded."""
    return np.random.default_rng(seed).integers(0, n, (n_boot, n))


def evaluate_detector(
    y: Sequence[float] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    prob: Sequence[float] | np.ndarray | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """All metrics of one detector, with bootstrap 95% intervals.

    Args:
        y: labels, 1 = hallucinated.
        score: risk score, higher = riskier; NaN = not covered.
        prob: probability of hallucination for ECE/Brier; defaults to ``score``
            when every covered score lies in [0, 1], else ECE/Brier are None.
        n_boot: bootstrap resamples (0 = no intervals).
        seed: bootstrap seed.

    Returns:
        A JSON-ready dict: ``n``, ``positives``, ``coverage``, ``roc_auc``
        (headline), ``pr_auc``, ``ece``, ``brier``, ``recall_at_fpr05``,
        ``recall_at_fpr10``, ``roc_auc_covered`` and ``ci`` (metric -> [low, high]).
    """
    with require("sklearn").config_context(skip_parameter_validation=True):
        return _evaluate(y, score, prob, n_boot=n_boot, seed=seed)


def _evaluate(
    y: Sequence[float] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    prob: Sequence[float] | np.ndarray | None,
    *,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    ya, sa = _arrays(y, score)
    cov = coverage(sa)
    covered = np.isfinite(sa)
    s_full = fill_missing(sa)
    if prob is None:
        ok = sa[covered]
        p_full = s_full if (ok.size and ok.min() >= 0.0 and ok.max() <= 1.0) else None
    else:
        _, p_arr = _arrays(ya, prob)
        p_full = fill_missing(p_arr)
    out: dict[str, Any] = {
        "n": int(ya.size),
        "positives": int(ya.sum()),
        "coverage": _num(cov),
        "roc_auc": _num(roc_auc(ya, s_full)),
        "pr_auc": _num(pr_auc(ya, s_full)),
        "ece": _num(ece(ya, p_full)) if p_full is not None else None,
        "brier": _num(brier(ya, p_full)) if p_full is not None else None,
        "recall_at_fpr05": _num(recall_at_fpr(ya, s_full, 0.05)),
        "recall_at_fpr10": _num(recall_at_fpr(ya, s_full, 0.10)),
        "roc_auc_covered": _num(roc_auc(ya[covered], sa[covered])) if covered.any() else None,
    }
    ci: dict[str, list[float | None]] = {}
    if n_boot > 0 and ya.size:
        idx = resample_indices(ya.size, n_boot, seed)
        Y = ya[idx]
        fns: dict[str, tuple[BatchFn, np.ndarray]] = {
            "roc_auc": (batch_auc, s_full),
            "pr_auc": (batch_ap, s_full),
            "recall_at_fpr05": (lambda Y_, S_: batch_recall_at_fpr(Y_, S_, 0.05), s_full),
            "recall_at_fpr10": (lambda Y_, S_: batch_recall_at_fpr(Y_, S_, 0.10), s_full),
        }
        if p_full is not None:
            fns["ece"] = (batch_ece, p_full)
            fns["brier"] = (batch_brier, p_full)
        for name, (fn, arr) in fns.items():
            ci[name] = _percentiles(fn(Y, arr[idx])).to_list()
    out["ci"] = ci
    return out
