"""The guard: QuCo's two-stage retrieval loop and its baselines (none, single, FLARE, combined).

Example:
    >>> from quco.guard import Guard
    >>> guard = Guard(generator, extractor, stats, retriever, policy="quco")  # doctest: +SKIP
    >>> result = guard.answer("Who directed Blade Runner?")  # doctest: +SKIP
    >>> result.answer, result.retrievals  # doctest: +SKIP
"""

from __future__ import annotations

from quco.guard.checks import Checker, Verdict, retrieve_union, retrieve_unique
from quco.guard.core import MAX_QUESTION_CHARS, Guard
from quco.guard.factory import build_guard
from quco.guard.rules import POLICIES
from quco.guard.trace import BackendError, GuardResult, Retrieval, SentenceRecord, Stage1Record, Timings

__all__ = [
    "MAX_QUESTION_CHARS",
    "POLICIES",
    "BackendError",
    "Checker",
    "Guard",
    "GuardResult",
    "Retrieval",
    "SentenceRecord",
    "Stage1Record",
    "Timings",
    "Verdict",
    "build_guard",
    "retrieve_union",
    "retrieve_unique",
]
