"""Metric functions against scikit-learn and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from quco.errors import BadInputError
from quco.evaluation import metrics as M


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    s = np.round(y * 0.8 + rng.normal(0, 1, 300), 1)  # rounded: many ties
    return y, s


def test_ranking_metrics_match_sklearn(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    assert M.roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))
    assert M.pr_auc(y, s) == pytest.approx(average_precision_score(y, s))
    p = 1 / (1 + np.exp(-s))
    assert M.brier(y, p) == pytest.approx(brier_score_loss(y, p))


def test_batch_forms_match_sklearn_per_resample(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    p = 1 / (1 + np.exp(-s))
    idx = M.resample_indices(y.size, 25, seed=0)
    Y, S, P = y[idx], s[idx], p[idx]
    auc, ap = M.batch_auc(Y, S), M.batch_ap(Y, S)
    r05, r10 = M.batch_recall_at_fpr(Y, S, 0.05), M.batch_recall_at_fpr(Y, S, 0.10)
    e, b = M.batch_ece(Y, P), M.batch_brier(Y, P)
    for i in range(idx.shape[0]):
        assert auc[i] == pytest.approx(roc_auc_score(Y[i], S[i]))
        assert ap[i] == pytest.approx(average_precision_score(Y[i], S[i]))
        assert r05[i] == pytest.approx(M.recall_at_fpr(Y[i], S[i], 0.05))
        assert r10[i] == pytest.approx(M.recall_at_fpr(Y[i], S[i], 0.10))
        assert e[i] == pytest.approx(M.ece(Y[i], P[i]))
        assert b[i] == pytest.approx(brier_score_loss(Y[i], P[i]))
    one = np.ones((1, 5), dtype=int)
    assert np.isnan(M.batch_auc(one, np.arange(5.0)[None, :])[0])


def test_bootstrap_interval_generic(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    iv = M.bootstrap_interval(y, s, M.roc_auc, n_boot=100, seed=2)
    assert iv.low < M.roc_auc(y, s) < iv.high
    assert M.bootstrap_interval(y, s, M.roc_auc, n_boot=100, seed=2) == iv


def test_ece_by_hand() -> None:
    # bins: [0,.1] -> {0.05 (y=0), 0.1 (y=1)}; (.7,.8] -> {0.75 (y=1), 0.8 (y=1)}; (.9,1] -> {0.95 (y=0)}
    y = [0, 1, 1, 1, 0]
    p = [0.05, 0.1, 0.75, 0.8, 0.95]
    expected = (2 * abs(0.5 - 0.075) + 2 * abs(1.0 - 0.775) + 1 * abs(0.0 - 0.95)) / 5
    assert M.ece(y, p) == pytest.approx(expected)
    assert M.ece([1, 0], [1.0, 0.0]) == 0.0  # perfect


def test_ece_agrees_with_calibration_curve(data: tuple[np.ndarray, np.ndarray]) -> None:
    from sklearn.calibration import calibration_curve

    y, s = data
    p = 1 / (1 + np.exp(-s))
    true, pred = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.bincount(M._bin_ids(p, 10), minlength=10)
    counts = counts[counts > 0]
    assert M.ece(y, p) == pytest.approx(float((counts * np.abs(true - pred)).sum() / y.size))


def test_recall_at_fpr_by_hand() -> None:
    # 10 negatives, 4 positives; scores descending: P N P P N N N N N N N P N N
    y = np.array([1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0])
    s = np.arange(14, 0, -1, dtype=float)
    # FPR 5%: no negative may pass (1/10 = 10% > 5%): only the first positive -> 1/4
    assert M.recall_at_fpr(y, s, 0.05) == pytest.approx(0.25)
    # FPR 10%: one negative allowed -> the first three positives -> 3/4
    assert M.recall_at_fpr(y, s, 0.10) == pytest.approx(0.75)


def test_coverage_and_missing_scores() -> None:
    y = [1, 0, 1, 0]
    s = [0.9, np.nan, np.nan, 0.1]
    out = M.evaluate_detector(y, s, n_boot=0)
    assert out["coverage"] == 0.5
    assert out["roc_auc_covered"] == 1.0
    # NaN -> mean of covered (0.5): ranks 0.9 > 0.5 = 0.5 > 0.1 -> AUC = (1 + 0.5*... ) by hand
    assert out["roc_auc"] == pytest.approx(roc_auc_score(y, [0.9, 0.5, 0.5, 0.1]))


def test_evaluate_detector_schema_and_ci(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, s = data
    p = 1 / (1 + np.exp(-s))
    out = M.evaluate_detector(y, p, n_boot=200, seed=1)
    for k in ("roc_auc", "pr_auc", "ece", "brier", "recall_at_fpr05", "recall_at_fpr10"):
        lo, hi = out["ci"][k]
        assert lo <= out[k] + 1e-9 and out[k] <= hi + 1e-9 or k == "ece"  # ECE's bootstrap is biased up
        assert 0.0 <= lo <= hi <= 1.0
    assert out["n"] == 300 and out["positives"] == int(y.sum())
    again = M.evaluate_detector(y, p, n_boot=200, seed=1)
    assert again["ci"] == out["ci"]  # seeded
    # a raw score outside [0, 1] gets no calibration metrics
    raw = M.evaluate_detector(y, s * 10, n_boot=0)
    assert raw["ece"] is None and raw["brier"] is None and raw["roc_auc"] == pytest.approx(roc_auc_score(y, s))


def test_one_class_and_bad_input() -> None:
    assert math.isnan(M.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    with pytest.raises(BadInputError):
        M.roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(BadInputError):
        M.roc_auc([0, 1], [0.1])
