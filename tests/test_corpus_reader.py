"""The corpus reader: formats, compression, directories and bad rows."""

from __future__ import annotations

import gzip
import json

import pytest

from quco.corpus.reader import BadRow, ReadReport, iter_documents, resolve_paths
from quco.errors import CorpusError


def _jsonl(rows: list[object]) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def test_jsonl_keeps_other_fields_as_metadata(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text(_jsonl([{"text": "Paris is big.", "id": 7, "src": "wiki"}, {"text": "Lyon."}]))
    docs = list(iter_documents([p]))
    assert [d.text for d in docs] == ["Paris is big.", "Lyon."]
    assert docs[0].metadata == {"id": 7, "src": "wiki"} and docs[1].metadata == {}
    assert (docs[0].line, docs[1].line) == (1, 2) and docs[0].path == str(p)


def test_text_file_is_one_document_per_blank_line_block(tmp_path):
    p = tmp_path / "b.txt"
    p.write_text("First para\nstill first.\n\n\nSecond para.\n  \nThird.")
    docs = list(iter_documents([p]))
    assert [d.text for d in docs] == ["First para\nstill first.", "Second para.", "Third."]
    assert [d.line for d in docs] == [1, 5, 7]


def test_gzip_and_zstd_are_read(tmp_path):
    import zstandard

    body = _jsonl([{"text": "one"}, {"text": "two"}]).encode()
    (tmp_path / "c.jsonl.gz").write_bytes(gzip.compress(body))
    (tmp_path / "d.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    (tmp_path / "e.txt.gz").write_bytes(gzip.compress(b"three\n\nfour\n"))
    texts = [d.text for d in iter_documents([tmp_path])]
    assert texts == ["one", "two", "one", "two", "three", "four"]


def test_directories_are_recursive_and_sorted(tmp_path):
    (tmp_path / "z").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "z" / "1.jsonl").write_text(_jsonl([{"text": "z1"}]))
    (tmp_path / "a" / "b" / "2.jsonl").write_text(_jsonl([{"text": "ab2"}]))
    (tmp_path / "a" / "1.txt").write_text("a1")
    (tmp_path / "a" / "notes.md").write_text("ignored")
    files = resolve_paths([tmp_path])
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["a/1.txt", "a/b/2.jsonl", "z/1.jsonl"]
    assert [d.text for d in iter_documents([tmp_path])] == ["a1", "ab2", "z1"]


def test_bad_rows_are_skipped_and_reported_with_line_numbers(tmp_path):
    p = tmp_path / "mixed.jsonl"
    p.write_bytes(
        _jsonl(
            [
                {"text": "good one"},
                "{not json",
                {"title": "no text"},
                {"text": 42},
                {"text": "   "},
                "[1, 2]",
                "",
                {"text": "good two"},
            ]
        ).encode()
        + b'{"text": "caf\xe9"}\n'
        + _jsonl([{"text": "good three"}]).encode()
    )
    report = ReadReport()
    docs = list(iter_documents([p], report))
    assert [d.text for d in docs] == ["good one", "good two", "good three"]
    assert [(b.line, b.reason.split(" (")[0]) for b in report.bad_rows] == [
        (2, "malformed JSON"),
        (3, "row has no 'text' field"),
        (4, "'text' is a int, not a string"),
        (5, "'text' is empty"),
        (6, "row is not a JSON object"),
        (9, "not valid UTF-8"),
    ]
    assert all(b.path == str(p) for b in report.bad_rows)
    assert str(report.bad_rows[0]).startswith(f"{p}:2: malformed JSON")
    assert report.documents == 3 and report.files == [p]


def test_non_utf8_text_block_is_skipped(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes(b"good block\n\nbad \xff line\nrest of bad block\n\nanother good\n")
    report = ReadReport()
    assert [d.text for d in iter_documents([p], report)] == ["good block", "another good"]
    assert report.bad_rows == [BadRow(str(p), 3, report.bad_rows[0].reason)]
    assert "UTF-8" in report.bad_rows[0].reason


def test_missing_path_and_unsupported_type_fail_at_call_time(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        iter_documents([tmp_path / "nope.jsonl"])
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(CorpusError, match="unsupported"):
        iter_documents([tmp_path / "x.csv"])
    with pytest.raises(CorpusError, match="no corpus file"):
        iter_documents([_empty_dir(tmp_path)])


def _empty_dir(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_corpus_without_usable_document_fails(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(_jsonl([{"title": "x"}, "oops"]))
    with pytest.raises(CorpusError, match=r"no usable document.*2 bad row.*bad.jsonl:1"):
        list(iter_documents([p]))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(CorpusError, match="no usable document"):
        list(iter_documents([tmp_path / "empty.jsonl"]))


def test_corrupt_gzip_keeps_the_rows_before_the_damage(tmp_path):
    p = tmp_path / "broken.jsonl.gz"
    p.write_bytes(gzip.compress(_jsonl([{"text": "x"}] * 100).encode())[:40])
    report = ReadReport()
    docs = list(iter_documents([p], report))
    assert 0 < len(docs) <= 100 and all(d.text == "x" for d in docs)  # (the cut took the trailer)
    assert "cannot read the rest of the file" in report.bad_rows[-1].reason
    p.write_bytes(b"\x1f\x8b\x08\x00 not gzip at all")  # nothing readable: the corpus is unusable
    with pytest.raises(CorpusError, match="cannot read"):
        list(iter_documents([p]))
