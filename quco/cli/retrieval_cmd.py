"""``quco retrieval build|search|info``: passage retrieval indexes (BM25, dense)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``retrieval`` command and its subcommands."""
    p = subparsers.add_parser("retrieval", help="build and query passage retrieval indexes (BM25, dense)")
    sub = p.add_subparsers(dest="retrieval_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: _usage(p))

    b = sub.add_parser("build", help="split corpus files into passages and index them")
    b.add_argument(
        "corpus", nargs="+", metavar="CORPUS", help="JSONL (text field), plain text, .gz/.zst, or folders"
    )
    b.add_argument(
        "--out", required=True, metavar="DIR", help="index directory to create (replaced if it is one)"
    )
    b.add_argument(
        "--kind", choices=("bm25", "dense", "both"), default="bm25", help="retriever(s) to build (bm25)"
    )
    b.add_argument(
        "--passage-words", type=int, default=100, metavar="N", help="target passage length in words (100)"
    )
    b.add_argument(
        "--embedding-model",
        default=None,
        metavar="NAME",
        help="sentence-transformers model (packaged all-MiniLM-L6-v2)",
    )
    b.add_argument("--no-progress", action="store_true", help="no progress bars")
    b.set_defaults(func=_build)

    s = sub.add_parser("search", help="retrieve passages for queries")
    s.add_argument("index", metavar="DIR")
    s.add_argument("query", nargs="+", metavar="QUERY")
    s.add_argument("-k", type=int, default=3, help="passages per query (3)")
    s.add_argument("--kind", choices=("bm25", "dense"), default=None, help="which index when both were built")
    s.add_argument("--json", action="store_true", help="JSON lines output")
    s.set_defaults(func=_search)

    i = sub.add_parser("info", help="print a retrieval index's manifest")
    i.add_argument("index", metavar="DIR")
    i.set_defaults(func=_info)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _build(args: argparse.Namespace) -> int:
    from quco.errors import BadInputError
    from quco.retrieval.base import build_retriever

    if args.passage_words < 1:
        raise BadInputError(f"--passage-words must be >= 1, got {args.passage_words}")
    t0 = time.perf_counter()
    m = build_retriever(
        args.corpus,
        args.out,
        kind=args.kind,
        passage_words=args.passage_words,
        embedding_model=args.embedding_model,
        show_progress=not args.no_progress,
    )
    extra = f", {m['faiss_index']} {m['dims']}-d ({m['embedding_model']})" if m.get("faiss_index") else ""
    sys.stdout.write(
        f"built {m['kind']} retrieval index in {args.out}: {m['passages']} passages from "
        f"{len(m['sources'])} file(s){extra} in {time.perf_counter() - t0:.1f}s\n"
    )
    return 0


def _search(args: argparse.Namespace) -> int:
    from quco.retrieval.base import open_retriever

    retriever = open_retriever(args.index, kind=args.kind)
    for query, docs in zip(args.query, retriever.retrieve_many(args.query, args.k), strict=True):
        if args.json:
            sys.stdout.write(json.dumps({"query": query, "documents": [d.to_dict() for d in docs]}) + "\n")
            continue
        sys.stdout.write(f"# {query}\n")
        for rank, d in enumerate(docs, 1):
            sys.stdout.write(f"{rank}. [{d.id}] {d.score:.3f}  {d.text}\n")
    return 0


def _info(args: argparse.Namespace) -> int:
    from quco.retrieval.collection import read_manifest

    sys.stdout.write(json.dumps(read_manifest(args.index), indent=2) + "\n")
    return 0
