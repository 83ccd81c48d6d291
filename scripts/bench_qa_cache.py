"""Seconds per question of the guard with and without the generator's prefix KV cache, in one run.

For each HaluEval QA development row, each prompt and each policy, the same
question is answered twice by generators sharing one loaded model: one that
keeps the KV cache of the prompt and accepted sentences (``HFGenerator``'s
default) and one that reads the whole context again for every sentence
(``prefix_cache=False``). The two are interleaved row by row, so machine load
falls on both alike. It reports seconds per question per (prompt, policy,
cache), the ``quco`` / ``none`` ratio with and without the cache (target: at
most 1.6 with it), the cache's speed-up, and whether both gave the same
answers.

    python scripts/bench_qa_cache.py --rows 1000-1014 --out eval/results/bench_qa_cache.json

Development rows only (0-1999).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from quco.datasets import check_fit_rows, load_halueval_qa, parse_rows
from quco.guard import Guard
from quco.guard.factory import load_extractor, open_corpus, open_retrieval
from quco.lm.generator import HFGenerator
from quco.models import load_causal_lm

DEFAULTS = {"short": (2, 32), "cot": (6, 48)}  # the eval qa defaults: (max sentences, max new tokens)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000-1014")
    ap.add_argument("--prompts", default="short,cot")
    ap.add_argument("--policies", default="none,quco")
    ap.add_argument("--model", default=None)
    ap.add_argument("--index", default="indexes/built/index")
    ap.add_argument("--retriever", default="indexes/built/retrieval")
    ap.add_argument("--out", default="eval/results/bench_qa_cache.json")
    args = ap.parse_args(argv)
    rows = load_halueval_qa(parse_rows(args.rows))
    check_fit_rows([r.row for r in rows])
    prompts = args.prompts.split(",")
    policies = args.policies.split(",")
    lm = load_causal_lm(args.model)
    gens = {True: HFGenerator(lm, prefix_cache=True), False: HFGenerator(lm, prefix_cache=False)}
    stats = open_corpus(args.index)
    ret = open_retrieval(args.retriever)
    ex = load_extractor()
    claims = ex.claim_extractor()
    claims.claims_many(["Paris is in France."])  # load the parser before timing
    guards: dict[tuple[str, str, bool], Guard] = {}
    for pr in prompts:
        ms, mt = DEFAULTS[pr]
        for pol in policies:
            for cache, gen in gens.items():
                needs = pol in ("quco", "combined")
                guards[pr, pol, cache] = Guard(
                    gen, ex if needs else None, stats if needs else None, ret if pol != "none" else None,
                    policy=pol, prompt=pr, max_sentences=ms, max_new_tokens=mt,
                    claim_extractor=claims if needs else None,
                )
    secs: dict[tuple[str, str, bool], list[float]] = {k: [] for k in guards}
    gen_secs: dict[tuple[str, str, bool], list[float]] = {k: [] for k in guards}
    same: dict[tuple[str, str], list[bool]] = {(pr, pol): [] for pr in prompts for pol in policies}
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    for i, row in enumerate(rows):
        for pr in prompts:
            for pol in policies:
                answers = {}
                for cache in ((True, False) if i % 2 == 0 else (False, True)):  # alternate which goes first
                    r = guards[pr, pol, cache].answer(row.question)
                    secs[pr, pol, cache].append(r.seconds)
                    gen_secs[pr, pol, cache].append(r.timings.generation)
                    answers[cache] = r.answer
                same[pr, pol].append(answers[True] == answers[False])
        print(f"row {row.row} done ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)

    def mean(xs: list[float]) -> float:
        return round(sum(xs) / len(xs), 3) if xs else float("nan")

    out: dict[str, Any] = {
        "what": "seconds per question, guard with vs without the generator's prefix KV cache, interleaved in one run",
        "rows": args.rows,
        "n": len(rows),
        "model": lm.name,
        "torch_threads": os.environ.get("QUCO_TORCH_THREADS"),
        "load_average_start": round(load0, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "prompts": {},
    }
    for pr in prompts:
        d: dict[str, Any] = {"policies": {}}
        for pol in policies:
            on, off = mean(secs[pr, pol, True]), mean(secs[pr, pol, False])
            d["policies"][pol] = {
                "seconds_per_question_cached": on,
                "seconds_per_question_uncached": off,
                "generation_seconds_cached": mean(gen_secs[pr, pol, True]),
                "generation_seconds_uncached": mean(gen_secs[pr, pol, False]),
                "speedup": round(off / on, 3) if on else None,
                "same_answers": f"{sum(same[pr, pol])}/{len(same[pr, pol])}",
            }
        if "none" in policies and "quco" in policies:
            p = d["policies"]
            d["quco_over_none_cached"] = round(p["quco"]["seconds_per_question_cached"] / p["none"]["seconds_per_question_cached"], 3)
            d["quco_over_none_uncached"] = round(
                p["quco"]["seconds_per_question_uncached"] / p["none"]["seconds_per_question_uncached"], 3
            )
            d["target"] = "quco_over_none_cached <= 1.6"
        out["prompts"][pr] = d
    out["context_tokens"] = {  # tokens of the contexts read, and those actually fed to the model
        "cached": asdict(gens[True].cache_stats),
        "uncached": asdict(gens[False].cache_stats),
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    for pr, d in out["prompts"].items():
        for pol, m in d["policies"].items():
            print(f"{pr:5s} {pol:8s} cached {m['seconds_per_question_cached']:.2f} s/q, uncached "
                  f"{m['seconds_per_question_uncached']:.2f} s/q, speed-up {m['speedup']}, same answers {m['same_answers']}")
        if "quco_over_none_cached" in d:
            print(f"{pr:5s} quco/none: {d['quco_over_none_uncached']} without the cache -> {d['quco_over_none_cached']} with it")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
