"""``quco demo``: build the demo indexes if missing, then run a guarded question and a small audit."""

from __future__ import annotations

import argparse
from typing import Any

#: a two-hop question: with the reasoning prompt the model states the intermediate fact, which stage 2 checks
#: (on the demo index stage 1 passes it: Franz Kafka occurs, and the default τ_entity is the paper's rate)
DEMO_QUESTION = "Which river flows through the city where Franz Kafka was born?"


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="build the demo indexes from packaged data if missing, then run a guarded question and a small audit",
        description="Build the demo corpus index and retrieval collection from packaged data "
        "(HaluEval passages and news, Wikipedia summaries) when they are missing, then answer one "
        "question with the QuCo guard (--trace) and audit 20 labelled HaluEval answers into an HTML report.",
    )
    p.add_argument("--dir", default=None, help="demo folder (default: $QUCO_DEMO_DIR or indexes/built)")
    p.add_argument("--question", default=DEMO_QUESTION, help="the question to answer")
    p.add_argument("--policy", default="quco", help="guard policy for the question (quco)")
    p.add_argument("--prompt", default="cot", choices=("short", "cot"),
                   help="prompt for the question (cot: one fact per sentence, so stage 2 has claims to check)")
    p.add_argument("--build-only", action="store_true", help="only build what is missing")
    p.add_argument("--dense", action="store_true", help="also build the dense (FAISS) retriever")
    p.add_argument("--ablation-indexes", action="store_true",
                   help="also build the leave-one-out indexes of the evaluations: index-noknowledge (no HaluEval "
                   "QA passages) and index-nonews (no news articles: the unseen-domain run); seconds each")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from quco.cli import main
    from quco.demo import default_base, ensure_demo, write_demo_audit_input

    paths = ensure_demo(args.dir or default_base(), dense=args.dense, noknowledge=args.ablation_indexes,
                        nonews=args.ablation_indexes)
    if args.build_only:
        sys.stdout.write(f"demo indexes ready in {paths.base}\n")
        return 0
    sys.stdout.write(f"\n== quco ask --policy {args.policy} --prompt {args.prompt} --trace ==\n")
    sys.stdout.flush()
    rc = main(
        ["ask", args.question, "--policy", args.policy, "--prompt", args.prompt, "--trace",
         "--index", str(paths.index), "--retriever", str(paths.retrieval)]
    )  # fmt: skip
    if rc:
        return rc
    audit_in = write_demo_audit_input(paths.base / "demo-audit.jsonl")
    out = paths.base / "demo-audit.out.jsonl"
    report = paths.base / "demo-audit.html"
    from quco.audit.runner import side_paths

    for stale in (out, report, *side_paths(out)):  # a fresh audit each time
        stale.unlink(missing_ok=True)
    sys.stdout.write(f"\n== quco audit {audit_in} --report {report} ==\n")
    sys.stdout.flush()
    rc = main(["audit", str(audit_in), "--out", str(out), "--report", str(report), "--index", str(paths.index)])
    if rc == 0:
        sys.stdout.write(f"\naudit written to {out}; open {report} in a browser\n")
    return rc
