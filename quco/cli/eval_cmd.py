"""``quco eval detectors|qa``: the two benchmarks, each in its own module."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

_SUBCOMMANDS = ("quco.cli.eval_detectors_cmd", "quco.cli.eval_qa_cmd")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "eval", help="benchmarks: detector comparison (detectors) and guarded QA (qa)"
    )
    evsub = p.add_subparsers(dest="eval_command", metavar="BENCHMARK")
    for name in _SUBCOMMANDS:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        mod.register(evsub)
    def _help(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=_help)
