"""Benchmark ``quco audit`` under the local engine and the Ray engine (1 and 2 workers), data side only.

Input: HaluEval QA rows 0–N-1 (development rows), alternating the right and the
hallucinated answer, as ``scripts/bench_audit.py``. Index: the demo index.
Each mode runs in its own process, one after the other, in the same run:

- ``local``: :class:`~quco.audit.runner.LocalEngine` (as ``quco audit``);
- ``ray-1``, ``ray-2``: :class:`~quco.audit.ray_engine.RayEngine` on a local
  Ray runtime started for the run, with 1 and 2 actors.

Each mode runs twice: on the first ``--small`` rows (one batch) and on all
rows. Figures per mode:

- ``total_s``: wall time of the whole run, set-up included (local: loading
  spaCy and opening the index; Ray: starting the runtime and the actors, which
  load the same things), for each input size;
- ``marginal_ms_per_answer``: (total time on all rows - total time on the
  small input) / (difference in answers): what one more answer costs once
  everything is loaded (the Ray engine's actors run ahead of the ordered
  commits, so the time between commits does not show it);
- ``answers_per_s``: 1000 / marginal ms, the throughput after set-up;
- ``setup_s``: the small run's time minus its answers at the marginal cost;
- ``ray_overhead_ms_per_answer`` (Ray modes): marginal ms per answer minus the
  local engine's (what the actor pool, the object store and the ordered
  hand-back cost per answer; negative when the pool's parallelism wins). With
  2 workers on a 2-core machine shared with other jobs the pool cannot be 2x
  faster.

The outputs of all modes are compared byte for byte. Load averages are
recorded: other jobs share the cores.

Usage::

    python scripts/bench_ray_audit.py [--rows 2000] [--index indexes/built/index]

Saves ``eval/results/bench_ray_audit.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

RESULTS = Path("eval/results/bench_ray_audit.json")


def child(mode: str, input_path: Path, index: Path, batch_size: int, out_dir: Path) -> dict[str, Any]:
    """One mode in this process."""
    t0 = time.perf_counter()
    from quco.audit.runner import LocalEngine, run_audit
    from quco.audit.spec import AuditSpec
    from quco.audit.verdicts import load_combined

    spec = AuditSpec(index=str(index.resolve()), combined=load_combined(model=False))
    stats = None
    if mode == "local":
        auditor, stats = spec.build()
        engine: Any = LocalEngine(auditor)
    else:
        from quco.audit.ray_engine import RayEngine

        engine = RayEngine(spec, workers=int(mode.split("-")[1]))
    commits: list[tuple[float, int]] = []

    def on_batch(lines: int) -> None:
        commits.append((time.perf_counter(), lines))

    out = out_dir / f"{mode}.jsonl"
    summary = run_audit(input_path, out, engine, batch_size=batch_size, settings=spec.settings(),
                        progress=False, on_batch=on_batch)  # fmt: skip
    total = time.perf_counter() - t0
    if stats is not None:
        stats.close()
    return {
        "mode": mode,
        "answers": summary.audited,
        "bad_rows": summary.bad,
        "batches": len(commits),
        "total_s": round(total, 3),
        "first_commit_s": round(commits[0][0] - t0, 2),
        "output_sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "load_average_at_end": os.getloadavg(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--rows", type=int, default=2000, help="HaluEval QA rows 0..N-1 (development rows; default 2000)"
    )
    ap.add_argument("--index", default=None, help="corpus index (default: the demo index)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--small", type=int, default=64, help="rows of the small run (default 64: one batch)")
    ap.add_argument("--modes", default="local,ray-1,ray-2")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--out-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        res = child(args.child, Path(args.input), Path(args.index), args.batch_size, Path(args.out_dir))
        print(json.dumps(res))
        return 0
    if args.rows > 2000:
        raise SystemExit("rows 2000+ are for evaluation only: use at most 2000 development rows")

    from bench_audit import ensure_index, write_input

    index = ensure_index(args.index)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-audit-"))
    inputs = {
        "small": write_input(tmp / f"halueval_qa_0_{args.small - 1}.jsonl", args.small),
        "all": write_input(tmp / f"halueval_qa_0_{args.rows - 1}.jsonl", args.rows),
    }
    env = dict(os.environ, QUCO_TORCH_THREADS="1")
    results: dict[str, Any] = {
        "benchmark": "quco audit, local engine vs Ray engine (local runtime), data side only",
        "input": f"HaluEval QA rows 0-{args.rows - 1}, right answer on even rows, hallucinated on odd",
        "index": str(index),
        "batch_size": args.batch_size,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average_at_start": os.getloadavg(),
        "modes": {},
    }
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        runs = {}
        for size, inp in inputs.items():
            print(f"== {mode} ({size})", file=sys.stderr, flush=True)
            od = tmp / size
            od.mkdir(exist_ok=True)
            cmd = [sys.executable, __file__, "--child", mode, "--input", str(inp), "--index", str(index),
                   "--batch-size", str(args.batch_size), "--out-dir", str(od)]  # fmt: skip
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
            if proc.returncode != 0:
                runs[size] = {"error": f"exit {proc.returncode}"}
                continue
            runs[size] = json.loads(proc.stdout.strip().splitlines()[-1])
        entry: dict[str, Any] = {"runs": runs}
        small, big = runs.get("small", {}), runs.get("all", {})
        if "error" not in small and "error" not in big:
            dn = big["answers"] - small["answers"]
            marginal = (big["total_s"] - small["total_s"]) / dn
            entry.update(
                answers=big["answers"],
                total_s=big["total_s"],
                marginal_ms_per_answer=round(marginal * 1000, 3),
                answers_per_s=round(1 / marginal, 1) if marginal > 0 else None,
                setup_s=round(small["total_s"] - small["answers"] * marginal, 2),
            )
        else:
            entry["error"] = "a run failed"
        results["modes"][mode] = entry
    results["load_average_at_end"] = os.getloadavg()
    modes = results["modes"]
    ok = {k: v for k, v in modes.items() if "error" not in v}
    for size in inputs:
        shas = {v["runs"][size]["output_sha256"] for v in ok.values()}
        results[f"outputs_identical_{size}"] = len(shas) == 1
    local = ok.get("local")
    if local:
        for k, v in ok.items():
            if k == "local":
                continue
            v["ray_overhead_ms_per_answer"] = round(
                v["marginal_ms_per_answer"] - local["marginal_ms_per_answer"], 3
            )
            v["throughput_ratio_to_local"] = round(
                local["marginal_ms_per_answer"] / v["marginal_ms_per_answer"], 3
            )
            v["total_ratio_to_local"] = round(v["total_s"] / local["total_s"], 3)
            v["extra_setup_s"] = round(v["setup_s"] - local["setup_s"], 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for k, v in modes.items():
        if "error" in v:
            print(f"{k:6s} failed: {v['runs']}")
            continue
        extra = ""
        if "ray_overhead_ms_per_answer" in v:
            extra = (f"; vs local: {v['ray_overhead_ms_per_answer']:+.2f} ms/answer, throughput x{v['throughput_ratio_to_local']},"
                     f" set-up {v['extra_setup_s']:+.1f} s, total x{v['total_ratio_to_local']}")  # fmt: skip
        print(f"{k:6s} {v['answers']} answers in {v['total_s']:.1f} s: {v['marginal_ms_per_answer']:.2f} ms/answer "
              f"({v['answers_per_s']} answers/s) after {v['setup_s']:.1f} s set-up{extra}")  # fmt: skip
    print(f"outputs identical: {results.get('outputs_identical_all')} (small: {results.get('outputs_identical_small')}); "
          f"load {results['load_average_at_start']} -> {results['load_average_at_end']}")  # fmt: skip
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
