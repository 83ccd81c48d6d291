"""``quco proxy --upstream URL [--port 8100]``: the OpenAI-compatible guard server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from quco.cli._data_options import add_data_options, data_kwargs
from quco.errors import BadInputError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "proxy",
        help="OpenAI-compatible guard server in front of any OpenAI-compatible model server",
        description="Serve /v1/chat/completions and /v1/completions in front of an OpenAI-compatible upstream "
        "(vLLM, llama.cpp, OpenAI...): stage 1 adds retrieved evidence to risky questions, stage 2 checks "
        "each sentence of the answer (with the upstream's token logprobs), and the response carries the "
        "risk report under 'quco'. Streaming ends with a chunk carrying the report. Other paths "
        "(/v1/models...) pass through. Authorization headers are forwarded, never logged. "
        "Per request: {\"quco\": {\"on_risk\": \"flag\"|\"rewrite\"}} in the body.",
    )
    p.add_argument("--upstream", required=True, help="the upstream's OpenAI base URL, e.g. http://127.0.0.1:8080/v1")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8100, help="port to listen on (default 8100)")
    p.add_argument("--policy", choices=("quco", "combined", "flare"), default="quco", help="guard policy (default: quco)")
    p.add_argument(
        "--on-risk", choices=("flag", "rewrite"), default="flag",
        help="risky answers: report them (flag) or ask again with evidence (rewrite); default flag",
    )  # fmt: skip
    p.add_argument("--index", help="corpus index directory or server URL (default: the demo index)")
    p.add_argument("--retriever", help="retrieval collection directory (default: the demo collection)")
    p.add_argument("-k", type=int, default=3, help="passages per retrieval (default: 3)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the upstream (default: 120)")
    p.add_argument(
        "--logprobs", choices=("auto", "always", "never"), default="auto",
        help="ask the upstream for token logprobs: when the policy uses them (auto: combined, flare), always "
        "(also report them under quco), never; they cost little on vLLM/OpenAI but ~8x on llama-cpp-python",
    )  # fmt: skip
    p.add_argument("--top-logprobs", type=int, default=5, help="alternatives per token asked of the upstream (default: 5)")
    p.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body (default: 1 MiB)")
    p.add_argument(
        "--on-backend-error", choices=("open", "closed", "raise"), default="open",
        help="corpus failures: skip the check (open), treat as risky (closed) or fail the request (raise)",
    )  # fmt: skip
    add_data_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from quco._deps import require
    from quco.cli.ask_cmd import resolve_locations
    from quco.guard.factory import load_extractor, open_corpus, open_retrieval
    from quco.integrations.session import AnswerGuard
    from quco.proxy import build_app

    uvicorn = require("uvicorn", "server")
    if not 0 <= args.port <= 65535:
        raise BadInputError(f"--port must be within 0..65535, not {args.port}")
    if args.max_body_bytes < 1024:
        raise BadInputError("--max-body-bytes must be at least 1024")
    data = data_kwargs(args)
    index, retriever = resolve_locations(args.policy, args.index, args.retriever)
    need_corpus = args.policy in ("quco", "combined")
    guard = AnswerGuard(
        extractor=load_extractor() if need_corpus else None,
        stats=open_corpus(index) if need_corpus and index else None,
        retriever=open_retrieval(retriever) if retriever else None,
        policy=args.policy,
        on_risk=args.on_risk,
        k=args.k,
        on_backend_error=args.on_backend_error,
        **data,
    )
    app = build_app(args.upstream, guard, timeout=args.timeout, top_logprobs=args.top_logprobs, logprobs=args.logprobs, max_body_bytes=args.max_body_bytes)
    sys.stderr.write(
        f"quco: proxy for {args.upstream} at http://{args.host}:{args.port}/v1 "
        f"(policy {args.policy}, on_risk {args.on_risk}"
        + (f"; {guard.thresholds.describe()}" if need_corpus else "")
        + "; Ctrl-C to stop)\n"
    )
    sys.stderr.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning")
    return 0
