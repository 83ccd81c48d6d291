"""Benchmark the packaged LMs: load time (cold / warm), scoring and generation throughput.

For each model:

- cold load: from the GGUF into an empty temporary cache (dequantize, convert
  the tokenizer, write the safetensors copy);
- warm load: the same again, now read from that cache;
- scoring: ``ConfidenceScorer.score_many`` over prompt/answer pairs (batched),
  tokens per second of continuation (and of everything the model read);
- generation: ``HFGenerator.generate`` (greedy, KV cache), new tokens per second.

Writes ``eval/results/bench_lm.json`` and prints a table. Higher tokens/s is
better; lower load time is better.

Usage::

    python scripts/bench_lm.py [--models smollm2-135m-instruct gemma3-270m] [--threads N] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote the play Hamlet?",
    "When did the Second World War end?",
    "What is the largest planet in the Solar System?",
    "Which element has the chemical symbol O?",
    "Who painted the Mona Lisa?",
    "What is the boiling point of water at sea level?",
    "Which river flows through Cairo?",
]
ANSWERS = [
    "The capital of France is Paris, which is also its largest city and sits on the river Seine.",
    "Hamlet was written by William Shakespeare around the year 1600, and it is one of his tragedies.",
    "The Second World War ended in 1945, with the surrender of Germany in May and Japan in September.",
    "Jupiter is the largest planet in the Solar System; it is a gas giant with dozens of moons.",
    "The chemical symbol O stands for oxygen, an element that makes up about a fifth of the air.",
    "The Mona Lisa was painted by Leonardo da Vinci in the early sixteenth century in Florence.",
    "At sea level water boils at 100 degrees Celsius, which is 212 degrees Fahrenheit.",
    "The Nile flows through Cairo on its way north to the Mediterranean Sea.",
]


def bench_load(name: str) -> dict[str, Any]:
    """Cold (GGUF into an empty cache) and warm (from that cache) load times."""
    from quco.models import clear_lm_memo, load_causal_lm

    out: dict[str, Any] = {}
    old = os.environ.get("QUCO_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="quco-bench-cache-") as tmp:
        os.environ["QUCO_CACHE_DIR"] = tmp
        try:
            clear_lm_memo()
            t = time.perf_counter()
            lm = load_causal_lm(name, reuse=False)
            out["cold_load_s"] = round(time.perf_counter() - t, 3)
            out["cold_source"] = lm.source
            del lm
            gc.collect()
            warm = []
            for _ in range(3):
                t = time.perf_counter()
                lm = load_causal_lm(name, reuse=False)
                warm.append(time.perf_counter() - t)
                out["warm_source"] = lm.source
                del lm
                gc.collect()
            out["warm_load_s"] = round(min(warm), 3)
            out["warm_load_all_s"] = [round(w, 3) for w in warm]
        finally:
            if old is None:
                os.environ.pop("QUCO_CACHE_DIR", None)
            else:
                os.environ["QUCO_CACHE_DIR"] = old
            clear_lm_memo()
    return out


def bench_scoring(lm: Any, *, n_pairs: int, batch_size: int) -> dict[str, Any]:
    from quco.lm.confidence import ConfidenceScorer
    from quco.lm.prompting import encode_context

    scorer = ConfidenceScorer(lm, batch_size=batch_size)
    pairs = [(QUESTIONS[i % len(QUESTIONS)], ANSWERS[i % len(ANSWERS)]) for i in range(n_pairs)]
    scorer.score_many(pairs[:2])  # warm-up
    t = time.perf_counter()
    confs = scorer.score_many(pairs)
    dt = time.perf_counter() - t
    cont_tokens = sum(len(c) for c in confs)
    read = sum(len(encode_context(lm, p, chat=scorer.chat).ids) for p, _ in pairs) + cont_tokens
    t = time.perf_counter()
    for p, c in pairs[:batch_size]:
        scorer.score(p, c)
    dt1 = time.perf_counter() - t
    one_tokens = sum(len(c) for c in confs[:batch_size])
    return {
        "pairs": n_pairs,
        "batch_size": batch_size,
        "continuation_tokens": cont_tokens,
        "tokens_read": read,
        "seconds": round(dt, 3),
        "scored_tokens_per_s": round(cont_tokens / dt, 1),
        "read_tokens_per_s": round(read / dt, 1),
        "unbatched_scored_tokens_per_s": round(one_tokens / dt1, 1),
    }


def bench_generation(lm: Any, *, n_prompts: int, max_new_tokens: int) -> dict[str, Any]:
    from quco.lm.generator import HFGenerator

    gen = HFGenerator(lm)
    gen.generate(QUESTIONS[0], max_new_tokens=2)  # warm-up
    tokens = 0
    t = time.perf_counter()
    samples = []
    for q in QUESTIONS[:n_prompts]:
        g = gen.generate(q, max_new_tokens=max_new_tokens)
        tokens += len(g.confidence)
        samples.append(
            {
                "prompt": q,
                "text": g.text,
                "finish_reason": g.finish_reason,
                "mean_logprob": g.confidence.mean_logprob,
            }
        )
    dt = time.perf_counter() - t
    return {
        "prompts": n_prompts,
        "max_new_tokens": max_new_tokens,
        "new_tokens": tokens,
        "seconds": round(dt, 3),
        "new_tokens_per_s": round(tokens / dt, 1),
        "samples": samples,
    }


def main() -> int:
    from quco.models import DEFAULT_LM, GEMMA_LM

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=[DEFAULT_LM, GEMMA_LM])
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--quick", action="store_true", help="fewer pairs and tokens")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold/warm load timing")
    ap.add_argument("--out", default="eval/results/bench_lm.json")
    args = ap.parse_args()

    import torch
    import transformers

    if args.threads:
        torch.set_num_threads(args.threads)
    from quco.models import load_causal_lm

    n_pairs, n_prompts, new_tokens = (8, 2, 16) if args.quick else (32, 4, 32)
    results: dict[str, Any] = {
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        },
        "models": {},
    }
    for name in args.models:
        row: dict[str, Any] = {}
        try:
            if not args.no_cold:
                print(f"[{name}] load cold/warm ...", flush=True)
                row["load"] = bench_load(name)
            lm = load_causal_lm(name)
            row["device"] = lm.device
            row["dtype"] = str(lm.model.dtype)
            row["params_m"] = round(sum(p.numel() for p in lm.model.parameters()) / 1e6, 1)
            row["chat_template"] = lm.has_chat_template
            print(f"[{name}] scoring ...", flush=True)
            row["scoring"] = bench_scoring(lm, n_pairs=n_pairs, batch_size=8)
            print(f"[{name}] generation ...", flush=True)
            row["generation"] = bench_generation(lm, n_prompts=n_prompts, max_new_tokens=new_tokens)
        except Exception as exc:  # noqa: BLE001 - a model that fails is reported, the others still run
            row["error"] = f"{type(exc).__name__}: {exc}"
        results["models"][name] = row
        load = row.get("load", {})
        print(
            f"{name:24s} cold {load.get('cold_load_s', '-')} s  warm {load.get('warm_load_s', '-')} s  "
            f"score {row.get('scoring', {}).get('scored_tokens_per_s', '-')} tok/s  "
            f"gen {row.get('generation', {}).get('new_tokens_per_s', '-')} tok/s"
            + (f"  ERROR {row['error']}" if "error" in row else ""),
            flush=True,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
