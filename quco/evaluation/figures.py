"""Figures of a detector evaluation: ROC curves and a reliability diagram (PNG and SVG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quco._deps import require
from quco.evaluation.detectors import DetectorRun
from quco.evaluation.metrics import ECE_BINS, fill_missing

ROC_DETECTORS = ("combined", "data", "confidence", "quco_rule", "flare", "length", "random")
RELIABILITY_DETECTORS = ("combined", "data", "confidence", "length")


def _pyplot() -> Any:
    mpl = require("matplotlib")
    mpl.use("Agg")
    return require("matplotlib.pyplot")


def _save(fig: Any, stem: Path) -> list[Path]:
    out = []
    for ext in ("png", "svg"):
        p = stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=130, bbox_inches="tight")
        out.append(p)
    return out


def roc_figure(run: DetectorRun, stem: Path, *, title: str = "ROC", names: Sequence[str] = ROC_DETECTORS) -> list[Path]:
    """ROC curves of ``names`` (those present in ``run``), saved as ``stem.png`` and ``stem.svg``."""
    plt = _pyplot()
    metrics = require("sklearn.metrics")
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    for name in names:
        if name not in run.scores or len(set(run.y.tolist())) < 2:
            continue
        s = fill_missing(run.scores[name])
        fpr, tpr, _ = metrics.roc_curve(run.y, s)
        auc = metrics.roc_auc_score(run.y, s)
        style = "--" if run.kinds.get(name) in ("baseline", "rule") else "-"
        ax.plot(fpr, tpr, style, label=f"{name} ({auc:.2f})", lw=1.6 if style == "-" else 1.1)
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (hallucinations caught)")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8, title="ROC-AUC", title_fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    paths = _save(fig, stem)
    plt.close(fig)
    return paths


def reliability_diagram(
    run: DetectorRun, stem: Path, *, title: str = "Reliability", names: Sequence[str] = RELIABILITY_DETECTORS
) -> list[Path]:
    """Observed hallucination rate against predicted probability (10 equal-width bins)."""
    plt = _pyplot()
    calibration = require("sklearn.calibration")
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, label="perfect")
    for name in names:
        p = run.probs.get(name)
        if p is None or len(set(run.y.tolist())) < 2:
            continue
        pa = np.clip(fill_missing(p), 0.0, 1.0)
        true, pred = calibration.calibration_curve(run.y, pa, n_bins=ECE_BINS, strategy="uniform")
        ax.plot(pred, true, "o-", ms=3.5, lw=1.2, label=name)
    ax.set_xlabel("predicted probability of hallucination")
    ax.set_ylabel("observed share hallucinated")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    paths = _save(fig, stem)
    plt.close(fig)
    return paths
