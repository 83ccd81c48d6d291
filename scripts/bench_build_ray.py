"""Benchmark ``quco index build``: the local engine against the Ray engine, on the demo corpus.

Builds, each a ``quco index build`` process, one after the other in one run:

- ``local``: the default local build (one shard of the whole corpus: ``make demo``'s build);
- ``local-shards``: the local build with ``--shard-size`` (several shards, one after the other);
- ``ray-1``, ``ray-2``: ``--engine ray --workers 1|2`` with the same ``--shard-size`` on a local
  Ray runtime (runtime start-up included): tokenization and suffix arrays of the shards as
  parallel Ray tasks, the manifest written once at the end.

Every index is checked to count a set of terms and pairs like the first one.
Wall time, the builds' own ``build_seconds``, and load averages are recorded
(other jobs share the two cores).

Usage::

    python scripts/bench_build_ray.py [--shard-size 2000000] [--work /tmp/quco-bench-build]

Saves ``eval/results/bench_build_ray.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

RESULTS = Path("eval/results/bench_build_ray.json")
TERMS = ["Paris", "France", "London", "Obama", "Einstein", "football", "the", "Zyxwvut Blorp"]
PAIRS = [("Paris", "France"), ("Obama", "President"), ("football", "club"), ("Einstein", "physics")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--shard-size", type=int, default=2_000_000, help="tokens per shard for the sharded builds"
    )
    ap.add_argument("--work", default="/tmp/quco-bench-build")
    ap.add_argument("--modes", default="local,local-shards,ray-1,ray-2")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    from quco.corpus import open_stats
    from quco.demo import DemoPaths, default_base, export_demo_corpus

    files = export_demo_corpus(DemoPaths(default_base()).corpus)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, QUCO_TORCH_THREADS="1")
    results: dict[str, Any] = {
        "benchmark": "quco index build, local engine vs Ray engine (local runtime)",
        "corpus": {"files": [str(f) for f in files], "bytes": sum(f.stat().st_size for f in files)},
        "shard_size": args.shard_size,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average_at_start": os.getloadavg(),
        "modes": {},
    }
    ref: tuple[Any, Any] | None = None
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        out = work / mode
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-m", "quco", "index", "build", *map(str, files), "--out", str(out), "--json"]
        if mode != "local":
            cmd += ["--shard-size", str(args.shard_size)]
        if mode.startswith("ray-"):
            cmd += ["--engine", "ray", "--workers", mode.split("-")[1]]
        print(f"== {mode}: {' '.join(cmd[3:6])} ...", file=sys.stderr, flush=True)
        load0 = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            results["modes"][mode] = {"error": f"exit {proc.returncode}"}
            continue
        m = json.loads(proc.stdout.strip().splitlines()[-1])
        with open_stats(str(out)) as st:
            got = (st.count_many(TERMS), st.cooccur_many(PAIRS, window=1000))
        ref = ref or got
        results["modes"][mode] = {
            "wall_s": round(wall, 2),
            "build_seconds": m.get("build_seconds", m.get("seconds")),
            "documents": m["documents"],
            "tokens": m["tokens"],
            "shards": len(m["shards"]),
            "index_bytes": sum(sum(s["files"].values()) for s in m["shards"]),
            "counts_equal_first": got == ref,
            "load_average_before": load0,
            "load_average_after": os.getloadavg(),
        }
        shutil.rmtree(out, ignore_errors=True)
    results["load_average_at_end"] = os.getloadavg()
    modes = results["modes"]
    base = modes.get("local", {}).get("wall_s")
    for v in modes.values():
        if base and "wall_s" in v:
            v["wall_ratio_to_local"] = round(v["wall_s"] / base, 3)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for k, v in modes.items():
        if "error" in v:
            print(f"{k:13s} failed: {v['error']}")
            continue
        print(f"{k:13s} {v['wall_s']:6.1f} s wall (x{v.get('wall_ratio_to_local')} of local), {v['shards']} shard(s), "
              f"{v['tokens']} tokens, counts equal: {v['counts_equal_first']}")  # fmt: skip
    print(f"load {results['load_average_at_start']} -> {results['load_average_at_end']}; saved {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
