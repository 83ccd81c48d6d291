"""Property tests of the corpus reader (quco/corpus/reader.py) over arbitrary bytes.

Invariants, for any file content, encoding or compressed garbage:

1. reading never raises anything but CorpusError (a QucoError: one clear line), and
   never hangs;
2. every good row is kept: the good rows of a file that also holds garbage lines,
   bytes in other encodings or a truncated compressed tail come out, in order, with
   their line numbers, and each skipped line is reported as a BadRow with its line.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quco.corpus.reader import ReadReport, iter_documents
from quco.errors import CorpusError

SUFFIXES = [".jsonl", ".json", ".txt", ".jsonl.gz", ".txt.gz", ".jsonl.zst", ".txt.zst"]
SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def _compress(data: bytes, suffix: str) -> bytes:
    if suffix.endswith(".gz"):
        return gzip.compress(data)
    if suffix.endswith(".zst"):
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


def _read(content: bytes, suffix: str) -> tuple[list, ReadReport, CorpusError | None]:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / f"corpus{suffix}"
        p.write_bytes(content)
        report = ReadReport()
        docs = []
        try:
            for doc in iter_documents([p], report):
                docs.append(doc)
        except CorpusError as exc:
            return docs, report, exc
        return docs, report, None


@SETTINGS
@given(content=st.binary(max_size=4096), suffix=st.sampled_from(SUFFIXES))
@example(content=b"[" * 100_000, suffix=".jsonl")  # JSON nested too deeply for the parser
@example(content=b'{"text": "x", "n": ' + b"1" * 5000 + b"}", suffix=".jsonl")  # an int past Python's digit limit
@example(content=b'{"text": "bad \\ud800 surrogate"}\n{"text": "good"}', suffix=".jsonl")
@example(content=b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage after a gzip header", suffix=".jsonl.gz")
@example(content=b"\x28\xb5\x2f\xfd garbage after a zstd magic", suffix=".txt.zst")
def test_arbitrary_bytes_never_raise_anything_but_corpus_error(content: bytes, suffix: str) -> None:
    docs, report, err = _read(content, suffix)
    assert err is None or ("\n" not in str(err) and str(err))
    for d in docs:  # every document is text that encodes as UTF-8 and is not blank
        assert d.text.strip() and d.text.encode("utf-8")
        json.dumps(d.metadata, ensure_ascii=False).encode("utf-8")
    assert all(r.line >= 1 and r.reason for r in report.bad_rows)


@SETTINGS
@given(content=st.binary(min_size=1, max_size=2048), suffix=st.sampled_from([".jsonl.gz", ".jsonl.zst", ".txt.gz"]))
def test_compressed_garbage_is_a_clear_error_or_bad_rows(content: bytes, suffix: str) -> None:
    """Random bytes under a .gz/.zst name: a clear CorpusError naming the file, never another exception."""
    docs, report, err = _read(content, suffix)
    assert err is not None or docs or report.bad_rows
    if err is not None:
        assert "corpus" in str(err) and "\n" not in str(err)


good_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zl", "Zp", "Cc")), min_size=1, max_size=40
).filter(lambda s: s.strip())
garbage_line = st.one_of(
    st.binary(max_size=60).filter(lambda b: b"\n" not in b),
    st.sampled_from([b"{not json", b"[1, 2]", b'{"text": 5}', b'{"text": ""}', b'{"no_text": "x"}', b"\xff\xfe\x00"]),
    good_text.map(lambda s: json.dumps({"text": s}).encode("utf-16")).filter(lambda b: b"\n" not in b),
    good_text.map(lambda s: s.encode("latin-1", errors="ignore") + b"\xe9\xff").filter(lambda b: b"\n" not in b),
)


@SETTINGS
@given(
    rows=st.lists(st.one_of(good_text.map(lambda s: ("good", s)), garbage_line.map(lambda b: ("junk", b))), max_size=30),
    suffix=st.sampled_from([".jsonl", ".jsonl.gz", ".jsonl.zst"]),
    truncate=st.booleans(),
)
def test_good_rows_are_kept_among_garbage(rows, suffix, truncate) -> None:
    lines = [json.dumps({"text": v, "i": i}).encode() if kind == "good" else v for i, (kind, v) in enumerate(rows)]
    raw = b"".join(line + b"\n" for line in lines)
    content = _compress(raw, suffix)
    if truncate and suffix != ".jsonl":
        content = content[: max(1, len(content) - 7)]  # a compressed stream cut short (an interrupted copy)
    docs, report, err = _read(content, suffix)
    want = [(i + 1, v) for i, (kind, v) in enumerate(rows) if kind == "good"]
    got = [(d.line, d.text) for d in docs]
    if truncate and suffix != ".jsonl":
        # the rows before the damage are kept, in order; the damage is reported, not raised
        assert got == want[: len(got)]
        assert err is None or "no usable document" in str(err)
        assert report.bad_rows and "cannot read" in report.bad_rows[-1].reason
    else:
        # garbage lines may be junk that happens to parse as a good row; every good row is there, in order
        got_good = [g for g in got if g in want]
        assert got_good == want
        assert err is None or not want
        bad_lines = {b.line for b in report.bad_rows}
        assert all(line not in bad_lines for line, _ in want)


def test_rows_holding_lone_surrogates_are_bad_rows_not_documents(tmp_path) -> None:
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "a \\ud800 b"}\n{"text": "ok", "meta": "\\udfff"}\n{"text": "fine"}\n')
    report = ReadReport()
    docs = list(iter_documents([p], report))
    assert [d.text for d in docs] == ["fine"]
    assert [(b.line, "surrogate" in b.reason) for b in report.bad_rows] == [(1, True), (2, True)]


@pytest.mark.parametrize("suffix", [".jsonl.gz", ".jsonl.zst"])
def test_a_truncated_compressed_file_keeps_its_readable_rows_and_the_next_files(tmp_path, suffix) -> None:
    # ~1.3 MB: many compressed blocks, so a cut tail loses only the last of them
    body = "".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(60_000)).encode()
    (tmp_path / f"a{suffix}").write_bytes(_compress(body, suffix)[:-20])
    (tmp_path / "b.jsonl").write_text('{"text": "next file"}\n')
    report = ReadReport()
    docs = list(iter_documents([tmp_path], report))
    texts = [d.text for d in docs]
    assert texts[-1] == "next file" and texts[:-1] == [f"row {i}" for i in range(len(texts) - 1)]
    assert len(texts) > 30_000  # most of the damaged file was readable
    assert len(report.bad_rows) == 1 and "cannot read the rest" in report.bad_rows[0].reason
