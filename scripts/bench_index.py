"""Benchmark quco's index: build cost against infini-gram's byte-mode builder,
count/cooccur latency (local and through ``quco serve``), and exact co-occurrence
against the engine's approximate ``count_cnf`` AND.

    python scripts/bench_index.py --dir indexes/built [--quick]

Figures (printed as a table and saved to ``eval/results/bench_index.json``):

- build: wall time (tokenization included for quco), tokens/s, corpus MB/s,
  peak RSS (sum over the process tree, sampled; and the largest single
  process, from ``getrusage``), index bytes per token and per corpus byte; for
  quco and for ``python -m infini_gram.indexing --token_dtype u8`` (byte mode,
  no tokenizer) on the same JSONL files; the ratio quco / byte mode.
  Target: quco's build no slower than byte mode (ratio <= 1).
- latency: ``count`` and ``cooccur`` p50/p99 in ms per frequency bucket of the
  terms, local (cold: the per-term occurrence cache emptied before each call;
  warm: repeated) and through ``quco serve`` (HTTP on 127.0.0.1).
  Target: cooccur p50 < 5 ms for terms with up to 100k occurrences.
- exact vs engine: quco's exact window co-occurrence (pairs of occurrences
  within the window) and the engine's ``count_cnf`` AND (``max_diff_tokens`` =
  window, ``max_clause_freq`` = 50,000 as the public API) side by side; how
  often they differ and how often exactly one of them is zero (the case that
  flips QuCo's stage-2 decision).

The two figures count different things (occurrence pairs vs. the engine's
anchored matches), so their values differ by definition; the zero/non-zero
agreement is what matters for the guard.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent

#: candidate terms (their counts decide their frequency bucket)
TERMS = [
    "the", "of", "and", "was", "American", "United States", "film", "album", "London", "England",
    "Paris", "France", "football", "river", "President", "Obama", "Einstein", "Beethoven",
    "Mount Everest", "photosynthesis", "Tolkien", "Kyoto", "Zyxwvut Blorp",
    "he", "his", "said", "first", "which", "people", "also", "she", "who",
]  # fmt: skip
#: candidate pairs for co-occurrence
PAIRS = [
    ("Paris", "France"), ("London", "England"), ("Obama", "President"), ("Einstein", "physics"),
    ("film", "American"), ("album", "band"), ("river", "Europe"), ("Beethoven", "Vienna"),
    ("Tolkien", "Oxford"), ("Kyoto", "Japan"), ("football", "club"), ("the", "of"),
    ("United States", "President"), ("Mount Everest", "Nepal"), ("photosynthesis", "plants"),
    ("Paris", "Zyxwvut Blorp"), ("was", "American"), ("and", "film"),
    ("he", "said"), ("first", "which"), ("people", "also"), ("she", "who"), ("his", "first"),
]  # fmt: skip
BUCKETS = [(0, 100), (100, 1_000), (1_000, 10_000), (10_000, 100_000), (100_000, 10**15)]
WINDOWS = (100, 1000)


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def bucket_name(n: int) -> str:
    for lo, hi in BUCKETS:
        if lo <= n < hi:
            return f"{lo:,}-{hi:,}" if hi < 10**15 else f">={lo:,}"
    return "?"


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


# ------------------------------------------------------------------ corpus


def corpus_files(base: Path, quick: bool) -> list[Path]:
    from quco.demo import export_demo_corpus

    files = export_demo_corpus(base / "corpus")
    if not quick:
        return files
    # subset: the first documents of each file (news articles are long: fewer of them)
    sub = base / "bench" / "corpus-quick"
    sub.mkdir(parents=True, exist_ok=True)
    limits = {0: 3000, 1: 300, 2: 3000}
    out = []
    for i, f in enumerate(files):
        dst = sub / f.name
        if not dst.exists():
            with open(f, encoding="utf-8") as src, open(dst, "w", encoding="utf-8") as w:
                for j, line in enumerate(src):
                    if j >= limits.get(i, 1000):
                        break
                    w.write(line)
        out.append(dst)
    return out


# ------------------------------------------------------------------- build


def run_measured(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; wall time, peak RSS of the whole process tree (sampled) and of its largest process."""
    import psutil

    fd, stats_path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    wrapper = (
        "import json, resource, subprocess, sys\n"
        "rc = subprocess.call(sys.argv[2:])\n"
        "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "json.dump({'rc': rc, 'maxrss_kb': ru.ru_maxrss, 'cpu': ru.ru_utime + ru.ru_stime}, open(sys.argv[1], 'w'))\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", wrapper, stats_path, *cmd], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, errors="replace")  # fmt: skip
    peak = 0
    stop = threading.Event()
    err_lines: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            err_lines.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    while proc.poll() is None and not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
            rss = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            peak = max(peak, rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    proc.wait()
    wall = time.perf_counter() - t0
    reader.join(5)
    with open(stats_path) as f:
        st = json.load(f)
    os.unlink(stats_path)
    if st["rc"] != 0:
        tail = "".join(err_lines[-15:])
        raise RuntimeError(f"command failed ({st['rc']}): {' '.join(cmd)}\n{tail}")
    return {"seconds": wall, "cpu_seconds": st["cpu"], "peak_rss_tree_mb": peak / 2**20,
            "max_process_rss_mb": st["maxrss_kb"] / 1024}  # fmt: skip


def dir_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.rglob("*") if p.is_file())


def bench_build(files: list[Path], work: Path, mem_gib: int) -> dict[str, Any]:
    corpus_bytes = sum(f.stat().st_size for f in files)
    text_bytes = 0
    n_docs = 0
    for f in files:
        with open(f, encoding="utf-8") as src:
            for line in src:
                text_bytes += len(json.loads(line)["text"].encode("utf-8"))
                n_docs += 1

    # quco: tokenization (HF fast tokenizer) + infini-gram's suffix-array builder
    qdir = work / "quco-index"
    shutil.rmtree(qdir, ignore_errors=True)
    code = (
        "import sys; from quco.corpus.build import build_index\n"
        f"build_index({[str(f) for f in files]!r}, {str(qdir)!r}, force=True, progress=False, mem_gib={mem_gib})\n"
    )
    log(f"building the quco index of {n_docs:,} documents ({text_bytes / 1e6:.1f} MB of text)")
    q = run_measured([sys.executable, "-c", code])
    from quco.corpus.manifest import Manifest

    m = Manifest.load(qdir)
    q.update(tokens=m.tokens, documents=m.documents, shards=len(m.shards), index_bytes=dir_bytes(qdir))
    q["tokens_per_s"] = m.tokens / q["seconds"]
    q["corpus_mb_per_s"] = text_bytes / 1e6 / q["seconds"]
    q["index_bytes_per_token"] = q["index_bytes"] / m.tokens
    q["index_bytes_per_text_byte"] = q["index_bytes"] / text_bytes

    # infini-gram byte mode on the same files (its input: *.json* files with a "text" field)
    data = work / "ig-data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    for f in files:
        os.symlink(f.resolve(), data / f.name)
    idir = work / "ig-u8"
    shutil.rmtree(idir, ignore_errors=True)
    cmd = [sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(data.resolve()),
           "--save_dir", str(idir.resolve()), "--token_dtype", "u8", "--ulimit", "20000",
           "--cpus", str(os.cpu_count() or 1), "--mem", str(mem_gib), "--add_metadata"]  # fmt: skip
    log("building the infini-gram byte-mode index of the same files")
    b = run_measured(cmd)
    tok_bytes = sum(p.stat().st_size for p in idir.glob("tokenized.*"))
    b.update(tokens=tok_bytes - n_docs, documents=n_docs, index_bytes=dir_bytes(idir))
    b["tokens_per_s"] = b["tokens"] / b["seconds"]
    b["corpus_mb_per_s"] = text_bytes / 1e6 / b["seconds"]
    b["index_bytes_per_token"] = b["index_bytes"] / b["tokens"]
    b["index_bytes_per_text_byte"] = b["index_bytes"] / text_bytes
    shutil.rmtree(idir, ignore_errors=True)
    shutil.rmtree(data, ignore_errors=True)
    return {
        "corpus": {
            "files": [str(f) for f in files],
            "documents": n_docs,
            "text_bytes": text_bytes,
            "jsonl_bytes": corpus_bytes,
        },  # fmt: skip
        "quco": q,
        "infini_gram_u8": b,
        "ratio_quco_over_u8": {
            "seconds": q["seconds"] / b["seconds"],
            "cpu_seconds": q["cpu_seconds"] / b["cpu_seconds"],
            "peak_rss_tree": q["peak_rss_tree_mb"] / b["peak_rss_tree_mb"],
            "index_bytes": q["index_bytes"] / b["index_bytes"],
        },
        "target_build_no_slower": q["seconds"] <= b["seconds"],
    }


# ----------------------------------------------------------------- latency


#: LocalStats' data caches (suffix-array ranges, occurrence arrays), emptied for "cold" timings;
#: the term -> token ids cache is kept (tokenizing a term is part of neither figure's target)
DATA_CACHES = ("_occ_cache", "_find_cache")


def clear_occ_cache(stats: Any) -> None:
    for name in DATA_CACHES:
        cache = getattr(stats, name, None)
        if cache is not None:
            cache.clear()


def timed(fn: Any, repeats: int, before: Any = None) -> list[float]:
    out = []
    for _ in range(repeats):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def summarize(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, float]]:
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["bucket"], []).extend(r[key])
    return {b: {"p50_ms": pct(v, 50), "p99_ms": pct(v, 99), "n": len(v)} for b, v in sorted(by.items())}


def bench_latency(index: Path, repeats: int) -> dict[str, Any]:
    from quco.corpus.local import LocalStats
    from quco.corpus.remote import RemoteStats
    from quco.corpus.server import serve_in_thread

    local = LocalStats(index)
    counts = {t: local.count(t) for t in {*TERMS, *(x for p in PAIRS for x in p)}}
    server, url = serve_in_thread([index])
    served = next(iter(server.handler.indexes.values())).stats
    remote = RemoteStats(url, max_workers=1)
    try:
        count_rows = []
        for t in TERMS:
            n = counts[t].value
            local_ms = timed(lambda t=t: local.count(t), repeats, lambda: clear_occ_cache(local))
            warm_ms = timed(lambda t=t: local.count(t), repeats)
            remote_ms = timed(lambda t=t: remote.count(t), repeats, lambda: clear_occ_cache(served))
            count_rows.append(
                {
                    "term": t,
                    "count": n,
                    "bucket": bucket_name(n),
                    "local": local_ms,
                    "local_warm": warm_ms,
                    "remote": remote_ms,
                }
            )
        cooc_rows = []
        for a, b in PAIRS:
            n = max(counts[a].value, counts[b].value)
            cold = timed(
                lambda a=a, b=b: local.cooccur(a, b, window=1000), repeats, lambda: clear_occ_cache(local)
            )
            warm = timed(lambda a=a, b=b: local.cooccur(a, b, window=1000), repeats)
            rcold = timed(
                lambda a=a, b=b: remote.cooccur(a, b, window=1000), repeats, lambda: clear_occ_cache(served)
            )
            cooc_rows.append({"pair": [a, b], "max_count": n, "bucket": bucket_name(n), "local_cold": cold,
                              "local_warm": warm, "remote_cold": rcold,
                              "value": local.cooccur(a, b, window=1000).value})  # fmt: skip
        # remote must equal local on every pair
        mismatches = [
            (a, b) for a, b in PAIRS
            if remote.cooccur(a, b, window=1000) != local.cooccur(a, b, window=1000)
        ]  # fmt: skip
        upto = [x for r in cooc_rows if r["max_count"] <= 100_000 for x in r["local_cold"]]
        by_bucket = summarize([r for r in cooc_rows if r["max_count"] <= 100_000], "local_cold")
        worst = max((v["p50_ms"] for v in by_bucket.values()), default=float("nan"))
        return {
            "repeats": repeats,
            "term_counts": {t: c.value for t, c in sorted(counts.items())},
            "count": {
                "local_cold": summarize(count_rows, "local"),
                "local_warm": summarize(count_rows, "local_warm"),
                "remote_cold": summarize(count_rows, "remote"),
            },
            "cooccur_window_1000": {
                "local_cold": summarize(cooc_rows, "local_cold"),
                "local_warm": summarize(cooc_rows, "local_warm"),
                "remote_cold": summarize(cooc_rows, "remote_cold"),
            },
            "cooccur_p50_ms_upto_100k_cold": pct(upto, 50),
            "cooccur_p99_ms_upto_100k_cold": pct(upto, 99),
            "cooccur_worst_bucket_p50_ms_upto_100k_cold": worst,
            "target_cooccur_p50_under_5ms": pct(upto, 50) < 5.0,
            "target_cooccur_p50_under_5ms_every_bucket": worst < 5.0,
            "remote_local_mismatches": mismatches,
            "per_pair": [
                {k: v for k, v in r.items() if not isinstance(v, list) or k == "pair"}
                | {"local_cold_p50_ms": pct(r["local_cold"], 50)}
                for r in cooc_rows
            ],  # fmt: skip
        }
    finally:
        server.close()
        local.close()


# ------------------------------------------------------- exact vs engine


def bench_exact_vs_engine(index: Path) -> dict[str, Any]:
    from infini_gram.engine import InfiniGramEngine

    from quco.corpus.local import LocalStats

    local = LocalStats(index)
    m = local.manifest
    engine = InfiniGramEngine(index_dir=str(index), eos_token_id=m.eos_token_id, vocab_size=m.vocab_size,
                              token_dtype=m.token_dtype)  # fmt: skip
    rows = []
    eng_ms: list[float] = []
    for a, b in PAIRS:
        va, vb = local.variants(a), local.variants(b)
        for w in WINDOWS:
            exact = local.cooccur(a, b, window=w)
            t0 = time.perf_counter()
            res = engine.count_cnf(cnf=[va, vb], max_clause_freq=50_000, max_diff_tokens=w)
            eng_ms.append((time.perf_counter() - t0) * 1000)
            if "error" in res:
                rows.append(
                    {"pair": [a, b], "window": w, "exact": exact.value, "engine": None, "error": res["error"]}
                )
                continue
            rows.append({"pair": [a, b], "window": w, "exact": exact.value, "exact_approx": exact.approx,
                         "engine": int(res["count"]), "engine_approx": bool(res.get("approx", False))})  # fmt: skip
    local.close()
    ok = [r for r in rows if r.get("engine") is not None]
    differ = sum(r["exact"] != r["engine"] for r in ok)
    false_zero = sum(r["exact"] > 0 and r["engine"] == 0 for r in ok)
    false_nonzero = sum(r["exact"] == 0 and r["engine"] > 0 for r in ok)
    return {
        "rows": rows,
        "compared": len(ok),
        "values_differ": differ,
        "engine_zero_exact_nonzero": false_zero,
        "engine_nonzero_exact_zero": false_nonzero,
        "engine_count_cnf_p50_ms": pct(eng_ms, 50),
    }


# ------------------------------------------------------------------ report


def print_report(res: dict[str, Any]) -> None:
    b = res.get("build")
    if b:
        q, u = b["quco"], b["infini_gram_u8"]
        print(f"\nBuild ({b['corpus']['documents']:,} docs, {b['corpus']['text_bytes'] / 1e6:.1f} MB text)")
        print(f"{'':24}{'quco (tokenized)':>18}{'infini-gram u8':>18}{'ratio':>8}")
        for label, key, fmt in [
            ("wall time (s)", "seconds", "{:.1f}"),
            ("CPU time (s)", "cpu_seconds", "{:.1f}"),
            ("tokens", "tokens", "{:,}"),
            ("tokens/s", "tokens_per_s", "{:,.0f}"),
            ("text MB/s", "corpus_mb_per_s", "{:.2f}"),
            ("peak RSS tree (MB)", "peak_rss_tree_mb", "{:.0f}"),
            ("max process RSS (MB)", "max_process_rss_mb", "{:.0f}"),
            ("index bytes", "index_bytes", "{:,}"),
            ("index bytes/token", "index_bytes_per_token", "{:.2f}"),
            ("index bytes/text byte", "index_bytes_per_text_byte", "{:.2f}"),
        ]:
            r = q[key] / u[key] if u[key] else float("nan")
            print(f"{label:24}{fmt.format(q[key]):>18}{fmt.format(u[key]):>18}{r:>8.2f}")
        print(
            f"target (quco build no slower than byte mode): {'met' if b['target_build_no_slower'] else 'NOT met'}"
        )
    lat = res.get("latency")
    if lat:
        print(f"\nLatency (ms, {lat['repeats']} repeats per query)")
        print(
            f"{'bucket (occurrences)':22}{'count cold':>16}{'count serve':>16}{'cooc cold':>16}{'cooc warm':>16}{'cooc serve':>16}"
        )
        cl, cr = lat["count"]["local_cold"], lat["count"]["remote_cold"]
        co = lat["cooccur_window_1000"]
        keys = sorted(
            set(cl) | set(co["local_cold"]), key=lambda k: int(k.split("-")[0].lstrip(">=").replace(",", ""))
        )

        def cell(d: dict[str, Any], k: str) -> str:
            return f"{d[k]['p50_ms']:.2f}/{d[k]['p99_ms']:.2f}" if k in d else "-"

        for k in keys:
            cells = [cell(d, k) for d in (cl, cr, co["local_cold"], co["local_warm"], co["remote_cold"])]
            print(f"{k:22}" + "".join(f"{c:>16}" for c in cells))
        print("(p50/p99; cold = LocalStats' data caches emptied before each call; serve = cold, over HTTP;")
        print(" cooccur window 1000; bucket = the term's occurrences, the larger term's for a pair)")
        print(f"cooccur cold p50 for terms <= 100k occurrences: {lat['cooccur_p50_ms_upto_100k_cold']:.2f} ms "
              f"(target < 5 ms: {'met' if lat['target_cooccur_p50_under_5ms'] else 'NOT met'}); "
              f"worst bucket p50 {lat['cooccur_worst_bucket_p50_ms_upto_100k_cold']:.2f} ms "
              f"({'met' if lat['target_cooccur_p50_under_5ms_every_bucket'] else 'NOT met'})")  # fmt: skip
        print(f"remote == local on all pairs: {not lat['remote_local_mismatches']}")
    ex = res.get("exact_vs_engine")
    if ex:
        print("\nExact co-occurrence (occurrence pairs) vs engine count_cnf AND")
        print(f"{'pair':36}{'window':>8}{'exact':>10}{'engine':>10}")
        for r in ex["rows"]:
            eng = r["engine"] if r.get("engine") is not None else f"err: {r.get('error', '')[:20]}"
            print(f"{' | '.join(r['pair']):36}{r['window']:>8}{r['exact']:>10,}{eng!s:>10}")
        print(f"values differ: {ex['values_differ']}/{ex['compared']}; engine 0 but exact > 0: "
              f"{ex['engine_zero_exact_nonzero']}; engine > 0 but exact 0: {ex['engine_nonzero_exact_zero']}")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default="indexes/built", help="demo folder (corpus/ is read or exported there)")
    ap.add_argument("--quick", action="store_true", help="a subset of the corpus, fewer repeats")
    ap.add_argument(
        "--out", default=None, help="JSON results (default eval/results/bench_index[_quick].json)"
    )
    ap.add_argument("--repeats", type=int, default=None, help="timings per query (default 20, quick 5)")
    ap.add_argument("--mem", type=int, default=4, help="GiB given to both suffix-array builders")
    ap.add_argument("--skip-build", action="store_true", help="reuse the bench index from a previous run")
    args = ap.parse_args()

    base = Path(args.dir)
    work = base / "bench" / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    repeats = args.repeats or (5 if args.quick else 20)
    files = corpus_files(base, args.quick)
    res: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count(), "python": sys.version.split()[0],
                           "load_average_at_start": os.getloadavg()}  # fmt: skip
    if not args.skip_build:
        res["build"] = bench_build(files, work, args.mem)
    index = work / "quco-index"
    log("measuring count/cooccur latency (local and through quco serve)")
    res["latency"] = bench_latency(index, repeats)
    log("comparing exact co-occurrence with the engine's count_cnf")
    res["exact_vs_engine"] = bench_exact_vs_engine(index)
    out = Path(args.out or REPO / "eval" / "results" / f"bench_index{'_quick' if args.quick else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.skip_build and out.exists():  # keep the build figures of the previous run
        prev = json.loads(out.read_text())
        if "build" in prev and prev.get("quick") == args.quick:
            res["build"] = prev["build"]
    out.write_text(json.dumps(res, indent=2, default=str))
    print_report(res)
    print(f"\nsaved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
