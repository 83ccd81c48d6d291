"""The index builder: on-disk format, manifest, sharding and atomicity."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from quco.corpus.manifest import MANIFEST_NAME, SHARD_FILES, Manifest
from quco.errors import BadInputError, CorruptIndexError, EngineError, IndexNotFoundError

pytestmark = pytest.mark.slow


def _write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_manifest_records_the_build(small_index, small_stats, tiny_corpus_docs, tiny_corpus_file):
    from quco._version import __version__
    from quco.models import file_sha256, vocab_hash

    m = Manifest.load(small_index)
    tok = small_stats.tokenizer
    lengths = [len(tok(d, add_special_tokens=False)["input_ids"]) for d in tiny_corpus_docs]
    assert m.tokenizer == "smollm2-135m-instruct"
    assert m.vocab_sha256 == vocab_hash(tok) and m.vocab_size == 49152
    assert (m.token_width, m.separator, m.eos_token_id) == (2, 0xFFFF, tok.eos_token_id)
    assert m.documents == len(tiny_corpus_docs) and m.tokens == sum(lengths)
    assert len(m.shards) >= 3 and all(s.documents > 0 for s in m.shards)
    assert m.sources[0].path == str(tiny_corpus_file)
    assert m.sources[0].sha256 == file_sha256(tiny_corpus_file)
    assert m.sources[0].size == tiny_corpus_file.stat().st_size
    assert m.bad_rows == 0 and m.quco_version == __version__ and m.build_seconds > 0
    assert Manifest.from_dict(m.to_dict()) == m


def test_on_disk_format_is_infini_gram(small_index, small_stats, tiny_corpus_docs):
    tok = small_stats.tokenizer
    m = Manifest.load(small_index)
    docs = []
    for s in m.shards:
        raw = (small_index / f"tokenized.{s.index}").read_bytes()
        offsets = np.fromfile(small_index / f"offset.{s.index}", dtype="<u8")
        assert len(offsets) == s.documents and offsets[0] == 0
        bounds = [*offsets.tolist(), len(raw)]
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            assert raw[a : a + 2] == b"\xff\xff"
            docs.append(np.frombuffer(raw[a + 2 : b], dtype="<u2").tolist())
        meta = (small_index / f"metadata.{s.index}").read_bytes().splitlines(keepends=True)
        metaoff = np.fromfile(small_index / f"metaoff.{s.index}", dtype="<u8")
        assert metaoff.tolist() == np.cumsum([0] + [len(x) for x in meta[:-1]]).tolist()
        table = (small_index / f"table.{s.index}").stat().st_size
        assert table % (s.tokens + s.documents) == 0
    assert docs == [tok(d, add_special_tokens=False)["input_ids"] for d in tiny_corpus_docs]
    # the shards hold ~SMALL_SHARD_SIZE tokens each: no shard but the long one is much larger
    from tests.fixtures.index import SMALL_SHARD_SIZE

    big = [s for s in m.shards if s.tokens + s.documents > 2 * SMALL_SHARD_SIZE]
    assert len(big) <= 1


def test_manifest_validation(small_index, tmp_path):
    idx = tmp_path / "idx"
    shutil.copytree(small_index, idx)
    good = json.loads((idx / MANIFEST_NAME).read_text())

    def load_with(d):
        (idx / MANIFEST_NAME).write_text(json.dumps(d))
        return Manifest.load(idx)

    assert load_with(good).documents == good["documents"]
    for field in ("tokenizer", "vocab_sha256", "shards", "token_width", "format_version"):
        with pytest.raises(CorruptIndexError, match=field):
            load_with({k: v for k, v in good.items() if k != field})
    with pytest.raises(CorruptIndexError, match="format version"):
        load_with({**good, "format_version": 99})
    with pytest.raises(CorruptIndexError, match="token_width"):
        load_with({**good, "token_width": 3})
    shards = [dict(s) for s in good["shards"]]
    shards[0] = {**shards[0], "files": {k: v for k, v in shards[0]["files"].items() if k != "table"}}
    with pytest.raises(CorruptIndexError, match="files"):
        load_with({**good, "shards": shards})
    (idx / MANIFEST_NAME).write_text(json.dumps(good)[:100])
    with pytest.raises(CorruptIndexError, match="unreadable manifest"):
        Manifest.load(idx)
    (idx / MANIFEST_NAME).write_text(json.dumps(good))
    with open(idx / "table.1", "r+b") as f:
        f.truncate(3)
    with pytest.raises(CorruptIndexError, match="table.1 has 3 bytes"):
        Manifest.load(idx)
    os.remove(idx / "offset.0")
    with pytest.raises(CorruptIndexError, match="offset.0 is missing"):
        Manifest.load(idx)
    os.remove(idx / MANIFEST_NAME)
    with pytest.raises(IndexNotFoundError, match="not a quco index"):
        Manifest.load(idx)
    with pytest.raises(IndexNotFoundError, match="does not exist"):
        Manifest.load(tmp_path / "nothing")


def test_failed_build_leaves_no_index_and_next_build_succeeds(tmp_path, monkeypatch):
    import quco.corpus.build as build
    from quco.corpus.local import LocalStats

    corpus = _write_jsonl(tmp_path / "c.jsonl", ["Paris is in France.", "Berlin is in Germany."] * 3)
    out = tmp_path / "idx"

    def boom(*args, **kwargs):
        raise EngineError("suffix array step failed")

    for exc in (boom, lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt())):
        monkeypatch.setattr(build, "build_suffix_arrays", exc)
        with pytest.raises((EngineError, KeyboardInterrupt)):
            build.build_index([corpus], out, shard_size=8, progress=False)
        assert not out.exists()
        assert not list(tmp_path.glob(".idx.tmp-*"))
        with pytest.raises(IndexNotFoundError):
            LocalStats(out)
    monkeypatch.undo()

    stale = tmp_path / ".idx.tmp-999999999"  # a dead build's leftovers
    stale.mkdir()
    (stale / "tokenized.0").write_bytes(b"\xff\xff")
    res = build.build_index([corpus], out, shard_size=8, progress=False)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "idx"]
    assert len(res.manifest.shards) >= 2
    with LocalStats(out) as stats:
        assert stats.count("Paris").value == 3
        assert stats.cooccur("Paris", "France", window=5).value == 3
        assert stats.cooccur("Paris", "Germany", window=5).value == 0


def test_existing_index_needs_force(tmp_path):
    from quco.corpus.build import build_index
    from quco.corpus.local import LocalStats

    out = tmp_path / "idx"
    build_index([_write_jsonl(tmp_path / "a.jsonl", ["Paris once."])], out, progress=False)
    b = _write_jsonl(tmp_path / "b.jsonl", ["Paris twice. Paris."])
    with pytest.raises(BadInputError, match="--force"):
        build_index([b], out, progress=False)
    with LocalStats(out) as stats:
        assert stats.count("Paris").value == 1
    build_index([b], out, force=True, progress=False)
    with LocalStats(out) as stats:
        assert stats.count("Paris").value == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "idx"]
    assert set(SHARD_FILES) <= {p.name.split(".")[0] for p in out.iterdir()}


def test_worker_processes_give_identical_files(tmp_path, tiny_corpus_file):
    from quco.corpus.build import build_index

    one = build_index([tiny_corpus_file], tmp_path / "one", shard_size=400, progress=False)
    two = build_index([tiny_corpus_file], tmp_path / "two", shard_size=400, workers=2, batch_docs=4,
                      progress=False)  # fmt: skip
    assert [s.to_dict() for s in one.manifest.shards] == [s.to_dict() for s in two.manifest.shards]
    for s in one.manifest.shards:
        for name in SHARD_FILES:
            f = f"{name}.{s.index}"
            assert (tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes(), f


def test_u32_index_counts_like_u16_or_fails_cleanly(tmp_path, tiny_corpus_file, small_stats):
    """4-byte tokens: infini-gram's builder allocates ~32 GiB for them; without that much RAM
    the build must fail with one clear EngineError and leave nothing behind."""
    from quco.corpus.build import build_index
    from quco.corpus.local import LocalStats

    out = tmp_path / "u32"
    try:
        res = build_index([tiny_corpus_file], out, shard_size=400, token_width=4, progress=False)
    except EngineError as exc:
        assert "32 GiB" in str(exc) and "\n" not in str(exc)
        assert sorted(p.name for p in tmp_path.iterdir()) == []
        return
    m = res.manifest
    assert (m.token_width, m.separator) == (4, 0xFFFFFFFF)
    assert (out / "tokenized.0").read_bytes()[:4] == b"\xff\xff\xff\xff"
    with LocalStats(res.path) as wide:
        for term in ("Paris", "Berlin", "Zanzibar"):
            assert wide.count(term) == small_stats.count(term)
        for a, b in (("Paris", "France"), ("Tokyo", "Kyoto")):
            for w in (5, 1000, 5000):
                assert wide.cooccur(a, b, window=w) == small_stats.cooccur(a, b, window=w)
        assert wide.get_doc(0, 0)[0] == small_stats.get_doc(0, 0)[0]
