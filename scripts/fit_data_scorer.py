"""Fit the shipped data-only risk scorer (quco/data/combined-data.json), used by ``quco audit --no-model``.

Protocol ``paired`` on all HaluEval QA development rows 0-1999 (enforced by
``check_fit_rows``): each row's given right answer (label 0) and hallucinated
answer (label 1), no model. Features: the data side in claims mode
(``quco.risk.features.data_features("triplets")``) from the demo index,
window 1000. The inverse regularization C is chosen on these rows by grouped
cross-validation (``quco.evaluation.devfit.choose_C``: the two answers of a
row share a fold). Provenance (rows, index manifest sha256 and corpora, C and
its grid, the development CV ROC-AUC) is written into the model file.

    .venv/bin/python scripts/fit_data_scorer.py            # rows 0-1999, ~1-2 min

Rows 2000 and later are evaluation rows: rate the model there with
``quco eval detectors --protocol paired --rows 2000-2299 --no-model`` (its
``shipped`` detector).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from quco.datasets import check_fit_rows, parse_rows
from quco.demo import DemoPaths, default_base
from quco.evaluation.run import Components, DetectorEvalConfig, _features, collect
from quco.risk.features import data_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_default_scorer import fit_and_save  # noqa: E402

DATA_MODEL = "combined-data.json"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="0-1999", help="development rows A-B within 0-1999")
    ap.add_argument("--index", default=None)
    ap.add_argument("--window", type=int, default=1000)
    ap.add_argument("--work", default="eval/results/fit_data")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "quco" / "data" / DATA_MODEL))
    args = ap.parse_args()
    rows = parse_rows(args.rows)
    check_fit_rows(rows)
    index = args.index or str(DemoPaths(default_base()).index)
    t0 = time.perf_counter()
    cfg = DetectorEvalConfig(out=Path(args.work), protocol="paired", rows=rows, index=index, window=args.window,
                             use_model=False)
    comp = Components()
    comp.stats(index)  # fail early on a missing index
    items = collect(cfg, comp, None)
    feats = _features(cfg, comp, items, index, args.window, "window")
    fit_and_save(
        feats, [it.label for it in items], [it.group for it in items], data_features("triplets"),
        rows=rows, index=index, window=args.window, out=args.out, work=args.work, t0=t0,
        provenance={
            "protocol": "paired: each row's given right_answer (0) and hallucinated_answer (1), no model",
            "features": "data side, claims mode (triplets and tuples)",
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
