"""``quco eval qa``: guarded QA on HaluEval questions under each policy (EM, F1, cost)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from quco.errors import BadInputError
from quco.guard.rules import POLICIES as ALL_POLICIES


def register(evalsub: Any) -> None:
    p: argparse.ArgumentParser = evalsub.add_parser(
        "qa",
        help="guarded QA on HaluEval questions: EM, F1, retrievals, LLM calls, time per policy",
        description="Answer HaluEval QA questions under each guard policy and score them against "
        "right_answer (SQuAD EM and token F1). Resumes from --out when interrupted.",
    )
    p.add_argument("--rows", default="2000-2199", help="HaluEval QA rows A-B, inclusive (default: 2000-2199)")
    p.add_argument("--policies", default=",".join(ALL_POLICIES), help="comma-separated policies (default: all)")
    p.add_argument("--index", help="corpus index directory or URL (default: the demo index)")
    p.add_argument("--retriever", help="retrieval collection directory (default: the demo collection)")
    p.add_argument("--model", help="generator model (default: SmolLM2-135M-Instruct)")
    p.add_argument("-k", type=int, default=3, help="passages per retrieval (default: 3)")
    p.add_argument("--max-sentences", type=int, default=2, help="most sentences per answer (default: 2)")
    p.add_argument("--max-new-tokens", type=int, default=32, help="most tokens per sentence (default: 32)")
    p.add_argument("--out", required=True, help="output folder for qa.json, qa.md and per-row results")
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_policies(spec: str) -> list[str]:
    pols = [p.strip() for p in spec.split(",") if p.strip()]
    bad = [p for p in pols if p not in ALL_POLICIES]
    if bad or not pols:
        raise BadInputError(f"--policies: unknown {', '.join(bad) or '(none given)'}; choose from {', '.join(ALL_POLICIES)}")
    return list(dict.fromkeys(pols))


def run(args: argparse.Namespace) -> int:
    from quco.cli.ask_cmd import resolve_locations
    from quco.datasets import load_halueval_qa, parse_rows
    from quco.evaluation.qa import run_qa
    from quco.guard import Guard
    from quco.guard.factory import load_extractor, load_generator, open_corpus, open_retrieval

    policies = parse_policies(args.policies)
    rows = load_halueval_qa(parse_rows(args.rows))
    if not rows:
        raise BadInputError(f"--rows {args.rows} selects no HaluEval QA row")
    widest = "quco" if any(p in ("quco", "combined") for p in policies) else ("single" if any(p != "none" for p in policies) else "none")
    index, retriever = resolve_locations(widest, args.index, args.retriever)
    stats = open_corpus(index) if index else None
    ret = open_retrieval(retriever) if retriever else None
    extractor = load_extractor() if stats is not None else None
    generator = load_generator(args.model)
    guards = {
        p: Guard(
            generator,
            extractor if p in ("quco", "combined") else None,
            stats if p in ("quco", "combined") else None,
            ret if p != "none" else None,
            policy=p,
            k=args.k,
            max_sentences=args.max_sentences,
            max_new_tokens=args.max_new_tokens,
        )
        for p in policies
    }
    config = {
        "rows": args.rows,
        "model": getattr(generator, "name", args.model or ""),
        "index": index,
        "retriever": retriever,
        "k": args.k,
        "max_sentences": args.max_sentences,
        "max_new_tokens": args.max_new_tokens,
    }
    parts = ["quco eval qa", "--rows", args.rows, "--policies", ",".join(policies)]
    for flag, value in (("--index", args.index), ("--retriever", args.retriever), ("--model", args.model)):
        if value:
            parts += [flag, value]
    parts += ["--out", args.out]
    command = " ".join(shlex.quote(x) if i else x for i, x in enumerate(parts))
    summary = run_qa(rows, guards, args.out, config=config, command=command, fresh=args.fresh, progress=not args.no_progress)
    from quco.evaluation.qa import markdown_table

    sys.stdout.write(markdown_table(summary))
    return 0
