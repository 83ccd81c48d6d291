"""The distributed paths' logic, without a cluster: audit steps and engines, shard sums and failures,
shard maps, partitions in the manifest, kept-alive connections, the Ray import guard.

The real thing (a Ray cluster, three ``quco serve`` processes) is in
``tests/test_ray.py`` and ``tests/test_sharded.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from quco.analyze import Analyzer
from quco.audit.records import Auditor, MemoExtractor
from quco.audit.rows import RawLine
from quco.audit.runner import LocalEngine, run_audit
from quco.audit.steps import BatchResult, cut_batches, parse_batch, read_span, span_of, spans
from quco.audit.verdicts import default_judge
from quco.corpus.manifest import Manifest, Partition
from quco.corpus.remote import FAIL_OPEN_COUNT, DegradedCount
from quco.corpus.sharded import ShardedStats, read_shard_map
from quco.errors import BackendUnavailableError, BadInputError, CorruptIndexError, QucoError
from quco.testing import FakeCorpus, FakeExtractor
from quco.types import Count

DOCS = [
    "Paris is the capital of France.",
    "Jane Austen wrote Emma in England.",
    "The Eiffel Tower is in Paris.",
    "Berlin is the capital of Germany.",
    "Paris and Berlin are far apart; France and Germany are neighbours.",
]


def _input(tmp: Path) -> Path:
    lines = [
        json.dumps({"question": "Where is the Eiffel Tower?", "answer": f"It is in {c}."}).encode()
        for c in ["Paris", "Berlin", "Rome"] * 5
    ]
    lines[3] = b'{"question": oops'
    lines[7] = b'{"question": "Caf\xe9?", "answer": "x"}'
    lines[9] = b"   "
    lines[11] = b'{"question": "Q", "answer": "' + b"a" * 300 + b'"}'
    p = tmp / "in.jsonl"
    p.write_bytes(b"\n".join(lines) + b"\n")
    return p


# ------------------------------------------------------------------ audit steps


def test_spans_are_the_batches_and_read_span_reads_them_again(tmp_path: Path) -> None:
    src = _input(tmp_path)
    with open(src, "rb") as f:
        batches = list(cut_batches(f, 0, 4))
    with open(src, "rb") as f:
        sps = list(spans(f, 0, 0, 4))
    assert [s.seq for s in sps] == list(range(len(batches))) == [0, 1, 2, 3]
    assert [(s.first_line, s.last_line) for s in sps] == [(0, 4), (4, 8), (8, 12), (12, 15)]
    for sp, raws in zip(sps, batches):
        again = read_span(src, sp)
        assert again == raws  # same bytes, line numbers and offsets, bad bytes included
        assert parse_batch(sp, again) == parse_batch(sp, raws)
    # from the middle, as a resumed run starts
    with open(src, "rb") as f:
        mid = list(spans(f, sps[1].last_line, sps[1].end, 4))
    assert [(s.first_line, s.start) for s in mid] == [
        (sps[2].first_line, sps[2].start),
        (sps[3].first_line, sps[3].start),
    ]
    # a changed file is noticed by the worker that reads it
    src.write_bytes(b"\n" + src.read_bytes())
    with pytest.raises(ValueError, match="changed"):
        read_span(src, sps[3])


def test_span_of_follows_the_lines() -> None:
    raws = [RawLine(5, b"a\n", 12), RawLine(6, b"b\n", 14)]
    sp = span_of(3, raws, 10)
    assert (sp.seq, sp.first_line, sp.last_line, sp.start, sp.end) == (3, 4, 6, 10, 14)


@pytest.fixture()
def auditor() -> Auditor:
    return Auditor(Analyzer(MemoExtractor(FakeExtractor()), FakeCorpus(DOCS)), default_judge(model=False))


class _Replay:
    """An engine that hands back the local engine's results in another order (or all of them)."""

    name = "replay"

    def __init__(self, auditor: Auditor, swap: bool) -> None:
        self.local = LocalEngine(auditor)
        self.swap = swap

    def results(self, src, fin, start_line, start, batch_size) -> Iterator[BatchResult]:  # type: ignore[no-untyped-def]
        got = list(self.local.results(src, fin, start_line, start, batch_size))
        if self.swap:
            got[0], got[1] = got[1], got[0]
        yield from got


def test_the_committer_takes_any_engine_but_only_in_order(tmp_path: Path, auditor: Auditor) -> None:
    src = _input(tmp_path)
    ref = tmp_path / "ref.jsonl"
    s = run_audit(src, ref, auditor, batch_size=4, progress=False)
    assert (s.audited, s.bad) == (12, 2)  # a malformed and a non-UTF-8 line; the blank one is skipped
    out = tmp_path / "replay.jsonl"
    run_audit(src, out, _Replay(auditor, swap=False), batch_size=4, progress=False)
    assert out.read_bytes() == ref.read_bytes()
    with pytest.raises(QucoError, match="returned batch 1 where 0 was due"):
        run_audit(src, tmp_path / "bad.jsonl", _Replay(auditor, swap=True), batch_size=4, progress=False)


# ------------------------------------------------------------------ shard sums


class _Down(FakeCorpus):
    def count(self, term: str) -> Count:
        raise BackendUnavailableError("corpus server http://x/ is unreachable (connection refused)")

    def cooccur(self, a, b, *, window=1000, mode="window"):  # type: ignore[no-untyped-def]
        raise BackendUnavailableError("corpus server http://x/ is unreachable (connection refused)")


def test_sums_over_parts_equal_the_whole() -> None:
    whole = FakeCorpus(DOCS)
    parts = ShardedStats([FakeCorpus(DOCS[i::3]) for i in range(3)], check=False)
    terms = ["Paris", "France", "Berlin", "Emma", "Nowhere"]
    assert parts.count_many(terms) == whole.count_many(terms)
    pairs = [("Paris", "France"), ("Paris", "Berlin"), ("Emma", "Paris")]
    for w in (1000, 3):
        assert parts.cooccur_many(pairs, window=w) == whole.cooccur_many(pairs, window=w)
    assert parts.cooccur("Paris", "Germany", mode="doc") == whole.cooccur("Paris", "Germany", mode="doc")
    assert parts.count_many([]) == [] and parts.cooccur_many([]) == []
    parts.close()


@pytest.mark.parametrize("mode", ["raise", "open", "closed"])
def test_a_failed_part_is_named_and_follows_on_error(mode: str) -> None:
    st = ShardedStats([FakeCorpus(DOCS), _Down(DOCS), FakeCorpus(DOCS)], names=["a", "b", "c"],
                      on_error=mode, check=False)  # type: ignore[arg-type]  # fmt: skip
    if mode == "raise":
        with pytest.raises(BackendUnavailableError, match=r"shard 2 of 3 \(b\): corpus server"):
            st.count_many(["Paris", "France"])
        return
    got = st.count_many(["Paris", "France"])
    value = FAIL_OPEN_COUNT if mode == "open" else 0
    assert all(
        isinstance(c, DegradedCount) and c.value == value and "shard 2 of 3 (b)" in c.error for c in got
    )
    assert len(st.errors) == 1 and "shard 2 of 3 (b)" in st.errors[0].error
    # a part that degrades by itself counts as failed too: its made-up count is never summed
    inner = ShardedStats([FakeCorpus(DOCS)], check=False, on_error="closed")
    inner_down = ShardedStats([_Down(DOCS)], check=False, on_error="open")
    outer = ShardedStats([inner, inner_down], names=["x", "y"], on_error=mode, check=False)  # type: ignore[arg-type]
    c = outer.count("Paris")
    assert c.value == value and "shard 2 of 2 (y)" in c.error  # type: ignore[attr-defined]


def test_shard_maps(tmp_path: Path) -> None:
    (tmp_path / "p1").mkdir()
    good = tmp_path / "m.json"
    good.write_text(json.dumps({"corpus_id": "abc", "shards": [
        "http://h1:8000/", {"url": "http://h2:8000/", "index": "part-1"}, "p1", {"path": "p1"}]}))  # fmt: skip
    cid, refs = read_shard_map(good)
    assert cid == "abc"
    assert [(r.location, r.index) for r in refs] == [
        ("http://h1:8000/", None), ("http://h2:8000/", "part-1"),
        (str((tmp_path / "p1").resolve()), None), (str((tmp_path / "p1").resolve()), None),
    ]  # fmt: skip
    bad = {
        "no shards": {"corpus_id": "x"},
        "empty": {"shards": []},
        "not a url": {"shards": [{"url": "ftp://x"}]},
        "both": {"shards": [{"url": "http://x/", "path": "p"}]},
        "id type": {"corpus_id": 3, "shards": ["p1"]},
        "index type": {"shards": [{"url": "http://x/", "index": 1}]},
    }
    for why, body in bad.items():
        p = tmp_path / "bad.json"
        p.write_text(json.dumps(body))
        with pytest.raises(BadInputError):
            read_shard_map(p)
        assert why
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(BadInputError, match="cannot read the shard map"):
        read_shard_map(tmp_path / "broken.json")


def test_partition_in_the_manifest(small_index: Path, tmp_path: Path) -> None:
    m = Manifest.load(small_index)
    assert m.partition is None and "partition" not in m.to_dict()
    d = {**m.to_dict(), "partition": Partition("c1", 1, 3).to_dict()}
    m2 = Manifest.from_dict(d)
    assert m2.partition == Partition("c1", 1, 3) and m2.to_dict()["partition"]["parts"] == 3
    for p in ({"corpus_id": "", "part": 0, "parts": 2}, {"corpus_id": "c", "part": 2, "parts": 2},
              {"corpus_id": "c", "part": True, "parts": 2}, "part 1"):  # fmt: skip
        with pytest.raises(CorruptIndexError, match="partition"):
            Manifest.from_dict({**m.to_dict(), "partition": p})


def test_pooled_connections_are_kept_alive_and_cut_on_close(small_index: Path) -> None:
    from quco.corpus.remote import RemoteStats
    from quco.corpus.server import serve_in_thread

    server, url = serve_in_thread([small_index])
    accepted = []
    orig = server.get_request

    def counting():  # type: ignore[no-untyped-def]
        conn = orig()
        accepted.append(conn)
        return conn

    server.get_request = counting  # type: ignore[method-assign]
    rs = RemoteStats(url, max_workers=1, retries=0, timeout=5)
    try:
        for _ in range(10):
            assert rs.count("Paris").value > 0
        h = rs.health()
        assert h["info"]["index"]["documents"] == 30 and h["info"]["index"]["partition"] is None
        assert (
            len(accepted) <= 2 and rs.requests == 10
        )  # one connection (maybe one more if the first was cut)
    finally:
        server.close()
    with pytest.raises(BackendUnavailableError):
        rs.count("Paris")  # a closed server answers nothing more, on kept-alive connections too
    rs.close()


def test_import_quco_does_not_import_ray_and_a_missing_ray_names_the_extra(tmp_path: Path) -> None:
    code = (
        "import sys, quco, quco.audit.ray_engine, quco.corpus.build_parts, quco.cli;"
        "quco.cli.build_parser();"
        "print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    blocked = (
        "import sys; sys.modules['ray'] = None\n"
        "from quco._ray import import_ray\n"
        "try:\n    import_ray()\nexcept ImportError as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, check=True)
    assert "MissingDependencyError" in out.stdout and "quco[distributed]" in out.stdout


def test_cli_split_build_and_info(
    tiny_corpus_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quco.cli import main

    out = tmp_path / "parts"
    assert main(["index", "build", str(tiny_corpus_file), "--out", str(out), "--split", "2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert [p["partition"]["part"] for p in res["parts"]] == [0, 1]
    assert sum(p["documents"] for p in res["parts"]) == 30 and res["shard_map"] == str(out / "shards.json")
    assert main(["index", "info", str(out / "part-1")]) == 0
    assert "part 2 of 2 of corpus" in capsys.readouterr().out
    # bad options: one line, exit 1
    for argv in (["--split", "0"], ["--address", "127.0.0.1:1"], ["--workers", "0", "--engine", "ray"]):
        assert main(["index", "build", str(tiny_corpus_file), "--out", str(tmp_path / "x"), *argv]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("quco: error:")


def test_cli_audit_engine_options_are_checked(
    small_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quco.cli import main

    src = _input(tmp_path)
    base = ["audit", str(src), "--out", str(tmp_path / "o.jsonl"), "--no-model", "--index", str(small_index)]
    cases = {
        ("--workers", "2"): "go with --engine ray",
        ("--address", "127.0.0.1:1"): "go with --engine ray",
        ("--engine", "ray", "--workers", "0"): "--workers must be positive",
        ("--remote-index", "x"): "--remote-index goes with one API URL",
    }
    for extra, needle in cases.items():
        assert main([*base, *extra]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err
    assert not (tmp_path / "o.jsonl").exists()
