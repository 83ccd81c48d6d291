"""Benchmark the guard: its own overhead, and guarded QA on HaluEval (``quco eval qa``).

1. Overhead: the ``quco`` policy (and ``combined`` when its model is available)
   answers ``--overhead-rows`` questions with the demo index; for every checked
   sentence the guard's own work (entity extraction + corpus queries + risk
   scoring) is compared with the time spent generating that sentence. Reports
   p50/p99 of the per-sentence overhead (ms) and of its share of generation
   time, and the share over all questions (target: under 3%).
2. QA: ``quco eval qa`` over ``--qa-rows`` (default 2000-2199) for
   ``--policies``. The time per question is measured on the first
   ``--probe-rows`` rows; when all rows would take longer than ``--budget-min``,
   the row range is cut to fit (the JSON says what ran). Results are
   resumable (``eval/results/qa/qa_rows.jsonl``).

Saves ``eval/results/bench_guard.json`` and the QA results under ``eval/results/qa/``.

Usage:
    .venv/bin/python scripts/bench_guard.py [--budget-min 40] [--policies none,single,flare,quco,combined]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from quco.datasets import load_halueval_qa, parse_rows
from quco.demo import DemoPaths, default_base
from quco.evaluation.qa import run_qa
from quco.guard import Guard
from quco.guard.factory import load_extractor, load_generator, open_corpus, open_retrieval


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    i = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[i]


def overhead(guard: Guard, rows: list[Any]) -> dict[str, Any]:
    per_sentence_ms: list[float] = []
    per_sentence_share: list[float] = []
    stage1_ms: list[float] = []
    gen_total = over_total = 0.0
    seconds: list[float] = []
    for i, row in enumerate(rows):
        r = guard.answer(row.question)
        sys.stderr.write(f"  [{i + 1}/{len(rows)}] row {row.row}: {r.seconds:.1f}s, overhead {r.timings.overhead * 1000:.0f} ms\n")
        seconds.append(r.seconds)
        gen_total += r.timings.generation
        over_total += r.timings.overhead
        sent_over = sum(s.timings.overhead for s in r.sentences)
        stage1_ms.append((r.timings.overhead - sent_over) * 1000)
        for s in r.sentences:
            if s.risk is None:
                continue
            per_sentence_ms.append(s.timings.overhead * 1000)
            if s.timings.generation > 0:
                per_sentence_share.append(s.timings.overhead / s.timings.generation)
    return {
        "questions": len(rows),
        "checked_sentences": len(per_sentence_ms),
        "overhead_share_total": over_total / gen_total if gen_total else None,
        "sentence_overhead_ms_p50": pct(per_sentence_ms, 50),
        "sentence_overhead_ms_p99": pct(per_sentence_ms, 99),
        "sentence_share_p50": pct(per_sentence_share, 50),
        "sentence_share_p99": pct(per_sentence_share, 99),
        "stage1_overhead_ms_p50": pct(stage1_ms, 50),
        "stage1_overhead_ms_p99": pct(stage1_ms, 99),
        "generation_seconds_total": gen_total,
        "overhead_seconds_total": over_total,
        "seconds_per_question": statistics.mean(seconds) if seconds else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--overhead-rows", default="2000-2019")
    ap.add_argument("--qa-rows", default="2000-2199")
    ap.add_argument("--probe-rows", type=int, default=20)
    ap.add_argument("--policies", default="none,single,flare,quco,combined")
    ap.add_argument("--budget-min", type=float, default=40.0, help="time budget for the QA run (minutes)")
    ap.add_argument("--max-sentences", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--out", default="eval/results")
    args = ap.parse_args()

    demo = DemoPaths(default_base())
    if not demo.index.exists() or not demo.retrieval.exists():
        sys.stderr.write(f"demo index or retrieval collection missing under {demo.base}: run `quco demo` first\n")
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stats = open_corpus(demo.index)
    retriever = open_retrieval(demo.retrieval)
    extractor = load_extractor()
    generator = load_generator()
    load_s = time.perf_counter() - t0
    common = dict(max_sentences=args.max_sentences, max_new_tokens=args.max_new_tokens)

    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    guards: dict[str, Guard] = {}
    skipped: dict[str, str] = {}
    for p in policies:
        try:
            guards[p] = Guard(generator, extractor, stats, retriever, policy=p, **common)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - a policy that cannot run is reported, not fatal
            skipped[p] = f"{type(exc).__name__}: {exc}"
            sys.stderr.write(f"skipping policy {p}: {skipped[p]}\n")

    report: dict[str, Any] = {
        "machine": {"python": platform.python_version(), "processor": platform.processor() or platform.machine()},
        "model": getattr(generator, "name", ""),
        "index": str(demo.index),
        "retriever": str(demo.retrieval),
        "load_seconds": load_s,
        "settings": common,
        "skipped_policies": skipped,
        "overhead": {},
    }
    ov_rows = load_halueval_qa(parse_rows(args.overhead_rows))
    guards.get("quco", next(iter(guards.values()))).answer(ov_rows[0].question)  # warm-up: spaCy, corpus pages
    for p in ("quco", "combined"):
        if p in guards:
            sys.stderr.write(f"overhead: {p} on {len(ov_rows)} questions\n")
            report["overhead"][p] = overhead(guards[p], ov_rows)
            sys.stderr.write(json.dumps(report["overhead"][p], indent=1) + "\n")

    qa_rows = load_halueval_qa(parse_rows(args.qa_rows))
    qa_out = out / "qa"
    cfg = {"rows": args.qa_rows, "model": report["model"], "index": str(demo.index), "retriever": str(demo.retrieval), **common}
    cmd = f"python scripts/bench_guard.py --policies {','.join(guards)} --qa-rows {args.qa_rows}"
    probe = qa_rows[: args.probe_rows]
    t1 = time.perf_counter()
    run_qa(probe, guards, qa_out, config=cfg, command=cmd)
    per_row = (time.perf_counter() - t1) / max(1, len(probe))
    budget_rows = int(args.budget_min * 60 / per_row) + len(probe) if per_row > 0 else len(qa_rows)
    n_rows = min(len(qa_rows), budget_rows)
    report["qa_probe_seconds_per_row_all_policies"] = per_row
    report["qa_rows_run"] = [qa_rows[0].row, qa_rows[n_rows - 1].row]
    sys.stderr.write(f"QA: {per_row:.1f}s per row over {len(guards)} policies; running {n_rows} rows\n")
    summary = run_qa(qa_rows[:n_rows], guards, qa_out, config=cfg, command=cmd)
    report["qa"] = summary
    (out / "bench_guard.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps({"overhead": report["overhead"], "qa": summary["policies"], "n": summary["n"]}, indent=2))  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
