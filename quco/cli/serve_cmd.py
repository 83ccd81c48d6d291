"""``quco serve [NAME=]DIR... [--alias NAME] [--host 127.0.0.1] [--port 8000]``: indexes behind the infini-gram API."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve indexes over HTTP with the infini-gram API's request format",
        description="Serve one or more quco indexes over HTTP. Requests use the infini-gram API's format "
        "(POST JSON with index, query_type = count|find|search_docs, query); counts of AND/OR queries "
        "(up to 4 AND clauses of up to 4 OR terms, max_diff_tokens <= 1000, max_clause_freq <= 500000) "
        "are quco's exact ones, approximate (and marked so) only beyond max_clause_freq. Bodies over "
        "64 KiB get a 413. GET /health lists the indexes and what each holds (with its part number when it "
        "is one part of a corpus split by 'quco index build --split N'). An index is named NAME with NAME=DIR, else "
        "after its directory; the first is the default, which --alias names again (so a client written "
        "for the public API, e.g. QuCo-RAG's, can ask for v4_olmo-2-0325-32b-instruct_llama unchanged).",
    )
    p.add_argument(
        "dirs",
        nargs="+",
        metavar="[NAME=]DIR",
        help="index directories built by 'quco index build', each optionally named NAME=DIR",
    )
    p.add_argument(
        "--alias",
        action="append",
        default=[],
        metavar="NAME",
        help="another name of the first (default) index; repeatable",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument(
        "--port", type=int, default=8000, help="port to listen on (default 8000; 0 picks a free one)"
    )
    p.add_argument("--casefold", action="store_true", help="also count lower-case and capitalised variants")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quco.corpus.server import make_server

    kwargs = {"casefold": True} if args.casefold else {}
    server = make_server(args.dirs, args.host, args.port, aliases=args.alias, **kwargs)
    h = server.handler
    names = ", ".join(h.indexes)
    also = f" (default {h.default} also as {', '.join(h.aliases)})" if h.aliases else ""
    sys.stderr.write(f"quco: serving {names}{also} at {server.url} (Ctrl-C to stop)\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.stderr.write("quco: stopped\n")
    finally:
        server.close()
    return 0
