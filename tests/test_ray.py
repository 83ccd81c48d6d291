"""The Ray engines against a real local Ray cluster (a head and a worker node, started by the tests).

- ``quco audit --engine ray`` writes the bytes the local engine writes, bad rows included;
- an actor killed mid-run is restarted and the audit completes with no row lost or duplicated;
- a driver killed mid-run resumes to the same file;
- ``quco index build --engine ray`` (whole, and ``--split 3``) counts like the local build.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quco.audit.runner import side_paths
from quco.cli import main

pytestmark = pytest.mark.slow

ACTOR = "MapWorker(MapBatches(AuditActor))"


def _rows(n: int) -> list[bytes]:
    """Real questions and answers (entities the tiny corpus has, and some it has not), with bad rows."""
    cities = ["Paris", "Berlin", "Rome", "Madrid", "Vienna", "Tokyo", "Warsaw", "Reykjavik"]
    countries = ["France", "Germany", "Italy", "Spain", "Austria", "Japan", "Poland", "Iceland"]
    out: list[bytes] = []
    for i in range(n):
        if i % 23 == 5:
            out.append(b'{"question": "Who?", "answer": ')  # malformed JSON
        if i % 31 == 7:
            out.append(b'{"question": "Where is Paris?"}')  # no answer
        if i % 37 == 11:
            out.append(b'{"question": "Caf\xe9?", "answer": "Paris"}')  # not UTF-8
        if i % 41 == 13:
            out.append(b"   ")  # blank
        c, k = cities[i % 8], countries[(i * 3) % 8]
        row = {"question": f"What is the capital of {k}?", "answer": f"{c} is the capital of {k}. It is old.",
               "id": f"r{i}", "label": int(cities.index(c) != countries.index(k))}  # fmt: skip
        if i % 5 == 0:
            row["context"] = [f"{c} lies in {k}."]
        out.append(json.dumps(row).encode())
    return out


@pytest.fixture(scope="module")
def audit_case(
    tmp_path_factory: pytest.TempPathFactory, small_index: Path
) -> tuple[Path, Path, list[str], int]:
    """(input, the local engine's output, the audit arguments, bad rows): the reference, audited once."""
    tmp = tmp_path_factory.mktemp("ray_audit")
    lines = _rows(400)
    src = tmp / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    args = [
        "audit",
        str(src),
        "--index",
        str(small_index),
        "--no-model",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    ref = tmp / "local.jsonl"
    bad = sum(1 for x in lines if x.strip() and not x.startswith(b'{"question": "What'))
    assert main([*args, "--out", str(ref)]) == bad
    return src, ref, args, bad


def _ray_cmd(args: list[str], out: Path, address: str) -> list[str]:
    return [sys.executable, "-m", "quco", *args, "--out", str(out), "--engine", "ray",
            "--address", address, "--workers", "2"]  # fmt: skip


def _state_lines(out: Path) -> int:
    try:
        return int(json.loads(side_paths(out)[1].read_text())["lines"])
    except (OSError, ValueError, KeyError):
        return 0


def _same_files(a: Path, b: Path) -> None:
    assert a.read_bytes() == b.read_bytes()
    assert side_paths(a)[0].read_bytes() == side_paths(b)[0].read_bytes()


def test_ray_audit_is_byte_identical_to_local(ray_cluster, audit_case) -> None:  # type: ignore[no-untyped-def]
    src, ref, args, bad = audit_case
    out = ref.with_name("ray.jsonl")
    r = subprocess.run(_ray_cmd(args, out, ray_cluster.address), env=ray_cluster.env, capture_output=True,
                       text=True, timeout=400)  # fmt: skip
    assert r.returncode == bad, r.stderr
    _same_files(out, ref)
    recs = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(recs) == 400 and len({r["id"] for r in recs}) == 400
    assert [json.loads(x)["line"] for x in side_paths(out)[0].read_text().splitlines()] == sorted(
        json.loads(x)["line"] for x in side_paths(ref)[0].read_text().splitlines()
    )
    assert f"quco: {bad} bad rows" in r.stderr


def _cluster_actor(ray_cluster) -> int | None:  # type: ignore[no-untyped-def]
    """The pid of one of this cluster's audit actors (a descendant of a node this test started)."""
    import psutil

    ours = {p.pid for p in ray_cluster.procs}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or ())
        if ACTOR not in cmd:
            continue
        try:
            if any(a.pid in ours for a in proc.parents()):
                return int(proc.info["pid"])
        except psutil.Error:
            continue
    return None


def test_an_actor_killed_mid_run_loses_and_duplicates_nothing(ray_cluster, audit_case) -> None:  # type: ignore[no-untyped-def]
    src, ref, args, bad = audit_case
    out = ref.with_name("killed-actor.jsonl")
    proc = subprocess.Popen(_ray_cmd(args, out, ray_cluster.address), env=ray_cluster.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    killed = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and killed is None:
        if _state_lines(out) >= 8:  # the actors are up and committing
            killed = _cluster_actor(ray_cluster)
            if killed is not None:
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    _, err = proc.communicate(timeout=400)
    assert killed is not None, "the audit finished before an actor could be killed"
    assert _state_lines(out) >= 8
    assert proc.returncode == bad, err.decode()[-3000:]
    _same_files(out, ref)  # every row once, in order: nothing lost, nothing twice


def test_an_interrupted_ray_run_resumes_to_the_same_file(ray_cluster, audit_case, tmp_path) -> None:  # type: ignore[no-untyped-def]
    src, ref, args, bad = audit_case
    out = tmp_path / "resumed.jsonl"
    cmd = _ray_cmd(args, out, ray_cluster.address)
    proc = subprocess.Popen(cmd, env=ray_cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if _state_lines(out) >= 20:
            proc.send_signal(signal.SIGKILL)
            killed_at = _state_lines(out)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert killed_at is not None, "the audit finished before it could be interrupted"
    st = json.loads(side_paths(out)[1].read_text())
    assert not st["done"] and st["lines"] < len(src.read_bytes().splitlines())
    # a copy of the interrupted files, to resume with the local engine too
    alt = tmp_path / "resumed-local.jsonl"
    for a, b in zip((out, *side_paths(out)), (alt, *side_paths(alt))):
        if a.exists():
            b.write_bytes(a.read_bytes())

    r = subprocess.run(cmd, env=ray_cluster.env, capture_output=True, text=True, timeout=400)
    assert r.returncode == bad, r.stderr
    assert f"resumed after line {st['lines']}" in r.stderr
    _same_files(out, ref)
    # the state is engine-independent: the local engine finishes a run the Ray engine started
    assert main([*args, "--out", str(alt)]) == bad
    _same_files(alt, ref)


def test_ray_index_build_counts_like_the_local_one(
    ray_cluster, tiny_corpus_file, small_stats, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from quco.corpus import open_stats
    from quco.corpus.build_parts import build_parts

    out = tmp_path / "split"
    cmd = [sys.executable, "-m", "quco", "index", "build", str(tiny_corpus_file), "--out", str(out),
           "--engine", "ray", "--address", ray_cluster.address, "--split", "3", "--shard-size", "150", "--json"]  # fmt: skip
    r = subprocess.run(cmd, env=ray_cluster.env, capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    parts = res["parts"]
    assert [p["partition"]["part"] for p in parts] == [0, 1, 2]
    assert sum(p["documents"] for p in parts) == small_stats.manifest.documents
    assert sum(p["tokens"] for p in parts) == small_stats.manifest.tokens
    # the same split as the local engine's: same documents per part, same corpus id
    local = build_parts([tiny_corpus_file], tmp_path / "local", parts=3, shard_size=150, progress=False)
    assert [m.partition.corpus_id for m in local.manifests] == [p["partition"]["corpus_id"] for p in parts]  # type: ignore[union-attr]
    assert [m.documents for m in local.manifests] == [p["documents"] for p in parts]
    with open_stats(str(out / "shards.json")) as sharded:
        terms = ["Paris", "France", "Berlin", "Tokyo", "Kyoto", "Marie Curie", "Zanzibar", "Nowhere"]
        assert sharded.count_many(terms) == small_stats.count_many(terms)
        pairs = [("Paris", "France"), ("Tokyo", "Kyoto"), ("Berlin", "Germany"), ("Zanzibar", "Paris")]
        for w in (1000, 10):
            assert sharded.cooccur_many(pairs, window=w) == small_stats.cooccur_many(pairs, window=w)
