"""``quco eval detectors``: data side vs confidence side vs combined, with baselines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from quco.cli._data_options import add_data_options, data_kwargs
from quco.errors import BadInputError


def _window(text: str) -> int | None:
    if text == "doc":
        return None
    try:
        w = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--window must be a number of tokens or 'doc', got {text!r}") from None
    if w <= 0:
        raise argparse.ArgumentTypeError("--window must be positive")
    return w


def register(evalsub: Any) -> None:
    p: argparse.ArgumentParser = evalsub.add_parser(
        "detectors",
        help="rate hallucination detectors (data, confidence, combined, rules, baselines)",
        description="Rate hallucination detectors on HaluEval QA or a labelled JSONL file: ROC-AUC (headline), "
        "PR-AUC, ECE, Brier, recall at 5%/10% FPR with bootstrap 95% intervals; fitted detectors are "
        "cross-validated grouped by question. Writes detectors.json, detectors.md and figures into --out.",
    )
    p.add_argument("--protocol", default="self",
                   help="self (the model answers itself; default), paired (HaluEval's given answers), "
                   "summarization (HaluEval summarization's given right and hallucinated summaries of news "
                   "articles; rows 0-1999 development, 2000 on evaluation, as for QA), "
                   "or a JSONL file with question, answer, label (1 = hallucinated)")
    p.add_argument("--rows", default="2000-2299",
                   help="HaluEval QA (or, with --protocol summarization, summarization) rows A-B, inclusive "
                   "(default 2000-2299)")
    p.add_argument("--index", default=None,
                   help="corpus index folder or URL (default: the demo index, which holds the news articles "
                   "too; with --protocol summarization, the demo's index-nonews folder (built by "
                   "quco.evaluation.ablations.nonews_index_for) makes it the unseen-domain run)")
    p.add_argument("--model", default=None, help="language model alias, HF id or path (default SmolLM2-135M)")
    p.add_argument("--window", type=_window, default=1000, help="co-occurrence window in tokens, or 'doc'")
    p.add_argument("--claims", choices=("triplets", "pairs"), default="triplets",
                   help="the data side and the QuCo rule read each answer's claims (triplets and tuples; "
                   "default) or every entity pair")
    p.add_argument("--ablations", nargs="?", const="corpus,window,model,claims", default="", metavar="LIST",
                   help="also run ablations: corpus, window, model, claims, ngram, thresholds, comma-separated (alone: the "
                   "first four; ngram fits the data side and combined without and with the n-gram novelty features; "
                   "thresholds rates the QuCo rule with absolute, index-relative, default and --fit-rows-fitted thresholds; "
                   "the model ablation regenerates every answer with the second model; claims rates the "
                   "QuCo rule and the fitted data side in triplet and pair mode on the same rows)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-model", action="store_true",
                   help="paired/summarization/JSONL protocols: no confidence scoring (data side only)")
    p.add_argument("--fit-rows", default=None, metavar="A-B",
                   help="development rows (all below 2000; self, paired and summarization protocols): fit data_dev, "
                   "confidence_dev and combined_dev there once (C chosen by grouped CV on those rows) and rate "
                   "them on --rows beside the cross-validated figures; also the thresholds ablation's fitted "
                   "τ_entity/τ_cooc. Self: the answers are generated (and cached in --fit-generations, else --out) as for --rows")
    p.add_argument("--fit-generations", default=None, metavar="DIR",
                   help="self protocol: the folder whose generations/ caches the --fit-rows answers (default: "
                   "--out), e.g. eval/results/fit_default, where the shipped model's development answers are")
    add_data_options(p, coverage=False)
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def _ablation_kinds(spec: str) -> tuple[str, ...]:
    from quco.evaluation.run import ABLATION_KINDS

    kinds = tuple(k.strip() for k in spec.split(",") if k.strip())
    bad = [k for k in kinds if k not in ABLATION_KINDS]
    if bad:
        raise BadInputError(f"--ablations takes {', '.join(ABLATION_KINDS)}; got {', '.join(bad)}")
    return kinds


def run(args: argparse.Namespace) -> int:
    from quco.datasets import check_fit_rows, parse_rows
    from quco.demo import DemoPaths, default_base
    from quco.evaluation.run import PROTOCOLS, DetectorEvalConfig, run_detectors_eval

    if args.protocol not in PROTOCOLS and not Path(args.protocol).is_file():
        raise BadInputError(
            f"--protocol must be self, paired, summarization or an existing JSONL file, got {args.protocol!r}")
    if args.protocol == "self" and args.no_model:
        raise BadInputError("--no-model does not apply to the self protocol (the model writes the answers)")
    if args.folds < 2:
        raise BadInputError("--folds must be at least 2")
    if args.n_boot < 0:
        raise BadInputError("--n-boot must not be negative")
    fit_rows = None
    if args.fit_rows is not None:
        if args.protocol not in PROTOCOLS:
            raise BadInputError("--fit-rows applies to the self, paired and summarization protocols (HaluEval rows)")
        fit_rows = parse_rows(args.fit_rows)
        check_fit_rows(fit_rows)
    if args.fit_generations is not None and args.fit_rows is None:
        raise BadInputError("--fit-generations needs --fit-rows")
    index = args.index or str(DemoPaths(default_base()).index)
    data = data_kwargs(args)
    cfg = DetectorEvalConfig(
        out=Path(args.out),
        protocol=args.protocol,
        rows=parse_rows(args.rows),
        index=index,
        model=args.model,
        window=args.window,
        claims=args.claims,
        ablations=bool(args.ablations),
        ablation_kinds=_ablation_kinds(args.ablations),
        n_boot=args.n_boot,
        folds=args.folds,
        seed=args.seed,
        use_model=not args.no_model,
        fit_rows=fit_rows,
        fit_generations=Path(args.fit_generations) if args.fit_generations else None,
        tau_entity=data["entity_threshold"].spec,
        tau_cooc=data["cooc_threshold"].spec,
        progress=True,
    )
    doc = run_detectors_eval(cfg)
    d = doc["detectors"]
    parts = [f"{k} {d[k]['roc_auc']:.3f}" for k in ("combined", "data", "confidence", "length", "random")
             if k in d and d[k].get("roc_auc") is not None]
    sys.stdout.write(
        f"n={doc['n']} ({doc['protocol']}, {doc['headline_slice']}) ROC-AUC: {', '.join(parts)}; "
        f"wrote {Path(args.out) / 'detectors.json'} in {doc['timing']['total_s']:.0f}s\n"
    )
    return 0
