"""Benchmark a corpus split over three ``quco serve`` processes against the same corpus in one index.

The demo corpus (``quco demo``'s files) is split by documents into three
indexes (``build_parts(..., parts=3)``, kept under ``--work``); the whole
corpus is the demo index. Configurations, each with fresh servers (so fresh
caches), asked the same queries in the same order:

- ``local``: the single index in this process (``LocalStats``);
- ``one_server``: the single index behind one ``quco serve`` (``RemoteStats``);
- ``three_shards``: the three parts behind three ``quco serve`` processes
  (``ShardedStats``: the three asked in parallel, answers summed), with each
  shard's own latency timed inside the fan-out.

Queries: the head/tail pairs the audit asks for the first ``--rows`` HaluEval QA
development rows (entities by the spaCy extractor, pairs by its ``pairs``),
each asked once (co-occurrence within 1,000 tokens), then the same for their
entities' counts. Figures: p50/p99 in ms; for the fan-out, the slowest shard
of each query and what the fan-out adds to it (thread hand-off, summing); and
a check of the model used in docs/scale.md: a fan-out over ``n`` shards
answers when its slowest shard does, so its p50/p99 are about the per-shard
latency's quantiles ``0.5 ** (1/n)`` and ``0.99 ** (1/n)`` plus the measured
overhead. Every sharded answer is compared with the single index's.

Usage::

    python scripts/bench_shards.py [--rows 300] [--work /tmp/quco-bench-shards]

Saves ``eval/results/bench_shards.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.types import Count

RESULTS = Path("eval/results/bench_shards.json")


def pct(xs: Sequence[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs), q)), 3) if len(xs) else float("nan")


class TimedShard(CorpusStats):
    """A shard backend that records how long each of its calls took (ms), per thread-safe list."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.ms: list[float] = []
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:  # url, index, health, manifest...
        return getattr(self.inner, name)

    def _timed(self, fn: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn()
        finally:
            with self._lock:
                self.ms.append((time.perf_counter() - t0) * 1000)

    def count(self, term: str) -> Count:
        return self._timed(lambda: self.inner.count(term))  # type: ignore[no-any-return]

    def cooccur(
        self, a: str, b: str, *, window: int | None = DEFAULT_WINDOW, mode: CoocMode = "window"
    ) -> Count:
        return self._timed(lambda: self.inner.cooccur(a, b, window=window, mode=mode))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.inner.close()


def serve(dirs: list[Path]) -> tuple[list[subprocess.Popen[str]], list[str]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "quco", "serve", str(d), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for d in dirs
    ]
    urls = []
    for p in procs:
        line = p.stderr.readline()  # type: ignore[union-attr]
        m = re.search(r" at (http://\S+) ", line)
        if not m:
            raise SystemExit(f"quco serve did not start: {line!r}")
        urls.append(m.group(1))
    return procs, urls


def stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def workload(rows: int) -> tuple[list[tuple[str, str]], list[str]]:
    """Distinct (head, tail) pairs and entity texts of HaluEval QA rows 0..rows-1, in order."""
    from quco.datasets import iter_halueval_qa
    from quco.nlp.entities import EntityExtractor

    ex = EntityExtractor()
    qs, ans = [], []
    for r in iter_halueval_qa(range(rows)):
        qs.append(r.question)
        ans.append(r.hallucinated_answer if r.row % 2 else r.right_answer)
    q_ents = ex.entities_many(qs)
    a_ents = ex.entities_many(ans)
    pairs: dict[tuple[str, str], None] = {}
    terms: dict[str, None] = {}
    for qe, ae in zip(q_ents, a_ents):
        for e in [*qe, *ae]:
            terms[e.text] = None
        for p in ex.pairs(ae, qe):
            pairs[(p.head.text, p.tail.text)] = None
    return list(pairs), list(terms)


def run_queries(stats: Any, pairs: list[tuple[str, str]], terms: list[str]) -> dict[str, Any]:
    cooc_ms, cooc_vals, count_ms, count_vals = [], [], [], []
    for a, b in pairs:
        t0 = time.perf_counter()
        c = stats.cooccur(a, b, window=1000)
        cooc_ms.append((time.perf_counter() - t0) * 1000)
        cooc_vals.append((c.value, c.approx))
    for t in terms:
        t0 = time.perf_counter()
        c = stats.count(t)
        count_ms.append((time.perf_counter() - t0) * 1000)
        count_vals.append((c.value, c.approx))
    return {"cooc_ms": cooc_ms, "cooc": cooc_vals, "count_ms": count_ms, "count": count_vals}


def summary(ms: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": pct(ms, 50),
        "p90_ms": pct(ms, 90),
        "p99_ms": pct(ms, 99),
        "mean_ms": round(float(np.mean(ms)), 3),
        "n": len(ms),
    }


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=300, help="HaluEval QA development rows giving the queries")
    ap.add_argument("--work", default="/tmp/quco-bench-shards", help="where the three parts are built")
    ap.add_argument("--index", default=None, help="the whole corpus's index (default: the demo index)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args()
    if args.rows > 2000:
        raise SystemExit("rows 2000+ are for evaluation only")
    from quco.corpus.build_parts import build_parts
    from quco.corpus.local import LocalStats
    from quco.corpus.remote import RemoteStats
    from quco.corpus.sharded import ShardedStats
    from quco.demo import DemoPaths, default_base, export_demo_corpus

    demo = DemoPaths(default_base())
    index = Path(args.index) if args.index else demo.index
    files = export_demo_corpus(demo.corpus)
    work = Path(args.work)
    parts = work / "demo-split3"
    build: dict[str, Any] = {}
    if not (parts / "shards.json").exists():
        print(f"splitting the demo corpus into 3 parts at {parts}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        build_parts(files, parts, parts=3, progress=False, force=True)
        build = {"seconds": round(time.perf_counter() - t0, 1), "engine": "local"}
    part_dirs = [parts / f"part-{k}" for k in range(3)]
    from quco.corpus.manifest import Manifest

    ms = [Manifest.load(d) for d in part_dirs]
    whole = Manifest.load(index)
    print("collecting the workload", file=sys.stderr, flush=True)
    pairs, terms = workload(args.rows)
    results: dict[str, Any] = {
        "benchmark": "one index vs the same corpus split by documents over 3 quco serve processes",
        "corpus": {"documents": whole.documents, "tokens": whole.tokens, "index_bytes": whole.index_bytes},
        "parts": [
            {
                "documents": m.documents,
                "tokens": m.tokens,
                "index_bytes": m.index_bytes,
                "shards": len(m.shards),
            }
            for m in ms
        ],
        "split_build": build or "reused",
        "workload": f"distinct head/tail pairs ({len(pairs)}) and entities ({len(terms)}) of HaluEval QA rows 0-{args.rows - 1}, each asked once",
        "distinct_queries_per_answer": {
            "cooccur": round(len(pairs) / args.rows, 3),
            "count": round(len(terms) / args.rows, 3),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average_at_start": os.getloadavg(),
        "configs": {},
    }
    # 1. the single index in this process
    local = LocalStats(index)
    ref = run_queries(local, pairs, terms)
    local.close()
    results["configs"]["local"] = {"cooccur": summary(ref["cooc_ms"]), "count": summary(ref["count_ms"])}
    # 2. the single index behind one server
    procs, urls = serve([index])
    try:
        rs = RemoteStats(urls[0], max_workers=1)
        one = run_queries(rs, pairs, terms)
        results["configs"]["one_server"] = {"cooccur": summary(one["cooc_ms"]), "count": summary(one["count_ms"]),
                                            "server_rss_mib": rss_mib(procs[0].pid)}  # fmt: skip
        rs.close()
    finally:
        stop(procs)
    # 3. the three parts behind three servers
    procs, urls = serve(part_dirs)
    try:
        shards = [TimedShard(RemoteStats(u, max_workers=1)) for u in urls]
        st = ShardedStats(shards, names=urls)
        for s in shards:
            s.ms.clear()  # the set check's health requests are not queries
        three = run_queries(st, pairs, terms)
        n_c = len(pairs)
        per_shard = [s.ms[:n_c] for s in shards]  # cooccur calls come first, one per query per shard
        slowest = [max(x) for x in zip(*per_shard)]
        overhead = [f - s for f, s in zip(three["cooc_ms"], slowest)]
        pooled = [x for xs in per_shard for x in xs]
        n = 3
        model = {
            "p50_ms": round(pct(pooled, 100 * 0.5 ** (1 / n)) + float(np.median(overhead)), 3),
            "p99_ms": round(pct(pooled, 100 * 0.99 ** (1 / n)) + float(np.median(overhead)), 3),
        }
        results["configs"]["three_shards"] = {
            "cooccur": summary(three["cooc_ms"]),
            "count": summary(three["count_ms"]),
            "cooccur_per_shard": [summary(x) for x in per_shard],
            "cooccur_per_shard_pooled": summary(pooled),
            "cooccur_slowest_shard": summary(slowest),
            "cooccur_fanout_overhead": summary(overhead),
            "cooccur_model_from_per_shard": model,
            "server_rss_mib": [rss_mib(p.pid) for p in procs],
        }
        st.close()
    finally:
        stop(procs)
    results["load_average_at_end"] = os.getloadavg()
    results["sharded_equals_single"] = {
        "cooccur_mismatches": sum(a != b for a, b in zip(three["cooc"], ref["cooc"])),
        "count_mismatches": sum(a != b for a, b in zip(three["count"], ref["count"])),
        "approx_answers_single": sum(a for _, a in ref["cooc"]) + sum(a for _, a in ref["count"]),
        "note": "a term over 100,000 occurrences is sampled (approx) by each index, so such answers may differ",
        "exact_mismatches": sum(
            a != b and not a[1] and not b[1]
            for a, b in zip(three["cooc"] + three["count"], ref["cooc"] + ref["count"])
        ),  # fmt: skip
    }
    c = results["configs"]
    results["ratios"] = {
        "three_shards_over_one_server_cooccur_p50": round(
            c["three_shards"]["cooccur"]["p50_ms"] / c["one_server"]["cooccur"]["p50_ms"], 3
        ),
        "three_shards_over_one_server_cooccur_p99": round(
            c["three_shards"]["cooccur"]["p99_ms"] / c["one_server"]["cooccur"]["p99_ms"], 3
        ),
        "three_shards_over_one_server_count_p50": round(
            c["three_shards"]["count"]["p50_ms"] / c["one_server"]["count"]["p50_ms"], 3
        ),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for k, v in c.items():
        print(f"{k:13s} cooccur p50 {v['cooccur']['p50_ms']:.2f} ms p99 {v['cooccur']['p99_ms']:.2f} ms | "
              f"count p50 {v['count']['p50_ms']:.2f} ms p99 {v['count']['p99_ms']:.2f} ms")  # fmt: skip
    t = c["three_shards"]
    print(f"per shard (pooled) cooccur p50 {t['cooccur_per_shard_pooled']['p50_ms']:.2f} p99 {t['cooccur_per_shard_pooled']['p99_ms']:.2f}; "
          f"slowest shard p50 {t['cooccur_slowest_shard']['p50_ms']:.2f}; fan-out overhead p50 {t['cooccur_fanout_overhead']['p50_ms']:.2f} ms; "
          f"model p50 {t['cooccur_model_from_per_shard']['p50_ms']:.2f} p99 {t['cooccur_model_from_per_shard']['p99_ms']:.2f}")  # fmt: skip
    print(f"ratios {results['ratios']}; sharded == single: {results['sharded_equals_single']}")
    print(f"load {results['load_average_at_start']} -> {results['load_average_at_end']}; saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
