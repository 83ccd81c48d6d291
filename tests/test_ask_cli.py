"""``quco ask``: JSON schema with a small index and retriever passed by flags, the
rich trace, and one-line errors for bad input and a missing demo index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quco.cli import main

Q = "In which city was Marie Curie born?"


@pytest.mark.slow
def test_ask_json_schema(small_index: Path, bm25_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["ask", Q, "--json", "--index", str(small_index), "--retriever", str(bm25_dir), "-k", "2", "--max-sentences", "1", "--max-new-tokens", "6", "--tau-entity", "1000"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert isinstance(d["answer"], str) and isinstance(d["retrievals"], int) and isinstance(d["sentences"], list)
    assert d["policy"] == "quco" and d["stage1"]["retrieved"] and d["retrievals"] >= 1
    assert len(d["stage1"]["documents"]) <= 2
    for s in d["sentences"]:
        assert isinstance(s["text"], str) and isinstance(s["retrieved"], bool) and isinstance(s["reasons"], list)
        assert s["risk"] is None or 0.0 <= s["risk"] <= 1.0


@pytest.mark.slow
def test_ask_trace_and_plain(small_index: Path, bm25_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--index", str(small_index), "--retriever", str(bm25_dir), "--max-sentences", "1", "--max-new-tokens", "4"]
    assert main(["ask", Q, "--trace", *args]) == 0
    out = capsys.readouterr().out
    assert "stage 1" in out and "Marie Curie" in out and "Answer:" in out
    assert main(["ask", Q, "--policy", "none", "--max-sentences", "1", "--max-new-tokens", "4"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1  # the answer only


def test_ask_missing_demo_index_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("QUCO_DEMO_DIR", str(tmp_path / "none"))
    assert main(["ask", Q]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quco demo" in err[0] and "make demo" in err[0]


def test_ask_missing_index_flag_and_empty_question(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", Q, "--index", str(tmp_path / "nope"), "--retriever", str(tmp_path)]) == 1
    assert "no corpus index" in capsys.readouterr().err
    assert main(["ask", "  ", "--policy", "none"]) == 1
    err = capsys.readouterr().err
    assert "empty" in err and len(err.strip().splitlines()) == 1
