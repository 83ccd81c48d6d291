"""Benchmark ``quco proxy``: the latency it adds per request over calling the same upstream directly.

Starts a real model server (llama-cpp-python's OpenAI-compatible server over the
packaged SmolLM2 GGUF, one thread) and two ``quco proxy`` processes in front of
it (the CLI, over the demo index and BM25 collection, ``on_risk=flag``):
``--policy quco`` (data side; it asks for no logprobs) and ``--policy combined``
(both sides; it asks for ``logprobs``/``top_logprobs=5``). Then, for each
question, in one run and interleaved (the order reversed every other request so
that no side always gets the upstream's warm prompt cache):

- **direct**: the chat request as a client would send it, to the upstream;
- **proxy quco**: the same request through the ``quco`` proxy;
- **direct + logprobs** and **proxy combined** (the no-retrieval questions, in
  the first ``--combined-rounds`` rounds): the request with logprobs, directly
  and through the ``combined`` proxy, so that the upstream's own price for
  logprobs is seen apart. (The shipped combined model's stage 1 fires on
  these questions too, so that proxy also adds evidence.)

Questions come in two groups, chosen by whether stage 1 fires on the demo
index: ``no_retrieval`` (frequent entities: the request reaches the upstream
unchanged) and ``retrieval`` (rare entities: BM25 evidence is added, so the
upstream also reads a longer prompt). Greedy decoding, yet llama-cpp-python
does not always give the same answer to the same request (its prompt cache
differs between calls), and a different answer has a different length: so the
added latency is also given over the pairs whose answers are the same text
(the same upstream work).

Last, the proxy's own cost without the model's variance: a **fixed-latency
upstream** (a small server in this script that answers every chat request with
the same two-sentence answer, with logprobs, after ``--fixed-ms``) called
directly and through a ``quco`` proxy in front of it, ``--fixed-requests`` times
each, interleaved.

Reports per comparison p50/p99 of direct and proxied latency, of the added
latency (paired, per request) and the ratio p50(proxy)/p50(direct) - 1 measured
in this run (target: <= 5% added when no retrieval fires), the proxy's own
stage-1 and stage-2 times and the retrieval time from its reports, and the load
average. p99 over a few dozen requests is close to the maximum.

Saves ``eval/results/bench_proxy.json``.

Usage:
    .venv/bin/python scripts/bench_proxy.py [--rounds 3] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from quco.demo import DemoPaths, default_base
from quco.models import gguf_path

NO_RETRIEVAL = [
    "What is the capital of France?",
    "Who was the first President of the United States?",
    "Which river flows through London?",
    "What is the largest city in California?",
    "What is the population of China?",
    "Who was the king of England in 1600?",
    "What is the capital of Australia?",
]
RETRIEVAL = [
    "Who directed the film Titanic?",
    "What instrument did Johann Sebastian Bach play?",
    "Where was Ada Lovelace born?",
    "Who founded Microsoft?",
    "Who painted the Mona Lisa?",
]


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    i = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[i]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(url: str, proc: subprocess.Popen[Any], timeout: float = 180) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}) before {url} answered")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer in {timeout} s")


def stats_ms(xs: list[float]) -> dict[str, float]:
    return {"p50": round(pct(xs, 50) * 1000, 2), "p99": round(pct(xs, 99) * 1000, 2), "mean": round(statistics.fmean(xs) * 1000, 2) if xs else float("nan")}


def start_proxy(upstream: str, port: int, policy: str, demo: DemoPaths, log: Path) -> subprocess.Popen[Any]:
    return subprocess.Popen(
        [sys.executable, "-m", "quco", "proxy", "--upstream", upstream, "--port", str(port), "--policy", policy,
         "--index", str(demo.index), "--retriever", str(demo.retrieval)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, env={**os.environ, "QUCO_TORCH_THREADS": "1"},
    )  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=4, help="requests per question and side (default 4)")
    ap.add_argument("--combined-rounds", type=int, default=1, help="of those, rounds that also run the logprob sides (default 1)")
    ap.add_argument("--max-tokens", type=int, default=32, help="tokens per answer (default 32)")
    ap.add_argument("--fixed-ms", type=float, default=1000.0, help="the fixed-latency upstream's delay (default 1000)")
    ap.add_argument("--fixed-requests", type=int, default=30, help="requests per side to it (default 30)")
    ap.add_argument("--out", default="eval/results/bench_proxy.json")
    ap.add_argument("--serve-fixed", type=int, help=argparse.SUPPRESS)  # internal: run the fixed-latency upstream
    args = ap.parse_args()
    if args.serve_fixed:
        return serve_fixed(args.serve_fixed, args.fixed_ms / 1000)
    demo = DemoPaths(default_base())
    if not demo.index.exists() or not demo.retrieval.exists():
        raise SystemExit("the demo index is missing: run `make demo` first")
    load_start = os.getloadavg()
    ports = {name: free_port() for name in ("upstream", "quco", "combined", "fixed", "fixed_proxy")}
    logs = Path(tempfile.mkdtemp(prefix="bench_proxy_"))
    up = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host", "127.0.0.1", "--port", str(ports["upstream"]),
         "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1", "--seed", "0"],
        stdout=open(logs / "upstream.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    procs = [up]
    upstream = f"http://127.0.0.1:{ports['upstream']}/v1"
    try:
        wait(f"{upstream}/models", up)
        for policy in ("quco", "combined"):
            procs.append(start_proxy(upstream, ports[policy], policy, demo, logs / f"proxy-{policy}.log"))
            wait(f"http://127.0.0.1:{ports[policy]}/quco/health", procs[-1])
        urls = {"direct": upstream, **{p: f"http://127.0.0.1:{ports[p]}/v1" for p in ("quco", "combined")}}
        results = run(args, urls)
        for p in reversed(procs):  # the model server and its proxies are done: free the cores
            p.terminate()
            p.wait(timeout=20)
        procs = [subprocess.Popen([sys.executable, __file__, "--serve-fixed", str(ports["fixed"]), "--fixed-ms", str(args.fixed_ms)],
                                  stdout=open(logs / "fixed.log", "w"), stderr=subprocess.STDOUT)]  # fmt: skip
        fixed = f"http://127.0.0.1:{ports['fixed']}/v1"
        wait(f"{fixed}/models", procs[0])
        procs.append(start_proxy(fixed, ports["fixed_proxy"], "quco", demo, logs / "proxy-fixed.log"))
        wait(f"http://127.0.0.1:{ports['fixed_proxy']}/quco/health", procs[-1])
        results["fixed_latency_upstream"] = run_fixed(args, fixed, f"http://127.0.0.1:{ports['fixed_proxy']}/v1")
    except BaseException:
        sys.stderr.write(f"server logs kept in {logs}\n")
        raise
    else:
        shutil.rmtree(logs, ignore_errors=True)
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=20)
    out = {
        "what": "quco proxy's added latency per chat request vs calling the same upstream directly (one run, interleaved)",
        "command": "python scripts/bench_proxy.py " + " ".join(sys.argv[1:]),
        "upstream": "llama-cpp-python 0.3.36 server, SmolLM2-135M-Instruct Q4_1 GGUF, 1 thread, greedy",
        "proxies": "quco proxy --policy quco (no logprobs asked) and --policy combined (logprobs, top 5), on_risk flag, "
        "demo index (10.7M tokens) + demo BM25 collection, 1 torch thread",
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "target": "<= 5% added latency (p50) when no retrieval fires",
        **results,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load_start],
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},  # fmt: skip
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for name, g in out["comparisons"].items():
        print(f"{name}: n={g['n']} direct p50 {g['direct_ms']['p50']} ms, proxy p50 {g['proxy_ms']['p50']} ms, "
              f"added p50 {g['added_ms']['p50']} ms p99 {g['added_ms']['p99']} ms, ratio {g['ratio_p50']:+.1%}; "
              f"stage1 p50 {g['stage1_ms']['p50']} ms, stage2 p50 {g['stage2_ms']['p50']} ms, retrieval p50 {g['retrieval_ms']['p50']} ms")  # fmt: skip
    fx = out["fixed_latency_upstream"]
    print(f"fixed-latency upstream ({args.fixed_ms:g} ms): n={fx['n']} added p50 {fx['added_ms']['p50']} ms p99 {fx['added_ms']['p99']} ms, "
          f"ratio {fx['ratio_p50']:+.1%}; stage1 p50 {fx['stage1_ms']['p50']} ms, stage2 p50 {fx['stage2_ms']['p50']} ms")  # fmt: skip
    print(f"upstream's own price for logprobs: {out['upstream_logprobs_ratio_p50']:+.1%} (p50, no-retrieval questions)")
    print(f"load average {out['machine']['load_average_at_start']} -> {out['machine']['load_average_at_end']}; saved {args.out}")
    return 0


def run(args: argparse.Namespace, urls: dict[str, str]) -> dict[str, Any]:
    client = httpx.Client(timeout=300)

    def call(side: str, q: str) -> tuple[float, dict[str, Any]]:
        body: dict[str, Any] = {"model": "smollm2", "messages": [{"role": "user", "content": q}], "max_tokens": args.max_tokens, "temperature": 0}
        if side == "direct_lp":
            body.update(logprobs=True, top_logprobs=5)
        t0 = time.perf_counter()
        r = client.post(f"{urls['direct' if side == 'direct_lp' else side]}/chat/completions", json=body)
        dt = time.perf_counter() - t0
        r.raise_for_status()
        return dt, r.json()

    for q in NO_RETRIEVAL + RETRIEVAL:  # warm-up: caches, page faults, lazy loads
        call("direct", q)
        call("quco", q)
    call("combined", NO_RETRIEVAL[0])
    plans = {  # comparison: (questions, direct side, proxy side)
        "no_retrieval_quco": (NO_RETRIEVAL, "direct", "quco"),
        "retrieval_quco": (RETRIEVAL, "direct", "quco"),
        "combined_with_logprobs": (NO_RETRIEVAL, "direct_lp", "combined"),
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in plans}
    plain: dict[str, float] = {}  # the plain direct time of each (round, question), for the logprob price
    for rnd in range(args.rounds):
        for i, q in enumerate(NO_RETRIEVAL + RETRIEVAL):
            with_lp = q in NO_RETRIEVAL and rnd < args.combined_rounds
            sides = ["direct", "quco"] + (["direct_lp", "combined"] if with_lp else [])
            if (rnd + i) % 2:
                sides.reverse()
            got = {side: call(side, q) for side in sides}
            plain[f"{rnd}:{q}"] = got["direct"][0]
            for name, (questions, d_side, p_side) in plans.items():
                if q in questions and d_side in got:
                    rows[name].append(row(got[d_side], got[p_side], got["direct"][0]))
            sys.stderr.write(f"  r{rnd} q{i}: " + ", ".join(f"{s} {got[s][0] * 1000:.0f} ms" for s in sides) + "\n")
    comparisons = {name: summarize(r) for name, r in rows.items()}
    lp = rows["combined_with_logprobs"]
    return {
        "comparisons": comparisons,
        "upstream_logprobs_ratio_p50": round(pct([r["direct"] for r in lp], 50) / pct([r["plain_direct"] for r in lp], 50) - 1, 4),
    }


def row(direct: tuple[float, dict[str, Any]], proxy: tuple[float, dict[str, Any]], plain_direct: float) -> dict[str, Any]:
    (td, d), (tp, p) = direct, proxy
    rep = p["quco"]
    t = rep["timings"]
    sent = sum(s["timings"]["extraction"] + s["timings"]["corpus"] + s["timings"]["scoring"] for s in rep["sentences"])
    return {
        "direct": td, "proxy": tp, "plain_direct": plain_direct,
        "stage1": t["overhead"] - sent, "stage2": sent, "retrieval": t["retrieval"], "fired": rep["stage1"]["retrieved"],
        "extra_prompt": p["usage"]["prompt_tokens"] - d["usage"]["prompt_tokens"],
        "same": p["choices"][0]["message"]["content"] == d["choices"][0]["message"]["content"],
        "confidence": rep["confidence"]["source"],
    }  # fmt: skip


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def col(k: str) -> list[float]:
        return [float(r[k]) for r in rows]

    direct, proxy = col("direct"), col("proxy")
    same = [(r["direct"], r["proxy"]) for r in rows if r["same"]]
    return {
        "n": len(rows),
        "stage1_fired_share": round(statistics.fmean(col("fired")), 3),
        "confidence_sources": sorted({r["confidence"] for r in rows}),
        "direct_ms": stats_ms(direct),
        "proxy_ms": stats_ms(proxy),
        "added_ms": stats_ms([b - a for a, b in zip(direct, proxy)]),
        "ratio_p50": round(pct(proxy, 50) / pct(direct, 50) - 1, 4),
        "ratio_mean_paired": round(statistics.fmean(b / a - 1 for a, b in zip(direct, proxy)), 4),
        "stage1_ms": stats_ms(col("stage1")),
        "stage2_ms": stats_ms(col("stage2")),
        "retrieval_ms": stats_ms(col("retrieval")),
        "evidence_prompt_tokens_mean": round(statistics.fmean(col("extra_prompt")), 1),
        "same_answer_share": round(statistics.fmean(col("same")), 3),
        # the pairs where direct and proxied answers are the same text: the same upstream work
        "same_answer_pairs": {
            "n": len(same),
            "added_ms": stats_ms([b - a for a, b in same]) if same else None,
            "ratio_p50": round(pct([b for _, b in same], 50) / pct([a for a, _ in same], 50) - 1, 4) if same else None,
        },
    }


FIXED_ANSWER = "The capital of France is Paris. Paris is also the largest city in France."


def serve_fixed(port: int, delay: float) -> int:
    """A chat upstream that answers every request with FIXED_ANSWER (and its logprobs) after ``delay`` s."""
    import asyncio

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    toks = [t for t in FIXED_ANSWER.replace(" ", "\x00 ").split("\x00") if t]
    entries = [{"token": t, "logprob": -0.2, "bytes": None, "top_logprobs": [{"token": t, "logprob": -0.2}]} for t in toks]

    async def chat(request: Any) -> Any:
        await request.body()
        await asyncio.sleep(delay)
        return JSONResponse({
            "id": "fixed", "object": "chat.completion", "created": 0, "model": "fixed",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": FIXED_ANSWER},
                         "logprobs": {"content": entries}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": len(toks), "total_tokens": 10 + len(toks)},
        })  # fmt: skip

    async def models(request: Any) -> Any:
        return JSONResponse({"object": "list", "data": [{"id": "fixed", "object": "model"}]})

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    return 0


def run_fixed(args: argparse.Namespace, direct: str, proxy: str) -> dict[str, Any]:
    client = httpx.Client(timeout=60)
    body = {"model": "fixed", "messages": [{"role": "user", "content": "What is the capital of France?"}], "max_tokens": 32}
    times: dict[str, list[float]] = {"direct": [], "proxy": []}
    stage1, stage2 = [], []
    for side in ("direct", "proxy"):  # warm-up
        client.post(f"{direct if side == 'direct' else proxy}/chat/completions", json=body).raise_for_status()
    for i in range(args.fixed_requests):
        for side in (("direct", "proxy") if i % 2 == 0 else ("proxy", "direct")):
            t0 = time.perf_counter()
            r = client.post(f"{direct if side == 'direct' else proxy}/chat/completions", json=body)
            times[side].append(time.perf_counter() - t0)
            r.raise_for_status()
            if side == "proxy":
                rep = r.json()["quco"]
                sent = sum(s["timings"]["extraction"] + s["timings"]["corpus"] + s["timings"]["scoring"] for s in rep["sentences"])
                stage1.append(rep["timings"]["overhead"] - sent)
                stage2.append(sent)
    d, p = times["direct"], times["proxy"]
    return {
        "delay_ms": args.fixed_ms,
        "answer": FIXED_ANSWER,
        "n": len(d),
        "direct_ms": stats_ms(d),
        "proxy_ms": stats_ms(p),
        "added_ms": stats_ms([b - a for a, b in zip(d, p)]),
        "ratio_p50": round(pct(p, 50) / pct(d, 50) - 1, 4),
        "stage1_ms": stats_ms(stage1),
        "stage2_ms": stats_ms(stage2),
    }


if __name__ == "__main__":
    raise SystemExit(main())
