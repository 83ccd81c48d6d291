"""Entity extraction speed: batched ``entities_many`` vs ``entities`` one text at a time.

On ~1000 HaluEval QA texts (questions, right answers and hallucinated answers of
rows 0–333, dev split). Also times the whole pipeline run in one pass (NER and
parse on every text) to show what the two-pass design (NER alone; parse only
where NER found nothing) saves. Figures: texts/s and entities found/s, the best
of ``--repeats`` runs (the CPU is shared). Saves ``eval/results/bench_entities.json``.

Usage::

    .venv/bin/python scripts/bench_entities.py [--n 1000] [--repeats 3] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from quco.datasets import load_halueval_qa
from quco.models import spacy_model_name
from quco.nlp import EntityExtractor


def texts_for(n: int) -> list[str]:
    rows = load_halueval_qa(range(0, n // 3 + 1))
    return [t for r in rows for t in (r.question, r.right_answer, r.hallucinated_answer)][:n]


def best_of(repeats: int, fn: Callable[[], Any], label: str) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in tqdm(range(repeats), desc=label, file=sys.stderr, leave=False):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="number of texts")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", default="eval/results/bench_entities.json")
    args = ap.parse_args(argv)

    texts = texts_for(args.n)
    ex = EntityExtractor(batch_size=args.batch_size)
    t0 = time.perf_counter()
    ex.entities("Warm up in Paris.")
    load_s = time.perf_counter() - t0

    runs: dict[str, dict[str, float]] = {}

    def record(name: str, seconds: float, n_entities: int) -> None:
        runs[name] = {
            "seconds": seconds,
            "texts_per_s": len(texts) / seconds,
            "entities_per_s": n_entities / seconds,
            "entities": n_entities,
        }

    s, batched = best_of(args.repeats, lambda: ex.entities_many(texts), "batched")
    record("batched (entities_many)", s, sum(map(len, batched)))
    s, single = best_of(args.repeats, lambda: [ex.entities(t) for t in texts], "one at a time")
    record("one at a time (entities)", s, sum(map(len, single)))
    if batched != single:
        print("WARNING: batched and one-at-a-time results differ", file=sys.stderr)

    nlp = ex.nlp

    def one_pass() -> int:
        n = 0
        for doc in nlp.pipe(texts, batch_size=args.batch_size):
            n += len(doc.ents)
            n += sum(1 for _ in doc.noun_chunks)
        return n

    s, _ = best_of(args.repeats, one_pass, "full pipeline")
    fallback = sum(1 for e in batched if e and e[0].source == "noun_chunk")
    record("full pipeline, one pass (reference)", s, sum(map(len, batched)))

    payload = {
        "texts": len(texts),
        "source": "HaluEval QA rows 0-333: question, right_answer, hallucinated_answer",
        "model": spacy_model_name(ex.model),
        "pipes_loaded": list(nlp.pipe_names),
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "load_seconds": load_s,
        "texts_with_noun_chunk_fallback": fallback,
        "batched_equals_single": batched == single,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")

    print(f"{len(texts)} texts, batch_size={args.batch_size}, best of {args.repeats}; load {load_s:.1f}s")
    print(f"{'':38s}{'seconds':>9s}{'texts/s':>10s}{'entities/s':>12s}")
    for name, r in runs.items():
        print(f"{name:38s}{r['seconds']:9.2f}{r['texts_per_s']:10.0f}{r['entities_per_s']:12.0f}")
    print(f"saved {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
