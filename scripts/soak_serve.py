"""Soak ``quco serve``: many concurrent clients for a fixed time, every answer checked.

    python scripts/soak_serve.py [--index indexes/built/index] [--clients 64] [--duration 60]
                                 [--baseline-clients 32 --baseline-duration 20]

Starts ``quco serve`` (a child process) on 127.0.0.1 over the index and drives
it with ``--clients`` client threads for ``--duration`` seconds, each sending a
mix of requests as fast as it can: ``count`` of one term (40%), ``count`` of an
AND/OR query (40%: two terms within 10/100/1000 tokens, some three-clause and
OR queries) and ``find`` (20%). Every answer is compared with a sequential
reference computed before the load by LocalStats in this process (count,
approx; cnt and suffix-array ranges for find). Before the main phase, an
optional baseline phase runs with ``--baseline-clients`` (32 by default: the
concurrency of the reference figure below).

Recorded (printed, and saved to ``eval/results/soak_serve.json``): requests,
req/s, latency p50/p99/mean (ms, at the client, connection set-up included),
errors (non-200 answers, refused or dropped connections), wrong answers, the
server's RSS at the start (after one warm-up pass over the request mix) and at
the end, and the load average (the machine is shared). Targets: zero wrong
answers, zero errors, RSS growth under 10%.

Reference (issue 14, measured before this script by another session on the
same demo index, while another job ran): 607 req/s at 32 concurrent clients,
p50 55 ms, p99 80 ms, no errors.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))

REFERENCE = {"clients": 32, "req_per_s": 607, "p50_ms": 55, "p99_ms": 80, "errors": 0}

TERMS = [
    "the", "American", "United States", "film", "album", "London", "England", "Paris", "France",
    "football", "river", "President", "Obama", "Einstein", "Beethoven", "Mount Everest", "Tolkien",
    "Kyoto", "Zyxwvut Blorp", "people", "Japan", "Vienna", "Oxford", "physics", "band", "club",
]  # fmt: skip
PAIRS = [
    ("Paris", "France"), ("London", "England"), ("Obama", "President"), ("Einstein", "physics"),
    ("film", "American"), ("album", "band"), ("river", "Europe"), ("Beethoven", "Vienna"),
    ("Tolkien", "Oxford"), ("Kyoto", "Japan"), ("football", "club"), ("United States", "President"),
    ("Mount Everest", "Nepal"), ("Paris", "Zyxwvut Blorp"), ("people", "film"),
]  # fmt: skip
CNF = ["Paris AND France AND river", "London OR Paris AND England OR France", "film AND album AND band"]


def build_mix(stats: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(kind, payload, expected fields) for every request of the mix, from LocalStats (sequential)."""
    mix: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    for t in TERMS:
        c = stats.count(t)
        mix.append(("count", {"query_type": "count", "query": t}, {"count": c.value, "approx": c.approx}))
    queries = [f"{a} AND {b}" for a, b in PAIRS] + CNF
    for q in queries:
        clauses = [[v for t in cl.split(" OR ") for v in stats.variants(t)] for cl in q.split(" AND ")]
        for mdt in (10, 100, 1000):
            c = stats.count_cnf(clauses, window=mdt, max_clause_freq=50_000)
            payload = {"query_type": "count", "query": q, "max_diff_tokens": mdt}
            mix.append(("and", payload, {"count": c.value, "approx": c.approx}))
    for t in TERMS[::2]:
        variants = stats.variants(t)
        found = [stats.find_ids(v) for v in variants]
        want = {"cnt": sum(f[0] for f in found), "segment_by_shard": [list(s) for s in found[0][1]]}
        mix.append(("find", {"query_type": "find", "query": t}, want))
    return mix


def pick(mix: list[tuple[str, dict[str, Any], dict[str, Any]]], rng: random.Random) -> int:
    kinds = {"count": 0.4, "and": 0.4, "find": 0.2}
    kind = rng.choices(list(kinds), weights=list(kinds.values()))[0]
    idx = [i for i, m in enumerate(mix) if m[0] == kind]
    return rng.choice(idx)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def post(port: int, payload: dict[str, Any], timeout: float = 60.0) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/", body=json.dumps(payload), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def run_phase(port: int, mix: list, clients: int, duration: float, seed: int) -> dict[str, Any]:
    """``clients`` threads sending requests until ``duration`` seconds have passed."""
    lat: list[list[float]] = [[] for _ in range(clients)]
    kinds: list[list[str]] = [[] for _ in range(clients)]
    errors: list[str] = []
    wrong: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def worker(w: int) -> None:
        rng = random.Random(seed * 1000 + w)
        barrier.wait()
        while time.monotonic() < stop_at[0]:
            i = pick(mix, rng)
            kind, payload, want = mix[i]
            t0 = time.perf_counter()
            try:
                status, ans = post(port, payload)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                with lock:
                    errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                continue
            lat[w].append((time.perf_counter() - t0) * 1000.0)
            kinds[w].append(kind)
            if status != 200:
                with lock:
                    errors.append(f"{kind} {payload.get('query')!r}: HTTP {status}: {ans}")
            elif any(ans.get(k) != v for k, v in want.items()):
                with lock:
                    wrong.append(f"{payload} -> {ans} (want {want})")

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(clients)]
    for th in threads:
        th.start()
    stop_at[0] = time.monotonic() + duration
    t0 = time.monotonic()
    barrier.wait()
    for th in threads:
        th.join(duration + 120)
    elapsed = time.monotonic() - t0
    all_lat = np.array([x for xs in lat for x in xs]) if any(lat) else np.zeros(1)
    all_kinds = [k for ks in kinds for k in ks]
    by_kind = {}
    for k in ("count", "and", "find"):
        sel = np.array([x for x, kk in zip(all_lat.tolist(), all_kinds, strict=False) if kk == k])
        if sel.size:
            by_kind[k] = {
                "requests": int(sel.size),
                "p50_ms": round(float(np.percentile(sel, 50)), 1),
                "p99_ms": round(float(np.percentile(sel, 99)), 1),
            }
    n = len(all_kinds)
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": n,
        "req_per_s": round(n / elapsed, 1),
        "p50_ms": round(float(np.percentile(all_lat, 50)), 1),
        "p99_ms": round(float(np.percentile(all_lat, 99)), 1),
        "mean_ms": round(float(all_lat.mean()), 1),
        "errors": len(errors),
        "wrong_answers": len(wrong),
        "first_errors": errors[:5],
        "first_wrong": wrong[:5],
        "by_kind": by_kind,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", default=str(REPO / "indexes/built/index"))
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of the main phase (default 60)")
    ap.add_argument("--baseline-clients", type=int, default=32, help="clients of a first phase (0: none)")
    ap.add_argument("--baseline-duration", type=float, default=20.0)
    ap.add_argument("--out", default=str(REPO / "eval/results/soak_serve.json"))
    args = ap.parse_args()

    from quco.corpus.local import LocalStats

    print(f"[soak] reference answers from LocalStats({args.index}) ...", flush=True)
    with LocalStats(args.index) as stats:
        mix = build_mix(stats)
        tokens = stats.manifest.tokens
    print(f"[soak] {len(mix)} distinct requests; starting quco serve", flush=True)
    log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "quco", "serve", args.index, "--port", "0"], stderr=log, env=env, text=True
    )
    try:
        port = 0
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not port:
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", Path(log.name).read_text())
            if m:
                port = int(m.group(1))
            elif proc.poll() is not None:
                raise SystemExit(f"quco serve exited: {Path(log.name).read_text()}")
            else:
                time.sleep(0.2)
        rss_loaded = rss_mb(proc.pid)
        # warm-up: every request once, sequentially, checked like the rest
        warm_wrong = [p for _, p, want in mix if any(post(port, p)[1].get(k) != v for k, v in want.items())]
        rss_start = rss_mb(proc.pid)
        load_start = os.getloadavg()
        phases = []
        if args.baseline_clients:
            print(f"[soak] baseline: {args.baseline_clients} clients for {args.baseline_duration:.0f} s", flush=True)
            phases.append(run_phase(port, mix, args.baseline_clients, args.baseline_duration, seed=1))
        print(f"[soak] main: {args.clients} clients for {args.duration:.0f} s", flush=True)
        phases.append(run_phase(port, mix, args.clients, args.duration, seed=2))
        load_end = os.getloadavg()
        rss_end = rss_mb(proc.pid)
        alive = post(port, {"query_type": "count", "query": "Paris"})[0] == 200
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    server_log = Path(log.name).read_text()
    os.unlink(log.name)
    result = {
        "command": " ".join(["python", "scripts/soak_serve.py", *sys.argv[1:]]),
        "index": args.index,
        "index_tokens": tokens,
        "distinct_requests": len(mix),
        "mix": {"count": 0.4, "and": 0.4, "find": 0.2},
        "cpus": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "rss_mb_loaded": round(rss_loaded, 1),
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_end": round(rss_end, 1),
        "rss_growth_pct": round(100.0 * (rss_end - rss_start) / rss_start, 2),
        "warmup_wrong_answers": len(warm_wrong),
        "server_alive_after": alive,
        "server_tracebacks": server_log.count("Traceback"),
        "phases": phases,
        "reference": REFERENCE,
        "targets": {"wrong_answers": 0, "errors": 0, "rss_growth_pct_below": 10},
        "targets_met": bool(
            all(p["wrong_answers"] == 0 and p["errors"] == 0 for p in phases)
            and not warm_wrong
            and (rss_end - rss_start) / rss_start < 0.10
        ),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")

    print(f"\n{'':28}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'wrong':>7}")
    r = REFERENCE
    print(f"{'reference, 32 clients':28}{r['req_per_s']:>8}{r['p50_ms']:>9}{r['p99_ms']:>9}{r['errors']:>8}{'-':>7}")
    for p in phases:
        label = f"now, {p['clients']} clients"
        print(f"{label:28}{p['req_per_s']:>8}{p['p50_ms']:>9}{p['p99_ms']:>9}{p['errors']:>8}{p['wrong_answers']:>7}")
    print(
        f"server RSS {result['rss_mb_start']} MB -> {result['rss_mb_end']} MB ({result['rss_growth_pct']:+.2f}%); "
        f"load average {result['load_average_start'][0]} -> {result['load_average_end'][0]} on {os.cpu_count()} CPUs; "
        f"targets met: {result['targets_met']}"
    )
    print(f"saved {args.out}")
    return 0 if result["targets_met"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
