"""``quco index build/info``, ``quco count`` and ``quco cooc``: output and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from quco.cli import main

pytestmark = pytest.mark.slow


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc != 0
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("quco: error: ")
    for n in needles:
        assert n in lines[0], lines[0]


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def minilm_index(tmp_path_factory):
    """A tiny index built with another tokenizer (the packaged MiniLM's, a BERT WordPiece)."""
    from quco.corpus.build import build_index
    from quco.models import embedding_model_path

    d = tmp_path_factory.mktemp("minilm")
    corpus = _jsonl(d / "c.jsonl", [{"text": "Paris is in France."}, {"text": "Paris, again."}])
    return build_index([corpus], d / "idx", tokenizer=embedding_model_path(), progress=False).path


# ------------------------------------------------------------------ bad input


def test_missing_corpus_path(capsys, tmp_path):
    rc, _, err = run(capsys, "index", "build", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "i"))
    assert_one_line_error(rc, err, "does not exist", "nope.jsonl")
    assert not (tmp_path / "i").exists()


def test_empty_corpus(capsys, tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    rc, _, err = run(capsys, "index", "build", str(tmp_path / "empty.jsonl"), "--out", str(tmp_path / "i"))
    assert_one_line_error(rc, err, "no usable document")
    assert not (tmp_path / "i").exists()


def test_non_utf8_corpus(capsys, tmp_path):
    (tmp_path / "latin1.jsonl").write_bytes(b'{"text": "caf\xe9 in Paris"}\n')
    rc, _, err = run(capsys, "index", "build", str(tmp_path / "latin1.jsonl"), "--out", str(tmp_path / "i"))
    assert_one_line_error(rc, err, "no usable document", "latin1.jsonl:1", "UTF-8")


def test_row_without_text(capsys, tmp_path):
    _jsonl(tmp_path / "notext.jsonl", [{"title": "Paris"}])
    rc, _, err = run(capsys, "index", "build", str(tmp_path / "notext.jsonl"), "--out", str(tmp_path / "i"))
    assert_one_line_error(rc, err, "notext.jsonl:1", "no 'text' field")


def test_missing_index_dir(capsys, tmp_path):
    rc, _, err = run(capsys, "count", "--index", str(tmp_path / "nothing"), "Paris")
    assert_one_line_error(rc, err, "no index at")
    rc, _, err = run(capsys, "cooc", "--index", str(tmp_path), "Paris", "France")
    assert_one_line_error(rc, err, "not a quco index")


def test_truncated_index_file(capsys, tmp_path, small_index):
    idx = tmp_path / "idx"
    shutil.copytree(small_index, idx)
    with open(idx / "tokenized.0", "r+b") as f:
        f.truncate(10)
    rc, _, err = run(capsys, "count", "--index", str(idx), "Paris")
    assert_one_line_error(rc, err, "damaged", "tokenized.0 has 10 bytes")
    rc, out, _ = run(capsys, "index", "info", str(idx), "--json")
    info = json.loads(out)
    assert rc == 1 and info["files_ok"] is False and "tokenized.0 has 10 bytes" in info["problems"][0]
    (idx / "quco-index.json").write_text('{"format_version": 1, "tokeni')
    rc, _, err = run(capsys, "cooc", "--index", str(idx), "Paris", "France")
    assert_one_line_error(rc, err, "unreadable manifest")


def test_tokenizer_mismatch(capsys, minilm_index):
    rc, _, err = run(
        capsys, "count", "--index", str(minilm_index), "--tokenizer", "smollm2-135m-instruct", "Paris"
    )
    assert_one_line_error(rc, err, "does not match", "smollm2-135m-instruct")
    # with its own tokenizer (the default: the manifest's) the index answers
    rc, out, _ = run(capsys, "count", "--index", str(minilm_index), "Paris", "--json")
    assert rc == 0 and json.loads(out)["count"] == 2
    # no padding or special tokens leak into the index (the BERT tokenizer file pads to 128)
    from quco.corpus.manifest import Manifest
    from quco.models import embedding_model_path, load_tokenizer

    tok = load_tokenizer(embedding_model_path())
    n = sum(
        len(tok(t, add_special_tokens=False)["input_ids"]) for t in ("Paris is in France.", "Paris, again.")
    )
    assert Manifest.load(minilm_index).tokens == n == 9


def test_existing_index_is_not_overwritten(capsys, tmp_path, small_index, tiny_corpus_file):
    before = (small_index / "quco-index.json").read_bytes()
    rc, _, err = run(capsys, "index", "build", str(tiny_corpus_file), "--out", str(small_index))
    assert_one_line_error(rc, err, "--force")
    assert (small_index / "quco-index.json").read_bytes() == before


def test_bad_window_is_one_line(capsys, small_index):
    rc, _, err = run(capsys, "cooc", "--index", str(small_index), "Paris", "France", "--window", "-3")
    assert_one_line_error(rc, err, "window")


def test_cli_process_exits_cleanly(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "quco", "count", "--index", str(tmp_path / "none"), "Paris"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"quco: error: no index at {tmp_path / 'none'}: the directory does not exist"
    ]


# ------------------------------------------------------------------ good input


def test_partly_bad_corpus_indexes_good_rows(capsys, tmp_path):
    corpus = tmp_path / "mixed.jsonl"
    corpus.write_bytes(
        b'{"text": "Paris is in France."}\n'
        b"{broken\n"
        b'{"text": "Lyon is in France.", "id": 3}\n'
        b'{"text": "caf\xe9"}\n'
        b'{"name": "no text"}\n'
        b'{"text": "Paris again."}\n'
    )
    out = tmp_path / "idx"
    rc, stdout, err = run(capsys, "index", "build", str(corpus), "--out", str(out), "--shard-size", "6")
    assert rc == 0, err
    assert "3 documents" in stdout and "3 bad row(s)" in stdout
    warnings = err.strip().splitlines()
    assert [w.split(": ", 3)[2] for w in warnings] == [f"skipped bad row {corpus}:{n}" for n in (2, 4, 5)]
    rc, stdout, _ = run(capsys, "count", "--index", str(out), "Paris", "France", "Lyon", "--json")
    rows = [json.loads(line) for line in stdout.splitlines()]
    assert rc == 0 and [(r["query"], r["count"], r["approx"]) for r in rows] == [
        ("Paris", 2, False), ("France", 2, False), ("Lyon", 1, False),
    ]  # fmt: skip
    rc, stdout, _ = run(capsys, "index", "info", str(out), "--json")
    info = json.loads(stdout)
    assert rc == 0 and info["bad_rows"] == 3 and info["documents"] == 3 and info["files_ok"]


def test_count_and_cooc_output(capsys, small_index, small_stats):
    rc, out, _ = run(capsys, "count", "--index", str(small_index), "Paris", "Nile")
    assert rc == 0
    assert out.splitlines() == [
        f"Paris\t{small_stats.count('Paris').value}",
        f"Nile\t{small_stats.count('Nile').value}",
    ]
    rc, out, _ = run(
        capsys, "cooc", "--index", str(small_index), "Tokyo", "Kyoto", "--window", "1000", "--json"
    )
    assert rc == 0 and json.loads(out) == {
        "query": ["Tokyo", "Kyoto"], "mode": "window", "window": 1000, "count": 0, "approx": False,
    }  # fmt: skip
    rc, out, _ = run(capsys, "cooc", "--index", str(small_index), "Tokyo", "Kyoto", "--mode", "doc")
    assert rc == 0 and out.startswith("Tokyo | Kyoto\t1\t")
    rc, out, _ = run(capsys, "count", "--index", str(small_index), "paris", "--casefold", "--json")
    assert json.loads(out)["count"] == small_stats.count("Paris").value


def test_index_info(capsys, small_index, tiny_corpus_docs):
    rc, out, _ = run(capsys, "index", "info", str(small_index))
    assert rc == 0
    assert f"documents    {len(tiny_corpus_docs)}" in out
    assert "all present with the recorded sizes" in out
    rc, out, _ = run(capsys, "index", "info", str(small_index), "--json")
    info = json.loads(out)
    assert info["documents"] == len(tiny_corpus_docs) and info["n_shards"] >= 3
    assert info["files_ok"] and 1 < info["corpus_bytes_per_token"] < 10


def test_index_info_prints_the_paper_rate_scaled_to_the_index(capsys, small_index, small_stats):
    tokens = small_stats.manifest.tokens
    rc, out, _ = run(capsys, "index", "info", str(small_index))
    assert rc == 0
    line = next(x for x in out.splitlines() if x.startswith("τ_entity"))
    assert f"{1000 * tokens / 4e12:.4g} in use" in line and "1e3@4e12" in line and "--tau-entity 1000" in line
    rc, out, _ = run(capsys, "index", "info", str(small_index), "--json")
    th = json.loads(out)["thresholds"]
    assert th["tau_entity_default"] == pytest.approx(1000 * tokens / 4e12) and th["tau_cooc_default"] == 1
    assert th["tau_entity_paper_rate"] == th["tau_entity_default"] and th["tau_entity_absolute"] == 1000
