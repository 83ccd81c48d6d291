"""quco's command line.

Each subcommand lives in its own module under ``quco.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``(args) -> int``. Heavy imports happen inside those callables.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from quco._version import __version__
from quco.errors import QucoError

#: modules that each register one or more subcommands, in help order
COMMAND_MODULES = (
    "quco.cli.index_cmd",
    "quco.cli.stats_cmd",
    "quco.cli.serve_cmd",
    "quco.cli.proxy_cmd",
    "quco.cli.retrieval_cmd",
    "quco.cli.ask_cmd",
    "quco.cli.audit_cmd",
    "quco.cli.calibrate_cmd",
    "quco.cli.eval_cmd",
    "quco.cli.demo_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quco",
        description="Guard language-model answers against hallucination with corpus statistics "
        "and model confidence (QuCo-RAG).",
    )
    parser.add_argument("--version", action="version", version=f"quco {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # command not built yet
                continue
            raise
        mod.register(sub)
    return parser


def fail(message: str, code: int = 1) -> int:
    """Print one error line on stderr and return the exit code."""
    sys.stderr.write(f"quco: error: {message}\n")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    # one small model decoding token by token gains little from many threads and
    # loses badly when the cores are shared (see quco.models.apply_torch_threads)
    os.environ.setdefault("QUCO_TORCH_THREADS", str(max(1, min(4, (os.cpu_count() or 2) // 2))))
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="quco: %(levelname)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except QucoError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (FileNotFoundError, PermissionError, IsADirectoryError, UnicodeDecodeError) as exc:
        return fail(str(exc))


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
