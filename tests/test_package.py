"""The package's front door: light import, version, CLI help, lazy names, errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "faiss", "spacy", "infini_gram", "sklearn", "langchain_core", "bm25s", "fastapi", "uvicorn", "httpx", "llama_index")


def test_import_quco_is_light() -> None:
    code = (
        "import sys, json, quco, quco.types, quco.errors, quco.cli, quco.risk, quco.analyze, quco.testing;"
        "quco.cli.build_parser();"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_version_and_help() -> None:
    from quco.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    r = subprocess.run([sys.executable, "-m", "quco", "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    for cmd in ("index", "count", "cooc", "serve", "proxy", "ask", "audit", "eval", "demo"):
        assert cmd in r.stdout, cmd


def test_lazy_names_resolve_and_unknown_raises() -> None:
    import quco

    assert quco.Count(3).to_dict() == {"count": 3, "approx": False}
    with pytest.raises(AttributeError):
        quco.NotAThing  # noqa: B018


def test_missing_extra_names_the_extra() -> None:
    from quco._deps import require
    from quco.errors import MissingDependencyError

    with pytest.raises(ImportError) as exc:
        require("definitely_not_installed_module_xyz", extra="nlp")
    assert isinstance(exc.value, MissingDependencyError)
    assert "quco[nlp]" in str(exc.value)


def test_datasets_rows_and_split_guard() -> None:
    from quco.datasets import check_fit_rows, load_halueval_qa, parse_rows
    from quco.errors import BadInputError

    assert parse_rows("3-5") == range(3, 6)
    with pytest.raises(BadInputError):
        parse_rows("5-3")
    with pytest.raises(BadInputError):
        check_fit_rows(range(1990, 2010))
    check_fit_rows(range(0, 2000))
    rows = load_halueval_qa(range(2, 4))
    assert [r.row for r in rows] == [2, 3] and all(r.question and r.right_answer for r in rows)


def test_demo_corpus_export_is_deduplicated_and_idempotent(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from quco.demo import KNOWLEDGE, export_demo_corpus, write_demo_audit_input

    paths = export_demo_corpus(tmp_path / "corpus")
    assert [p.name for p in paths] == [KNOWLEDGE, "halueval_news.jsonl", "wiki_summaries.jsonl"]
    rows = [json.loads(line) for line in paths[0].read_text(encoding="utf-8").splitlines()]
    texts = [r["text"] for r in rows]
    assert 9000 < len(texts) <= 10_000 and len(set(texts)) == len(texts) and all(t.strip() for t in texts)
    stamp = paths[0].stat().st_mtime_ns
    export_demo_corpus(tmp_path / "corpus")  # files already there are kept
    assert paths[0].stat().st_mtime_ns == stamp
    audit = [json.loads(x) for x in write_demo_audit_input(tmp_path / "a.jsonl", rows=3).read_text().splitlines()]
    assert [r["label"] for r in audit] == [0, 1] * 3 and all(r["question"] and r["answer"] for r in audit)
