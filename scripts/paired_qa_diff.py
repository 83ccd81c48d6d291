"""Paired bootstrap difference of one policy between two ``quco eval qa`` runs on the same rows.

Two runs that differ in one setting (e.g. ``--tau-entity``), the same rows and
policy: the per-question difference of EM, F1 and accuracy, with a 95%
bootstrap interval over questions. Prints the figures and saves JSON.

    python scripts/paired_qa_diff.py eval/results/dev/qa-tau-abs-1100-1299 \\
        eval/results/dev/qa-tau-rel-1100-1299 --policy quco --out eval/results/dev/qa-tau-rel-minus-abs.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _rows(folder: Path, policy: str) -> dict[int, dict]:
    out = {}
    with open(folder / "qa_rows.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d.get("policy") == policy:
                out[int(d["row"])] = d
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base", type=Path, help="the reference run's --out folder")
    ap.add_argument("other", type=Path, help="the compared run's --out folder (other - base)")
    ap.add_argument("--policy", default="quco")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    a, b = _rows(args.base, args.policy), _rows(args.other, args.policy)
    rows = sorted(set(a) & set(b))
    if not rows:
        sys.stderr.write(f"paired_qa_diff: no rows of policy {args.policy!r} in both runs\n")
        return 1
    rng = np.random.default_rng(args.seed)
    idx = rng.integers(0, len(rows), (args.n_boot, len(rows)))
    doc: dict = {"base": str(args.base), "other": str(args.other), "policy": args.policy, "n": len(rows),
                 "n_boot": args.n_boot, "seed": args.seed, "difference": "other - base", "metrics": {}}
    for k in ("em", "f1", "accuracy", "retrievals", "seconds"):
        d = np.array([float(b[r][k]) - float(a[r][k]) for r in rows])
        lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
        doc["metrics"][k] = {"mean": round(float(d.mean()), 4), "ci": [round(float(lo), 4), round(float(hi), 4)]}
        print(f"{k:10s} {d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]")
    args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    print(f"n = {len(rows)}; saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
