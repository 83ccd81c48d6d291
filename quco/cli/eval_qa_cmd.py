"""``quco eval qa``: guarded QA on HaluEval questions under each policy (EM, F1, cost).

Results for another prompt, model or claims mode go to another ``--out``
folder: a folder holds one setting (a resumed run must match it; its rows and policies may differ).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any

from quco.cli._data_options import add_data_options, data_kwargs, is_unrecorded
from quco.errors import BadInputError
from quco.guard.rules import POLICIES as ALL_POLICIES
from quco.prompts import PROMPTS

#: per-prompt defaults: (most sentences per answer, most tokens per sentence)
PROMPT_DEFAULTS = {"short": (2, 32), "cot": (6, 48)}
#: the default answer format (see the README: chosen on development rows)
DEFAULT_PROMPT = "short"


def register(evalsub: Any) -> None:
    p: argparse.ArgumentParser = evalsub.add_parser(
        "qa",
        help="guarded QA on HaluEval questions: EM, F1, retrievals, LLM calls, time per policy",
        description="Answer HaluEval QA questions under each guard policy and score the final answer "
        "(after 'the answer is', else the last sentence) against right_answer (SQuAD EM and token F1), with "
        "retrievals, LLM calls and seconds per question, bootstrap intervals and paired differences. "
        "Resumes from --out when interrupted; use one --out per prompt, model and claims mode.",
    )
    p.add_argument("--rows", default="2000-2199", help="HaluEval QA rows A-B, inclusive (default: 2000-2199)")
    p.add_argument("--policies", default=",".join(ALL_POLICIES), help="comma-separated policies (default: all)")
    p.add_argument("--index", help="corpus index directory or URL (default: the demo index)")
    p.add_argument("--retriever", help="retrieval collection directory (default: the demo collection)")
    p.add_argument("--model", help="generator model (default: SmolLM2-135M-Instruct)")
    p.add_argument("-k", type=int, default=3, help="passages per retrieval query (default: 3)")
    p.add_argument("--prompt", choices=PROMPTS, default=DEFAULT_PROMPT,
                   help=f"answer format: short phrase, or chain of thought ending 'So the answer is X.' (default: {DEFAULT_PROMPT})")
    p.add_argument("--claims", choices=("triplets", "pairs"), default="triplets",
                   help="stage 2 of quco/combined checks each sentence's claims (default) or every entity pair")
    p.add_argument("--max-sentences", type=int, default=None,
                   help="most sentences per answer (default: 2 for short, 6 for cot)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="most tokens per sentence (default: 32 for short, 48 for cot)")
    p.add_argument("--no-prefix-cache", action="store_true",
                   help="read the whole context again for every sentence (for timing the KV cache)")
    add_data_options(p)
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
    data = data_kwargs(args)
    rows = load_halueval_qa(parse_rows(args.rows))
    if not rows:
        raise BadInputError(f"--rows {args.rows} selects no HaluEval QA row")
    widest = "quco" if any(p in ("quco", "combined") for p in policies) else ("single" if any(p != "none" for p in policies) else "none")
    index, retriever = resolve_locations(widest, args.index, args.retriever)
    stats = open_corpus(index) if index else None
    ret = open_retrieval(retriever) if retriever else None
    extractor = load_extractor() if stats is not None else None
    claim_extractor = extractor.claim_extractor() if extractor is not None and args.claims == "triplets" else None
    if claim_extractor is not None:
        claim_extractor.claims_many(["Paris is in France."])  # loads the parser now, not inside the first answer
    generator = load_generator(args.model, prefix_cache=not args.no_prefix_cache)
    max_sentences, max_new_tokens = PROMPT_DEFAULTS[args.prompt]
    max_sentences = args.max_sentences or max_sentences
    max_new_tokens = args.max_new_tokens or max_new_tokens
    guards = {
        p: Guard(
            generator,
            extractor if p in ("quco", "combined") else None,
            stats if p in ("quco", "combined") else None,
            ret if p != "none" else None,
            policy=p,
            k=args.k,
            max_sentences=max_sentences,
            max_new_tokens=max_new_tokens,
            prompt=args.prompt,
            claims=args.claims,
            claim_extractor=claim_extractor if p in ("quco", "combined") else None,
            **data,
        )
        for p in policies
    }
    config = {
        "rows": args.rows,
        "model": getattr(generator, "name", args.model or ""),
        "index": index,
        "retriever": retriever,
        "k": args.k,
        "max_sentences": max_sentences,
        "max_new_tokens": max_new_tokens,
        "prompt": args.prompt,
        "claims": args.claims,
        "prefix_cache": not args.no_prefix_cache,
    }
    if not is_unrecorded(data):  # recorded unless as before these options, so those runs still resume
        config.update(
            tau_entity=data["entity_threshold"].spec,
            tau_cooc=data["cooc_threshold"].spec,
            coverage_floor=data["coverage_floor"],
            on_out_of_coverage=data["on_out_of_coverage"],
        )
    parts = ["quco eval qa", "--rows", args.rows, "--policies", ",".join(policies), "--prompt", args.prompt]
    if args.claims != "triplets":
        parts += ["--claims", args.claims]
    for flag, value in (("--index", args.index), ("--retriever", args.retriever), ("--model", args.model)):
        if value:
            parts += [flag, value]
    if args.no_prefix_cache:
        parts.append("--no-prefix-cache")
    if not is_unrecorded(data):
        parts += ["--tau-entity", data["entity_threshold"].spec, "--tau-cooc", data["cooc_threshold"].spec,
                  "--coverage-floor", f"{data['coverage_floor']:g}", "--on-out-of-coverage", data["on_out_of_coverage"]]
    parts += ["--out", args.out]
    command = " ".join(shlex.quote(x) if i else x for i, x in enumerate(parts))
    summary = run_qa(rows, guards, args.out, config=config, command=command, fresh=args.fresh, progress=not args.no_progress)
    from quco.evaluation.qa import markdown_table

    sys.stdout.write(markdown_table(summary))
    return 0
