"""Coverage in audits: each record's coverage, the out_of_coverage action on the data-side
verdicts, the report's coverage section and warning, and the effective values on the summary line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from quco.analyze import Analyzer
from quco.audit.coverage_report import coverage_summary
from quco.audit.records import Auditor, MemoExtractor
from quco.audit.report import build_report
from quco.audit.runner import run_audit
from quco.audit.verdicts import default_judge
from quco.cli import main
from quco.testing import FakeCorpus, FakeExtractor

DOCS = ["Paris is the capital of France."] * 3
ROWS = [
    {"question": "What is the capital of France?", "answer": "Paris.", "label": 0},
    {"question": "Who painted Zorblax Quint?", "answer": "Blorp Zang.", "label": 1},
    {"question": "Where did Quux Fribble live?", "answer": "Snorf Vale.", "label": 0},
]


def audit(tmp: Path, action: str) -> list[dict]:
    src = tmp / f"in-{action}.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    out = tmp / f"out-{action}.jsonl"
    judge = default_judge(model=False, on_out_of_coverage=action)
    run_audit(src, out, Auditor(Analyzer(MemoExtractor(FakeExtractor()), FakeCorpus(DOCS)), judge), progress=False)
    return [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]


def test_records_carry_coverage_and_the_action_sets_the_flag(tmp_path: Path) -> None:
    retrieve = audit(tmp_path, "retrieve")
    assert [r["coverage"]["verdict"] for r in retrieve] == ["covered", "out_of_coverage", "out_of_coverage"]
    assert retrieve[0]["coverage"] == {"known": 2, "total": 2, "share": 1.0, "floor": 0.5, "verdict": "covered"}
    assert [r["verdicts"]["quco"]["flagged"] for r in retrieve][1:] == [True, True]
    passed = audit(tmp_path, "pass")
    assert [r["verdicts"]["quco"]["flagged"] for r in passed][1:] == [False, False]  # neither risky...
    assert passed[1]["verdicts"]["quco"]["reasons"][0]["kind"] == "out_of_coverage"
    # ...and the rule's score is kept for ranking
    assert passed[1]["verdicts"]["quco"]["probability"] == retrieve[1]["verdicts"]["quco"]["probability"]
    conf = audit(tmp_path, "confidence-only")  # no model: nothing to judge
    assert not conf[1]["verdicts"]["quco"]["flagged"] and conf[1]["verdicts"]["quco"]["probability"] is None
    assert passed[0] == retrieve[0] == conf[0]  # a covered answer is the same whatever the action
    assert all("coverage" in s for s in retrieve[1]["sentences"])


def test_report_shows_coverage_and_warns_when_most_is_out(tmp_path: Path) -> None:
    audit(tmp_path, "pass")
    out = tmp_path / "out-pass.jsonl"
    acc = coverage_summary(out)
    assert (acc.n, acc.out_of_coverage) == (3, 2) and acc.warn and math.isclose(acc.share_out, 2 / 3)
    assert acc.band_n == {"75–100%": 1, "0–25%": 2}
    page = build_report(out, tmp_path / "r.html").read_text(encoding="utf-8")
    assert 'id="coverage"' in page and "Most of this file is out of coverage" in page
    cov = page[page.index('id="coverage"') :]
    assert "<td>0–25%</td><td class=\"num\">2</td><td class=\"num\">0.0%</td>" in cov


@pytest.mark.slow
def test_cli_summary_line_prints_effective_thresholds(
    tmp_path: Path, small_index: Path, small_stats, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"question": "Where was Marie Curie born?", "answer": "Warsaw."}) + "\n", "utf-8")
    tokens = small_stats.manifest.tokens
    rc = main(["audit", str(src), "--out", str(tmp_path / "o.jsonl"), "--index", str(small_index), "--no-model",
               "--no-progress", "--tau-entity", f"10@{tokens}", "--on-out-of-coverage", "pass"])
    assert rc == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "thresholds" in x)
    assert "τ_entity 10 (rate 10 per" in line and "τ_cooc 1 (absolute)" in line
    assert "0 of 1 answers out of coverage" in line and "action pass" in line
    rec = json.loads((tmp_path / "o.jsonl").read_text("utf-8"))
    assert rec["coverage"]["verdict"] == "covered"
    assert main(["audit", str(src), "--out", str(tmp_path / "p.jsonl"), "--index", str(small_index),
                 "--no-model", "--tau-cooc", "1e3@0"]) == 1
    bad = capsys.readouterr().err.strip().splitlines()
    assert len(bad) == 1 and bad[0].startswith("quco: error: --tau-cooc")
