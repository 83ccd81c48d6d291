"""``quco count`` and ``quco cooc``: corpus statistics from an index or a server."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from quco.corpus.base import DEFAULT_WINDOW

_INDEX_HELP = (
    "index directory or server URL; or one corpus split by documents: URL1,URL2,... (or directories), "
    "or a shard-map file SHARDS.json (counts summed over the parts)"
)


def register(subparsers: Any) -> None:
    c = subparsers.add_parser("count", help="count terms in a corpus index")
    c.add_argument("--index", required=True, metavar="DIR_OR_URL", help=_INDEX_HELP)
    c.add_argument("terms", nargs="+", metavar="TERM")
    c.add_argument("--casefold", action="store_true", help="also count case variants")
    c.add_argument("--tokenizer", default=None, metavar="NAME_OR_PATH",
                   help="query tokenizer (local index; default: the index's own)")  # fmt: skip
    c.add_argument("--json", action="store_true", help="one JSON object per term")
    c.set_defaults(func=run_count)

    o = subparsers.add_parser("cooc", help="co-occurrence of two terms in a corpus index")
    o.add_argument("--index", required=True, metavar="DIR_OR_URL", help=_INDEX_HELP)
    o.add_argument("a", metavar="A")
    o.add_argument("b", metavar="B")
    o.add_argument("--window", type=int, default=DEFAULT_WINDOW, metavar="N",
                   help=f"largest distance in tokens (default {DEFAULT_WINDOW})")  # fmt: skip
    o.add_argument("--mode", choices=("doc", "window"), default="window",
                   help="count documents with both terms, or occurrence pairs within the window")  # fmt: skip
    o.add_argument("--casefold", action="store_true", help="also count case variants")
    o.add_argument("--tokenizer", default=None, metavar="NAME_OR_PATH",
                   help="query tokenizer (local index; default: the index's own)")  # fmt: skip
    o.add_argument("--json", action="store_true", help="print a JSON object")
    o.set_defaults(func=run_cooc)


def _open(args: argparse.Namespace) -> Any:
    from quco.corpus import open_stats

    kwargs: dict[str, object] = {"casefold": True} if args.casefold else {}
    if args.tokenizer:
        kwargs["tokenizer"] = args.tokenizer
    return open_stats(args.index, **kwargs)


def run_count(args: argparse.Namespace) -> int:
    with _open(args) as stats:
        counts = stats.count_many(args.terms)
    for term, c in zip(args.terms, counts, strict=True):
        if args.json:
            sys.stdout.write(json.dumps({"query": term, **c.to_dict()}) + "\n")
        else:
            sys.stdout.write(f"{term}\t{c.value}{' (approx)' if c.approx else ''}\n")
    return 0


def run_cooc(args: argparse.Namespace) -> int:
    with _open(args) as stats:
        c = stats.cooccur(args.a, args.b, window=args.window, mode=args.mode)
    if args.json:
        d = {"query": [args.a, args.b], "mode": args.mode, "window": args.window, **c.to_dict()}
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        where = "documents with both" if args.mode == "doc" else f"pairs within {args.window} tokens"
        sys.stdout.write(f"{args.a} | {args.b}\t{c.value}{' (approx)' if c.approx else ''}\t({where})\n")
    return 0
