"""One corpus split in three, served by three real ``quco serve`` processes, counted as one.

Differential: every count and co-occurrence over the three servers equals the
single index's (the same tiny corpus). Refusals: an incomplete set, a part
given twice, a whole corpus in the set, a part of another split. A stopped
shard: the ``raise``, ``open`` and ``closed`` behaviours, in the corpus backend
and in the guard's verdict, each naming the shard.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from quco.cli import main
from quco.corpus import open_stats
from quco.corpus.build_parts import build_parts, corpus_id, resolve_tokenizer
from quco.corpus.manifest import Manifest
from quco.corpus.remote import FAIL_OPEN_COUNT, DegradedCount
from quco.corpus.sharded import ShardedStats, read_shard_map
from quco.errors import BackendUnavailableError, BadInputError, ShardSetError

TERMS = [
    "Paris", "France", "Berlin", "Germany", "Tokyo", "Kyoto", "Japan", "Vienna", "Austria", "Rome", "Italy",
    "Madrid", "Spain", "Marie Curie", "Warsaw", "Einstein", "Albert Einstein", "Nile", "Cairo", "London",
    "Zanzibar", "Reykjavik", "Iceland", "capital", "the", "river", "Nowhere Land", "Lyon",
]  # fmt: skip
PAIRS = list(
    itertools.combinations(["Paris", "France", "Berlin", "Germany", "Tokyo", "Kyoto", "Rome", "Zanzibar"], 2)
)


@pytest.fixture(scope="module")
def split3(tmp_path_factory: pytest.TempPathFactory, tiny_corpus_file: Path) -> Path:
    """The tiny corpus split by documents into three indexes (small shards: parts have several)."""
    out = tmp_path_factory.mktemp("split3") / "parts"
    build_parts([tiny_corpus_file], out, parts=3, shard_size=150, progress=False)
    return out


def _serve(dirs: list[Path]) -> tuple[list[subprocess.Popen[str]], list[str]]:
    """One ``quco serve DIR --port 0`` process per directory; their URLs (read from their first line)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "quco", "serve", str(d), "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for d in dirs
    ]
    urls = []
    try:
        for p in procs:
            line = p.stderr.readline()  # type: ignore[union-attr]
            m = re.search(r" at (http://\S+) ", line)
            assert m, f"quco serve did not start: {line!r}"
            urls.append(m.group(1))
    except BaseException:
        _stop(procs)
        raise
    return procs, urls


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        p.wait(timeout=30)


@pytest.fixture(scope="module")
def shard_urls(split3: Path) -> Iterator[list[str]]:
    procs, urls = _serve([split3 / f"part-{k}" for k in range(3)])
    yield urls
    _stop(procs)


def test_the_split_partitions_the_documents(split3: Path, small_stats, tiny_corpus_file: Path) -> None:  # type: ignore[no-untyped-def]
    ms = [Manifest.load(split3 / f"part-{k}") for k in range(3)]
    assert [(m.partition.part, m.partition.parts) for m in ms] == [(0, 3), (1, 3), (2, 3)]  # type: ignore[union-attr]
    assert len({m.partition.corpus_id for m in ms}) == 1  # type: ignore[union-attr]
    assert any(len(m.shards) > 1 for m in ms)
    lines = []
    for k in range(3):
        for s in range(len(ms[k].shards)):
            lines += [
                json.loads(x)["line"]
                for x in (split3 / f"part-{k}" / f"metadata.{s}").read_text().splitlines()
            ]
    assert sorted(lines) == list(range(1, 31))  # every document once
    assert sum(m.tokens for m in ms) == small_stats.manifest.tokens
    cid, refs = read_shard_map(split3 / "shards.json")
    assert cid == ms[0].partition.corpus_id and [r.location for r in refs] == [  # type: ignore[union-attr]
        str((split3 / f"part-{k}").resolve()) for k in range(3)
    ]
    # the id is the inputs': the same corpus and parts give the same one, other parts another
    tok = resolve_tokenizer(None)
    assert corpus_id(ms[0].sources, 3, tok) == cid != corpus_id(ms[0].sources, 2, tok)
    with pytest.raises(BadInputError, match="too few documents"):
        build_parts([tiny_corpus_file], split3.parent / "forty", parts=40, progress=False)


@pytest.mark.slow
def test_three_servers_count_like_the_single_index(shard_urls, split3, small_stats, tmp_path) -> None:  # type: ignore[no-untyped-def]
    want_counts = small_stats.count_many(TERMS)
    want = {w: small_stats.cooccur_many(PAIRS, window=w) for w in (1000, 10)}
    want_doc = small_stats.cooccur_many(PAIRS, mode="doc")
    assert any(c.value > 0 for c in want[10]) and any(c.value == 0 for c in want[1000])
    shard_map = tmp_path / "servers.json"
    shard_map.write_text(json.dumps({"shards": list(reversed(shard_urls))}))  # any order
    for loc in (",".join(shard_urls), str(shard_map), str(split3 / "shards.json")):
        with open_stats(loc) as st:
            assert isinstance(st, ShardedStats)
            assert st.count_many(TERMS) == want_counts, loc
            assert [st.count(t) for t in TERMS[:5]] == want_counts[:5]
            for w in (1000, 10):
                assert st.cooccur_many(PAIRS, window=w) == want[w], (loc, w)
            assert st.cooccur_many(PAIRS, mode="doc") == want_doc
            assert st.cooccur("Tokyo", "Kyoto", window=1000) == small_stats.cooccur(
                "Tokyo", "Kyoto", window=1000
            )
    # the command line and an audit over the three servers
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"question": "Where was Marie Curie born?", "answer": "Marie Curie was born in Reykjavik."}) + "\n"
        + json.dumps({"question": "What is the capital of France?", "answer": "Paris is. Lyon is not."}) + "\n"
    )  # fmt: skip
    base = ["audit", str(src), "--no-model", "--no-progress"]
    assert main([*base, "--index", ",".join(shard_urls), "--out", str(tmp_path / "s.jsonl")]) == 0
    assert main([*base, "--index", str(small_stats.index_dir), "--out", str(tmp_path / "l.jsonl")]) == 0
    assert (tmp_path / "s.jsonl").read_bytes() == (tmp_path / "l.jsonl").read_bytes()


@pytest.mark.slow
def test_a_set_that_is_not_one_corpus_is_refused(shard_urls, split3, small_index, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from quco.corpus.server import serve_in_thread

    a, b, c = shard_urls
    with pytest.raises(ShardSetError, match="2 shards were given"):
        open_stats(f"{a},{b}")
    with pytest.raises(ShardSetError, match="given twice"):
        open_stats(f"{a},{a},{c}")
    whole, url = serve_in_thread([small_index])
    try:
        with pytest.raises(ShardSetError, match="whole corpus"):
            open_stats(f"{a},{url},{c}")
    finally:
        whole.close()
    other = tmp_path / "other"  # a split of another corpus
    src = tmp_path / "other.jsonl"
    src.write_text("".join(json.dumps({"text": f"Paris document {i}. France."}) + "\n" for i in range(9)))
    build_parts([src], other, parts=3, progress=False)
    with pytest.raises(ShardSetError, match="do not form one corpus"):
        open_stats(f"{a},{b},{other / 'part-2'}")
    cmap = tmp_path / "wrong-id.json"
    cmap.write_text(json.dumps({"corpus_id": "not-this-one", "shards": shard_urls}))
    with pytest.raises(ShardSetError, match="not of not-this-one"):
        open_stats(str(cmap))
    # on the command line: one line, exit 1
    assert main(["count", "--index", f"{a},{b}", "Paris"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2 shards were given" in err and a in err


def _sentence_check(stats, extractor, mode: str):  # type: ignore[no-untyped-def]
    from quco.guard.checks import Checker

    checker = Checker("quco", extractor, stats, on_backend_error=mode)  # type: ignore[arg-type]
    q = "Where was Marie Curie born?"
    q_ents = checker.question_entities(q)
    return checker.sentence(q, q_ents, (), "Marie Curie was born in Warsaw.", None)


@pytest.mark.slow
def test_a_stopped_shard_follows_raise_open_and_closed(split3, extractor) -> None:  # type: ignore[no-untyped-def]
    procs, urls = _serve([split3 / f"part-{k}" for k in range(3)])
    try:
        loc = ",".join(urls)
        stats = {m: open_stats(loc, on_error=m, timeout=2.0, retries=0) for m in ("raise", "open", "closed")}
        ok = _sentence_check(stats["raise"], extractor, "raise")
        # triplet mode (the default): 'Marie Curie' -born in-> 'Warsaw', counted over the three shards
        assert not ok.errors and ok.claims and all(c.count.value > 0 for c in ok.claims)
        procs[1].terminate()
        procs[1].wait(timeout=30)
        down = f"shard 2 of 3 ({urls[1]})"

        with pytest.raises(BackendUnavailableError) as exc:
            stats["raise"].count("Paris")
        assert down in str(exc.value) and "\n" not in str(exc.value)
        for mode, value in (("open", FAIL_OPEN_COUNT), ("closed", 0)):
            c = stats[mode].cooccur("Paris", "France")
            assert isinstance(c, DegradedCount) and (c.value, c.approx) == (value, True)
            assert down in c.error
            assert stats[mode].errors and down in stats[mode].errors[-1].error

        # the guard's verdict follows its on_backend_error and says which shard failed
        with pytest.raises(BackendUnavailableError, match=re.escape(down)):
            _sentence_check(stats["raise"], extractor, "raise")
        v_open = _sentence_check(stats["raise"], extractor, "open")
        assert v_open.action == "open" and not v_open.risk.flagged and not v_open.fired
        assert any(down in e for e in v_open.errors)
        v_closed = _sentence_check(stats["raise"], extractor, "closed")
        assert v_closed.action == "closed" and v_closed.risk.flagged and v_closed.fired
        assert any(down in e for e in v_closed.errors)
        # a backend that degrades by itself: the verdict reports its made-up counts, naming the shard
        v_deg = _sentence_check(stats["closed"], extractor, "open")
        assert any(down in e for e in v_deg.errors) and v_deg.risk.flagged  # zero co-occurrence fires

        # opening a set while a shard is down: raise refuses, open/closed check it when it answers
        with pytest.raises(BackendUnavailableError, match=re.escape(down)):
            open_stats(loc, timeout=2.0, retries=0)
        with open_stats(loc, on_error="open", timeout=2.0, retries=0) as late:
            assert late.count("Paris").value == FAIL_OPEN_COUNT
            assert late.infos[1] is None and late.infos[0] is not None
        for s in stats.values():
            s.close()
    finally:
        _stop(procs)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError):
        open_stats(loc, timeout=2.0, retries=0)  # all down: refused connections, no waiting
    assert time.monotonic() - t0 < 10
