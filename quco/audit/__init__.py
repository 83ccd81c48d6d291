"""Offline hallucination audits: JSONL of (question, answer) in, evidence per answer out, HTML report.

- :mod:`quco.audit.rows`: input parsing (bad rows are reported, never fatal);
- :mod:`quco.audit.verdicts`: the policies applied to each answer and sentence;
- :mod:`quco.audit.records`: :class:`Auditor`, a batch of rows to output records;
- :mod:`quco.audit.steps`: the per-batch steps (cut, parse, analyse, encode), the same under every engine;
- :mod:`quco.audit.runner`: the streaming, resumable :func:`run_audit` (commits each batch) and the local engine;
- :mod:`quco.audit.ray_engine`: the same steps in Ray actors (``--engine ray``, extra ``distributed``);
- :mod:`quco.audit.report`: :func:`build_report`, a self-contained HTML page.

Command line: ``quco audit IN.jsonl --out OUT.jsonl [--report REPORT.html]``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AuditRow", "AuditSummary", "Auditor", "BadRow", "build_report", "run_audit"]


def __getattr__(name: str) -> Any:  # lazy: the report needs numpy/matplotlib, the runner the analyzer
    if name in ("AuditRow", "BadRow"):
        from quco.audit import rows

        return getattr(rows, name)
    if name in ("Auditor", "AuditSummary", "run_audit"):
        from quco.audit import runner

        return getattr(runner, name)
    if name == "build_report":
        from quco.audit.report import build_report

        return build_report
    raise AttributeError(f"module 'quco.audit' has no attribute {name!r}")
