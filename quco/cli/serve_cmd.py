"""``quco serve DIR... [--host 127.0.0.1] [--port 8000]``: indexes behind the infini-gram API."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve indexes over HTTP with the infini-gram API's request format",
        description="Serve one or more quco indexes over HTTP. Requests use the infini-gram API's format "
        "(POST JSON with index, query_type = count|find|search_docs, query); co-occurrence counts "
        "('A AND B' with max_diff_tokens) are quco's exact ones. GET /health lists the indexes and what "
        "each holds (with its part number when it is one part of a corpus split by 'quco index build "
        "--split N'). Each index is named after its directory; the first is the default.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR", help="index directories built by 'quco index build'")
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
    server = make_server(args.dirs, args.host, args.port, **kwargs)
    names = ", ".join(server.handler.indexes)
    sys.stderr.write(f"quco: serving {names} at {server.url} (Ctrl-C to stop)\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        sys.stderr.write("quco: stopped\n")
    finally:
        server.close()
    return 0
