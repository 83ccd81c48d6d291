"""Benchmark ``quco audit``: answers/s data side only and with the model, with peak RSS.

Input: HaluEval QA rows 0–1999, alternating the right answer (even rows,
``label`` 0) and the hallucinated one (odd rows, ``label`` 1). Each mode runs in
its own process (so peak RSS is that mode's alone) through the same objects as
``quco audit`` (:class:`~quco.audit.runner.Auditor`, :func:`~quco.audit.runner.run_audit`,
a :class:`~quco.corpus.cache.CachedStats` in front of the index), and reports:

- ``answers_per_s`` over the audit itself (setup — loading spaCy, the
  tokenizer, the model — is reported apart as ``setup_s``);
- where the time goes: entity extraction, corpus queries, confidence scoring
  (with the prefetch, extraction runs in a background thread and overlaps the
  corpus queries, so the parts add up to more than the wall time; the
  ``data-serial`` mode runs them in turn and reports the rest as ``other``:
  analysis glue, policies, JSON, fsync);
- ``answers_per_cpu_s``: answers per CPU-second of the process, a figure less
  sensitive than wall time to other jobs sharing the machine;
- peak RSS and RSS sampled after each quarter of the input (flat = constant memory);
- the ROC-AUC of the headline risk against the labels (for orientation only:
  HaluEval's given answers are separable by length, see DESIGN.md).

Usage::

    python scripts/bench_audit.py [--index indexes/built/index] [--rows 2000] [--modes data,model]

Needs the demo index (``quco demo`` builds it at ``indexes/built/index``); when
it is missing, an index of the HaluEval knowledge passages and the Wikipedia
summaries is built once at ``indexes/built/bench-index``. Saves
``eval/results/bench_audit.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.types import Count

RESULTS = Path("eval/results/bench_audit.json")


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer:
    """Accumulated seconds per component."""

    def __init__(self) -> None:
        self.s: dict[str, float] = {}

    def add(self, key: str, dt: float) -> None:
        self.s[key] = self.s.get(key, 0.0) + dt


class TimedExtractor:
    def __init__(self, inner: Any, timer: Timer) -> None:
        self.inner, self.timer = inner, timer

    def entities(self, text: str) -> Any:
        return self.entities_many([text])[0]

    def entities_many(self, texts: Sequence[str]) -> Any:
        t = time.perf_counter()
        try:
            return self.inner.entities_many(texts)
        finally:
            self.timer.add("extraction", time.perf_counter() - t)

    def pairs(self, sentence: Any, question: Any = ()) -> Any:
        return self.inner.pairs(sentence, question)

    def new_entities(self, answer: Any, question: Any) -> Any:
        return self.inner.new_entities(answer, question)


class TimedClaims:
    """A claim extractor whose time is counted as ``claims``."""

    def __init__(self, inner: Any, timer: Timer) -> None:
        self.inner, self.timer = inner, timer

    def claims_many(self, sentences: Sequence[str], questions: Sequence[str] | None = None) -> Any:
        t = time.perf_counter()
        try:
            return self.inner.claims_many(sentences, questions)
        finally:
            self.timer.add("claims", time.perf_counter() - t)


class TimedStats(CorpusStats):
    def __init__(self, inner: CorpusStats, timer: Timer) -> None:
        self.inner, self.timer = inner, timer

    def count(self, term: str) -> Count:
        return self.count_many([term])[0]

    def cooccur(
        self, a: str, b: str, *, window: int | None = DEFAULT_WINDOW, mode: CoocMode = "window"
    ) -> Count:
        return self.cooccur_many([(a, b)], window=window, mode=mode)[0]

    def count_many(self, terms: Sequence[str]) -> list[Count]:
        t = time.perf_counter()
        try:
            return self.inner.count_many(terms)
        finally:
            self.timer.add("corpus_counts", time.perf_counter() - t)

    def cooccur_many(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        window: int | None = DEFAULT_WINDOW,
        mode: CoocMode = "window",
    ) -> list[Count]:
        t = time.perf_counter()
        try:
            return self.inner.cooccur_many(pairs, window=window, mode=mode)
        finally:
            self.timer.add("corpus_cooccurrence", time.perf_counter() - t)

    def close(self) -> None:
        self.inner.close()

    @property
    def backend(self) -> Any:
        """The n-gram novelty counts (:func:`quco.corpus.ngrams.ngram_backend`) go through :class:`TimedNgrams`."""
        from quco.corpus.ngrams import ngram_backend

        found = ngram_backend(self.inner)
        return None if found is None else TimedNgrams(*found, self.timer)


class TimedNgrams:
    """Tokenizing and counting the answers' n-grams, timed as the ``ngrams`` part."""

    def __init__(self, tokenize: Any, count_ids: Any, timer: Timer) -> None:
        self._tokenize, self._count_ids, self.timer = tokenize, count_ids, timer

    def tokenize_many(self, texts: Sequence[str]) -> Any:
        t = time.perf_counter()
        try:
            return self._tokenize(texts)
        finally:
            self.timer.add("ngrams", time.perf_counter() - t)

    def count_ids_many(self, grams: Sequence[tuple[int, ...]]) -> Any:
        t = time.perf_counter()
        try:
            return self._count_ids(grams)
        finally:
            self.timer.add("ngrams", time.perf_counter() - t)


class TimedScorer:
    def __init__(self, inner: Any, timer: Timer) -> None:
        self.inner, self.timer = inner, timer

    def score_many(self, pairs: Sequence[tuple[str, str]]) -> Any:
        t = time.perf_counter()
        try:
            return self.inner.score_many(pairs)
        finally:
            self.timer.add("confidence_scoring", time.perf_counter() - t)

    def score(self, prompt: str, continuation: str) -> Any:
        t = time.perf_counter()
        try:
            return self.inner.score(prompt, continuation)
        finally:
            self.timer.add("confidence_scoring", time.perf_counter() - t)


def write_input(path: Path, n: int) -> Path:
    from quco.datasets import iter_halueval_qa

    with open(path, "w", encoding="utf-8") as f:
        for r in iter_halueval_qa(range(n)):
            hall = r.row % 2 == 1
            ans = r.hallucinated_answer if hall else r.right_answer
            f.write(
                json.dumps({"id": r.row, "question": r.question, "answer": ans, "label": int(hall)}) + "\n"
            )
    return path


def ensure_index(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    from quco.demo import DemoPaths, default_base, export_demo_corpus

    paths = DemoPaths(default_base())
    if (paths.index / "manifest.json").exists() or paths.index.exists():
        return paths.index
    fallback = paths.base / "bench-index"
    if not fallback.exists():
        from quco.corpus.build import build_index

        files = export_demo_corpus(paths.corpus)
        knowledge_and_wiki = [p for p in files if "news" not in p.name]
        print(
            f"demo index missing: building {fallback} from {[p.name for p in knowledge_and_wiki]}",
            file=sys.stderr,
        )
        build_index(knowledge_and_wiki, fallback, progress=True)
    return fallback


def child(mode: str, input_path: Path, index: Path, batch_size: int, model: str | None) -> dict[str, Any]:
    """One mode in this process; returns the figures."""
    t0 = time.perf_counter()
    from quco.analyze import Analyzer
    from quco.audit.runner import Auditor, MemoExtractor, run_audit
    from quco.audit.verdicts import default_judge, load_combined
    from quco.corpus import open_stats
    from quco.corpus.cache import CachedStats
    from quco.nlp.entities import EntityExtractor

    timer = Timer()
    use_model = mode == "model"
    prefetch = mode != "data-serial"
    scorer = None
    if use_model:
        from quco.lm.confidence import ConfidenceScorer
        from quco.models import canonical

        scorer = TimedScorer(ConfidenceScorer(canonical(model)), timer)
    extractor = EntityExtractor()
    extractor.nlp  # noqa: B018 - load now: setup, not audit time
    cache = CachedStats(open_stats(str(index)), maxsize=200_000)
    stats = TimedStats(cache, timer)
    combined = load_combined(model=use_model)
    # data-claims: as quco audit --no-model (claims, the default); "data" is --claims pairs;
    # data-ngrams: as quco audit --no-model --ngrams (claims and the n-gram novelty features)
    claims = mode in ("data-claims", "data-ngrams")
    ngrams = mode == "data-ngrams"
    judge = default_judge(model=use_model, combined=combined, claims="triplets" if claims else "pairs")
    if mode == "data-serial":  # the memo hidden behind the timer: no prefetch, extraction and queries in turn
        ex: Any = TimedExtractor(MemoExtractor(extractor), timer)
    else:  # as quco audit: next batch's extraction in a background thread while this batch queries the corpus
        ex = MemoExtractor(TimedExtractor(extractor, timer))
    claim_ex = TimedClaims(extractor.claim_extractor(), timer) if claims else None
    auditor = Auditor(Analyzer(ex, stats, claim_extractor=claim_ex, ngrams=ngrams), judge, scorer=scorer)
    setup_s = time.perf_counter() - t0
    rss_setup = rss_mib()

    n_lines = sum(1 for _ in open(input_path, "rb"))
    samples: list[tuple[int, float]] = []
    marks = {n_lines * q // 4 for q in (1, 2, 3, 4)}

    def on_batch(lines: int) -> None:
        if any(lines >= m and (not samples or samples[-1][0] < m) for m in marks):
            samples.append((lines, round(rss_mib(), 1)))

    out = Path(tempfile.mkdtemp(prefix="bench-audit-")) / f"{mode}.jsonl"
    t1, c1 = time.perf_counter(), time.process_time()
    summary = run_audit(input_path, out, auditor, batch_size=batch_size, progress=True, on_batch=on_batch)
    audit_s, cpu_s = time.perf_counter() - t1, time.process_time() - c1
    if not samples or samples[-1][0] != summary.lines:
        samples.append((summary.lines, round(rss_mib(), 1)))

    import numpy as np

    from quco.evaluation.metrics import fill_missing, roc_auc

    y, risk = [], []
    with_novelty = 0
    with open(out, "rb") as f:
        for line in f:
            rec = json.loads(line)
            with_novelty += rec.get("novelty") is not None
            y.append(rec["label"])
            risk.append(np.nan if rec["risk"] is None else rec["risk"])
    from quco.audit.report import build_report

    t2 = time.perf_counter()
    build_report(out, out.with_suffix(".html"))
    report_s = time.perf_counter() - t2
    parts = {k: round(v, 2) for k, v in timer.s.items()}
    if not prefetch:
        parts["other"] = round(audit_s - sum(timer.s.values()), 2)
    info = cache.cache_info()
    return {
        "mode": mode,
        "input": str(input_path),
        "policies": list(judge.names),
        "answers": summary.audited,
        "bad_rows": summary.bad,
        "batch_size": batch_size,
        "setup_s": round(setup_s, 2),
        "audit_s": round(audit_s, 2),
        "answers_per_s": round(summary.audited / audit_s, 1),
        "cpu_s": round(cpu_s, 2),
        "answers_per_cpu_s": round(summary.audited / cpu_s, 1),
        "load_average_1min_at_end": os.getloadavg()[0],
        "report_s": round(report_s, 2),
        "report": str(out.with_suffix(".html")),
        "prefetch": prefetch,
        "seconds_by_part": parts,
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "rss_after_setup_mib": round(rss_setup, 1),
        "rss_by_progress_mib": samples,
        "cache_hit_rate": round(info.hit_rate, 3),
        "answers_with_ngram_novelty": with_novelty,
        "roc_auc_headline_risk": round(roc_auc(np.array(y), fill_missing(np.array(risk, dtype=float))), 4),
        "headline": judge.headline,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", help="corpus index (default: the demo index)")
    ap.add_argument("--rows", type=int, default=2000, help="HaluEval QA rows 0..N-1 (default 2000)")
    ap.add_argument(
        "--modes",
        default="data,data-serial,model",
        help="comma-separated: data (as quco audit --no-model --claims pairs), data-claims (as quco audit "
        "--no-model: claims, the default), data-ngrams (as quco audit --no-model --ngrams), data-serial (no "
        "extraction prefetch), model",
    )
    ap.add_argument(
        "--model-rows",
        type=int,
        default=None,
        help="rows for the model mode (default: --rows); scoring is slow on CPU",
    )
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument(
        "--merge", action="store_true", help="keep modes already in --out that this run does not redo"
    )
    ap.add_argument("--model", default=None, help="model for the model mode (default smollm2-135m-instruct)")
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        res = child(args.child, Path(args.input), Path(args.index), args.batch_size, args.model)
        print(json.dumps(res))
        return 0

    index = ensure_index(args.index)
    tmp = Path(tempfile.mkdtemp(prefix="bench-audit-in-"))
    inputs = {"all": write_input(tmp / f"halueval_qa_0_{args.rows - 1}.jsonl", args.rows)}
    model_rows = args.model_rows or args.rows
    inputs["model"] = (
        inputs["all"]
        if model_rows == args.rows
        else write_input(tmp / f"halueval_qa_0_{model_rows - 1}.jsonl", model_rows)
    )
    results: dict[str, Any] = {
        "benchmark": "quco audit throughput",
        "input": f"HaluEval QA rows 0-{args.rows - 1} (model mode: 0-{(args.model_rows or args.rows) - 1}), "
        "right answer on even rows (label 0), hallucinated on odd (label 1)",
        "index": str(index),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "load_average_at_start": os.getloadavg(),
        "target": ">= 100 answers/s data side only",
        "modes": {},
    }
    if args.merge and Path(args.out).exists():
        results["modes"] = json.loads(Path(args.out).read_text(encoding="utf-8")).get("modes", {})
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        inp = inputs["model"] if mode == "model" else inputs["all"]
        cmd = [sys.executable, __file__, "--child", mode, "--input", str(inp), "--index", str(index),
               "--batch-size", str(args.batch_size)] + (["--model", args.model] if args.model else [])  # fmt: skip
        print(f"== {mode}", file=sys.stderr)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            results["modes"][mode] = {"error": f"exit {proc.returncode}"}
            continue
        results["modes"][mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    results["load_average_at_end"] = os.getloadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for mode, r in results["modes"].items():
        if "error" in r:
            print(f"{mode:6s} failed: {r['error']}")
            continue
        print(
            f"{mode:6s} {r['answers']} answers in {r['audit_s']:.1f}s = {r['answers_per_s']:.1f} answers/s "
            f"(setup {r['setup_s']:.1f}s; {r['answers_per_cpu_s']:.1f} answers per CPU-second), peak RSS {r['peak_rss_mib']:.0f} MiB, parts {r['seconds_by_part']}, "
            f"ROC-AUC({r['headline']}) {r['roc_auc_headline_risk']}"
        )
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
