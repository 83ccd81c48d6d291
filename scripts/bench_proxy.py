"""Benchmark ``quco proxy``: the latency it adds per request over calling the same upstream directly.

Starts a real model server (llama-cpp-python's OpenAI-compatible server over the
packaged SmolLM2 GGUF, one thread) and ``quco proxy`` in front of it (the CLI, a
separate process, over the demo index and BM25 collection, policy ``quco``,
``on_risk=flag``). Then, for each question, in one run and interleaved (the order
alternating between rounds so that neither side always gets the upstream's warm
prompt cache):

- **direct**: the chat request as a client would send it, to the upstream;
- **direct + logprobs**: the same with ``logprobs``/``top_logprobs=5``, which the
  proxy asks for (so the upstream's own cost of logprobs is seen apart);
- **proxy**: the same request through the proxy.

Questions come in two groups, chosen by whether stage 1 fires on the demo
index: ``no_retrieval`` (frequent entities: the request reaches the upstream
unchanged) and ``retrieval`` (rare entities: BM25 evidence is added, so the
upstream also reads a longer prompt). Greedy decoding: direct and proxied
answers are compared for equality in the first group.

Reports per group p50/p99 of direct and proxied latency, of the added latency
(paired, per request) and the ratio p50(proxy)/p50(direct) - 1 measured in this
run (target: <= 5% added when no retrieval fires), the proxy's own stage-1 and
stage-2 times and the retrieval time from its reports, and the load average.

Saves ``eval/results/bench_proxy.json``.

Usage:
    .venv/bin/python scripts/bench_proxy.py [--rounds 3] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="requests per question and side (default 3)")
    ap.add_argument("--max-tokens", type=int, default=32, help="tokens per answer (default 32)")
    ap.add_argument("--out", default="eval/results/bench_proxy.json")
    args = ap.parse_args()
    demo = DemoPaths(default_base())
    if not demo.index.exists() or not demo.retrieval.exists():
        raise SystemExit("the demo index is missing: run `make demo` first")
    load_start = os.getloadavg()
    up_port, px_port = free_port(), free_port()
    logs = Path("eval/results/.bench_proxy_logs")
    logs.mkdir(parents=True, exist_ok=True)
    up = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path()), "--host", "127.0.0.1", "--port", str(up_port),
         "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1", "--seed", "0"],
        stdout=open(logs / "upstream.log", "w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    px = None
    try:
        wait(f"http://127.0.0.1:{up_port}/v1/models", up)
        px = subprocess.Popen(
            [sys.executable, "-m", "quco", "proxy", "--upstream", f"http://127.0.0.1:{up_port}/v1", "--port", str(px_port),
             "--index", str(demo.index), "--retriever", str(demo.retrieval)],
            stdout=open(logs / "proxy.log", "w"), stderr=subprocess.STDOUT, env={**os.environ, "QUCO_TORCH_THREADS": "1"},
        )  # fmt: skip
        wait(f"http://127.0.0.1:{px_port}/quco/health", px)
        results = run(args, f"http://127.0.0.1:{up_port}/v1", f"http://127.0.0.1:{px_port}/v1")
    finally:
        for p in (px, up):
            if p is not None:
                p.terminate()
                p.wait(timeout=20)
    out = {
        "what": "quco proxy's added latency per chat request vs calling the same upstream directly (one run, interleaved)",
        "command": "python scripts/bench_proxy.py " + " ".join(sys.argv[1:]),
        "upstream": "llama-cpp-python 0.3.36 server, SmolLM2-135M-Instruct Q4_1 GGUF, 1 thread, greedy",
        "proxy": "quco proxy --policy quco --on-risk flag, demo index (10.7M tokens) + demo BM25 collection, 1 torch thread",
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "target": "<= 5% added latency (p50) when no retrieval fires",
        **results,
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_average_at_start": [round(x, 2) for x in load_start],
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},  # fmt: skip
    }
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    for group in ("no_retrieval", "retrieval"):
        g = out[group]
        print(f"{group}: n={g['n']} direct p50 {g['direct_ms']['p50']} ms, proxy p50 {g['proxy_ms']['p50']} ms, "
              f"added p50 {g['added_ms']['p50']} ms p99 {g['added_ms']['p99']} ms, ratio {g['ratio_p50']:+.1%}; "
              f"stage1 p50 {g['stage1_ms']['p50']} ms, stage2 p50 {g['stage2_ms']['p50']} ms, retrieval p50 {g['retrieval_ms']['p50']} ms")  # fmt: skip
    print(f"load average {out['machine']['load_average_at_start']} -> {out['machine']['load_average_at_end']}; saved {args.out}")
    return 0


def run(args: argparse.Namespace, direct_url: str, proxy_url: str) -> dict[str, Any]:
    client = httpx.Client(timeout=300)

    def call(base: str, q: str, logprobs: bool = False) -> tuple[float, dict[str, Any]]:
        body: dict[str, Any] = {"model": "smollm2", "messages": [{"role": "user", "content": q}], "max_tokens": args.max_tokens, "temperature": 0}
        if logprobs:
            body.update(logprobs=True, top_logprobs=5)
        t0 = time.perf_counter()
        r = client.post(f"{base}/chat/completions", json=body)
        dt = time.perf_counter() - t0
        r.raise_for_status()
        return dt, r.json()

    for q in NO_RETRIEVAL + RETRIEVAL:  # warm-up: caches, page faults, lazy loads
        call(direct_url, q)
        call(proxy_url, q)
    out: dict[str, Any] = {}
    for group, questions in (("no_retrieval", NO_RETRIEVAL), ("retrieval", RETRIEVAL)):
        direct, direct_lp, proxy, added = [], [], [], []
        stage1, stage2, retrieval, extra_prompt, same, fired = [], [], [], [], [], []
        for rnd in range(args.rounds):
            for i, q in enumerate(questions):
                order = ["direct", "direct_lp", "proxy"] if (rnd + i) % 2 == 0 else ["proxy", "direct_lp", "direct"]
                got: dict[str, tuple[float, dict[str, Any]]] = {}
                for side in order:
                    got[side] = call(proxy_url if side == "proxy" else direct_url, q, logprobs=side == "direct_lp")
                (td, d), (tl, _), (tp, p) = got["direct"], got["direct_lp"], got["proxy"]
                direct.append(td)
                direct_lp.append(tl)
                proxy.append(tp)
                added.append(tp - td)
                rep = p["quco"]
                t = rep["timings"]
                sent = sum(s["timings"]["extraction"] + s["timings"]["corpus"] + s["timings"]["scoring"] for s in rep["sentences"])
                stage1.append(t["overhead"] - sent)
                stage2.append(sent)
                retrieval.append(t["retrieval"])
                fired.append(rep["stage1"]["retrieved"])
                extra_prompt.append(p["usage"]["prompt_tokens"] - d["usage"]["prompt_tokens"])
                same.append(p["choices"][0]["message"]["content"] == d["choices"][0]["message"]["content"])
                sys.stderr.write(f"  {group} r{rnd} q{i}: direct {td * 1000:.0f} ms, proxy {tp * 1000:.0f} ms\n")
        p50d = pct(direct, 50)
        out[group] = {
            "n": len(direct),
            "stage1_fired_share": round(sum(fired) / len(fired), 3),
            "direct_ms": stats_ms(direct),
            "direct_with_logprobs_ms": stats_ms(direct_lp),
            "proxy_ms": stats_ms(proxy),
            "added_ms": stats_ms(added),
            "ratio_p50": round(pct(proxy, 50) / p50d - 1, 4),
            "ratio_mean_paired": round(statistics.fmean(b / a - 1 for a, b in zip(direct, proxy)), 4),
            "upstream_logprobs_ratio_p50": round(pct(direct_lp, 50) / p50d - 1, 4),
            "stage1_ms": stats_ms(stage1),
            "stage2_ms": stats_ms(stage2),
            "retrieval_ms": stats_ms(retrieval),
            "evidence_prompt_tokens_mean": round(statistics.fmean(extra_prompt), 1),
            "same_answer_share": round(sum(same) / len(same), 3),
        }
    return out


if __name__ == "__main__":
    raise SystemExit(main())
