"""The data side's options, shared by ``quco ask``, ``audit``, ``eval qa`` and ``proxy``.

``--tau-entity`` and ``--tau-cooc`` take an absolute count (``1000``, ``1e3``)
or a rate ``COUNT@TOKENS`` scaled to the index (``1e3@4e12``, the paper's
τ_entity and the default: :data:`~quco.risk.thresholds.PAPER_ENTITY_RATE`);
``--coverage-floor`` and ``--on-out-of-coverage`` set what a check does when
the corpus knows too few of its entities (:mod:`quco.risk.coverage`). The
values are checked in the command (not by argparse), so a bad one is one
``quco: error:`` line and exit status 1, like every other bad input.
"""

from __future__ import annotations

import argparse
from typing import Any

from quco.risk.coverage import ACTIONS, DEFAULT_ACTION, DEFAULT_FLOOR, check_action, check_floor
from quco.risk.thresholds import ABSOLUTE_ENTITY, DEFAULT_COOC, DEFAULT_ENTITY, Threshold


def add_data_options(p: argparse.ArgumentParser, *, coverage: bool = True) -> None:
    """Add ``--tau-entity``, ``--tau-cooc`` and (with ``coverage``) the coverage options to ``p``."""
    g = p.add_argument_group("data side (policies quco and combined)")
    g.add_argument(
        "--tau-entity",
        metavar="SPEC",
        default=DEFAULT_ENTITY,
        help=f"stage 1's τ_entity: a count (1000: the paper's, unscaled) or a rate COUNT@TOKENS scaled to the "
        f"index; default {DEFAULT_ENTITY}, the paper's rate (0.0027 at 10.7M tokens; 1000 where the index's size "
        "is unknown)",
    )
    g.add_argument(
        "--tau-cooc",
        metavar="SPEC",
        default=DEFAULT_COOC,
        help=f"stage 2's τ_cooc: a claim whose head and tail co-occur fewer times is risky (a count or a rate); "
        f"default {DEFAULT_COOC}, i.e. never",
    )
    if coverage:
        g.add_argument(
            "--coverage-floor",
            metavar="SHARE",
            default=str(DEFAULT_FLOOR),
            help="below this share of named entities known to the corpus a check is out_of_coverage "
            f"(default {DEFAULT_FLOOR})",
        )
        g.add_argument(
            "--on-out-of-coverage",
            metavar="ACTION",
            default=DEFAULT_ACTION,
            help=f"what an out_of_coverage check does: {', '.join(ACTIONS)} (default {DEFAULT_ACTION})",
        )


def data_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The options as keyword arguments of :class:`~quco.guard.Guard` (validated).

    Raises:
        BadInputError: a bad threshold spec, floor or action.
    """
    out: dict[str, Any] = {
        "entity_threshold": _spec("--tau-entity", args.tau_entity),
        "cooc_threshold": _spec("--tau-cooc", args.tau_cooc),
    }
    if hasattr(args, "coverage_floor"):
        out["coverage_floor"] = _checked("--coverage-floor", check_floor, args.coverage_floor)
        out["on_out_of_coverage"] = _checked("--on-out-of-coverage", check_action, args.on_out_of_coverage)
    return out


def is_unrecorded(kwargs: dict[str, Any]) -> bool:
    """Whether the options are those of runs made before they existed, which record none of them.

    That is today's defaults but for τ_entity, whose default was the absolute 1000 before
    issue 11: a run on today's default (the paper's rate) records it, so it never resumes a
    folder written with the absolute count, nor the other way round.
    """
    return (
        kwargs["entity_threshold"] == Threshold.parse(ABSOLUTE_ENTITY)
        and kwargs["cooc_threshold"] == Threshold.parse(DEFAULT_COOC)
        and kwargs.get("coverage_floor", DEFAULT_FLOOR) == DEFAULT_FLOOR
        and kwargs.get("on_out_of_coverage", DEFAULT_ACTION) == DEFAULT_ACTION
    )


def _spec(flag: str, value: str) -> Threshold:
    return _checked(flag, Threshold.parse, value)


def _checked(flag: str, check: Any, value: Any) -> Any:
    from quco.errors import BadInputError

    try:
        return check(value)
    except BadInputError as exc:
        raise BadInputError(f"{flag}: {exc}") from None
