"""``quco audit IN.jsonl --out OUT.jsonl [--report REPORT.html]``: offline hallucination audits."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from quco.cli._data_options import add_data_options, data_kwargs
from quco.corpus.base import DEFAULT_WINDOW

#: exit statuses above this mean "this many bad rows or more"
MAX_BAD_STATUS = 125

_EPILOG = f"""\
input rows (JSONL): question, answer (strings, required); optional id (else the
line number), context (retrieved documents: a string or a list of strings),
label (1 = hallucinated, 0 = faithful); other fields pass through.

output: one JSON line per good row, in input order: risk (the 'combined'
probability when there is one, else the 'quco' score), the verdict of each
policy (quco; flare and combined with a model), per-sentence risks with their
reasons, the entities and pairs with their corpus counts and, with context,
which answer entities the context contains, and the coverage (the share of
named entities the index knows; below --coverage-floor the data-side verdicts
are out_of_coverage and --on-out-of-coverage decides their flag). Policies: quco = QuCo's corpus
rules; flare = FLARE's token-probability rule (needs the model); combined = the
packaged fitted scorer, or the one given with --risk-model (fit your own on
labelled answers like yours with 'quco calibrate'; with --no-model it must use
data-side features alone, else it is omitted).

resuming: OUT.state.json records the input lines consumed and the committed
length of OUT after each batch; rerunning the same command after an
interruption continues where it stopped and writes the same file as an
uninterrupted run. --restart starts over.

engines: --engine local (default) audits in this process; --engine ray runs the
same steps in a pool of Ray actors (--workers N, each loading the extractor,
the index and the model once) on a local Ray runtime, or on the cluster at
--address. Only this process writes OUT, batch by batch in input order, so
both engines write the same bytes and a run stopped under one resumes under
the other. Every Ray node must read IN.jsonl and the index (or reach the
corpus servers) at the paths given here.

exit status: 0 when every row was audited; 1 on an error (missing input or
index, unreachable server; one line on stderr); otherwise the number of bad
rows (malformed JSON, missing or non-string question/answer, non-UTF-8
bytes...), capped at {MAX_BAD_STATUS}: they are skipped, listed with their
line numbers and reasons in OUT.bad.jsonl, and a last stderr line says
"N bad rows, see OUT.bad.jsonl". A single bad row gives status 1 too: the
stderr line tells it from an error.
"""


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "audit",
        help="audit logged answers (JSONL) for hallucination risk, with an HTML report",
        description="Audit (question, answer) rows with corpus statistics and, optionally, "
        "the model's token confidence. Streams in constant memory; resumable.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", metavar="IN.jsonl", help="rows to audit")
    p.add_argument("--out", required=True, metavar="OUT.jsonl", help="audit output (JSONL)")
    p.add_argument("--report", metavar="REPORT.html", help="also write a self-contained HTML report")
    p.add_argument(
        "--index",
        metavar="DIR_OR_URL",
        help="corpus index directory, or URL of an infini-gram API (quco serve or the public service), "
        "or one corpus in shards: URL1,URL2,... or a shard-map file (SHARDS.json); "
        "default: the demo index (indexes/built/index or $QUCO_DEMO_DIR/index)",
    )
    p.add_argument(
        "--remote-index",
        metavar="NAME",
        help="with an API URL: the index to query (the public service needs one, "
        "e.g. v4_olmo-2-1124-13b-instruct_llama; quco serve defaults to its first)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--model", metavar="NAME", help="model that scores answer confidence (default: smollm2-135m-instruct)"
    )
    g.add_argument("--no-model", action="store_true", help="data side only: no flare verdict, no model load")
    p.add_argument(
        "--risk-model",
        metavar="MODEL.json",
        help="combined scorer fitted with 'quco calibrate' (default: the packaged one)",
    )
    p.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="input lines per batch/commit (default 64)"
    )
    p.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        metavar="N",
        help="co-occurrence window in tokens (default 1000)",
    )
    p.add_argument(
        "--claims",
        choices=("triplets", "pairs"),
        default="triplets",
        help="the quco verdict checks each sentence's claims (triplets and tuples, default) or every entity pair",
    )
    p.add_argument("--cache", metavar="FILE", help="sqlite file that keeps corpus counts across runs")
    p.add_argument(
        "--top",
        type=int,
        default=200,
        metavar="N",
        help="riskiest answers listed in the report (default 200)",
    )
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="where the batches are audited: this process (default), or a pool of Ray actors "
        "(extra 'distributed'); both write the same bytes",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="with --engine ray: the Ray cluster to join (HOST:PORT of its head, or 'auto'); "
        "default: start a local Ray runtime for the run",
    )
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="with --engine ray: actors, each loading the extractor, index and model once "
        "(default: the cluster's CPUs)",
    )
    p.add_argument(
        "--ngrams",
        action="store_true",
        help="also measure each answer's n-gram novelty in the index (local indexes; see 'novelty' in the output)",
    )
    add_data_options(p)
    p.add_argument("--restart", action="store_true", help="ignore an interrupted run's state and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _index_location(arg: str | None) -> str:
    from quco.demo import default_base
    from quco.errors import IndexNotFoundError

    if arg:
        parts = [p.strip() for p in arg.split(",")]
        for i, p in enumerate(parts):
            if p.startswith(("http://", "https://")):
                continue
            if not p or not Path(p).exists():
                raise IndexNotFoundError(f"no index at {p or arg}")
            parts[i] = str(Path(p).resolve())  # absolute: Ray workers open it too
        return ",".join(parts)
    loc = default_base() / "index"
    if not loc.exists():
        raise IndexNotFoundError(
            f"no index at {loc}: pass --index DIR_OR_URL, or build the demo index with 'quco demo'"
        )
    return str(loc)


def run(args: argparse.Namespace) -> int:
    from quco.errors import BadInputError

    if not Path(args.input).is_file():
        raise BadInputError(f"input file not found: {args.input}")
    if args.batch_size < 1:
        raise BadInputError(f"--batch-size must be positive, got {args.batch_size}")
    if args.window < 1:
        raise BadInputError(f"--window must be positive, got {args.window}")
    if args.engine == "local" and (args.address or args.workers):
        raise BadInputError("--address and --workers go with --engine ray")
    if args.workers is not None and args.workers < 1:
        raise BadInputError(f"--workers must be positive, got {args.workers}")
    data = data_kwargs(args)
    location = _index_location(args.index)
    remote = location.startswith(("http://", "https://"))
    if args.remote_index and (not remote or "," in location):
        raise BadInputError("--remote-index goes with one API URL in --index")

    from quco.audit.runner import LocalEngine, run_audit
    from quco.audit.spec import AuditSpec
    from quco.audit.verdicts import load_combined

    use_model = not args.no_model
    if args.risk_model:
        from quco.audit.verdicts import is_data_only
        from quco.risk.combined import RiskScorer

        combined: Any = RiskScorer.load(args.risk_model)
        if not use_model and not is_data_only(combined):
            raise BadInputError(
                f"{args.risk_model} uses confidence features: drop --no-model, "
                "or fit it with 'quco calibrate --features data'"
            )
    else:
        combined = load_combined(model=use_model)
    model_name = None
    if use_model:
        from quco.models import canonical

        model_name = canonical(args.model)
    spec = AuditSpec(
        index=location,
        remote_index=args.remote_index,
        model=model_name,
        combined=combined,
        window=args.window,
        claims=args.claims,
        cache=str(Path(args.cache).resolve()) if args.cache else None,
        tau_entity=data["entity_threshold"].spec,
        tau_cooc=data["cooc_threshold"].spec,
        coverage_floor=data["coverage_floor"],
        on_out_of_coverage=data["on_out_of_coverage"],
        ngrams=args.ngrams,
    )
    settings = spec.settings()
    if args.risk_model:  # another scorer gives other risks: no resuming across it
        from quco.models import file_sha256

        settings["risk_model"] = file_sha256(Path(args.risk_model))
    stats = None
    engine: Any
    if args.engine == "ray":
        from quco.audit.ray_engine import RayEngine

        engine = RayEngine(spec, address=args.address, workers=args.workers)
    else:
        auditor, stats = spec.build()
        engine = LocalEngine(auditor)
    th = spec.thresholds(stats) if stats is not None else None
    if th is None:  # the Ray engine's actors resolve them; the driver reads the size itself
        from quco.corpus import open_stats

        probe = open_stats(location, **({"index": args.remote_index} if args.remote_index else {}))
        try:
            th = spec.thresholds(probe)
        finally:
            probe.close()
    try:
        summary = run_audit(
            args.input,
            args.out,
            engine,
            batch_size=args.batch_size,
            settings=settings,
            restart=args.restart,
            progress=not args.no_progress,
        )
    finally:
        if stats is not None:
            stats.close()
    resumed = f" (resumed after line {summary.resumed_at})" if summary.resumed_at else ""
    sys.stderr.write(
        f"quco: audited {summary.audited} answers{resumed} -> {summary.out} "
        f"({summary.answers_per_s:.1f} answers/s this run)\n"
    )
    from quco.audit.coverage_report import coverage_summary

    cov = coverage_summary(summary.out)
    sys.stderr.write(
        f"quco: thresholds {th.describe()}; {cov.out_of_coverage} of {cov.n} answers out of coverage "
        f"(floor {spec.coverage_floor:g}, action {spec.on_out_of_coverage})\n"
    )
    if args.report:
        from quco.audit.report import build_report

        rep = build_report(summary.out, args.report, top=args.top)
        sys.stderr.write(f"quco: report -> {rep}\n")
    if summary.bad:
        sys.stderr.write(f"quco: {summary.bad} bad rows, see {summary.bad_path}\n")
    return min(summary.bad, MAX_BAD_STATUS)
