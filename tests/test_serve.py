"""``quco serve``: the remote backend over a real small index equals the local one;
bad requests get 4xx JSON errors; concurrent requests are answered correctly."""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from quco.corpus.remote import RemoteStats
from quco.corpus.server import MAX_BODY_BYTES, serve_in_thread
from quco.testing import FakeCorpus
from quco.types import Count

ABSENT = ["Zyxwvut Qwerasdf", "Blorptastic"]


def post(url: str, body: bytes | dict[str, Any], path: str = "/") -> tuple[int, dict[str, Any]]:
    """POST raw bytes or a JSON object; return (status, decoded JSON body)."""
    m = re.match(r"http://([^:/]+):(\d+)/", url)
    assert m
    conn = http.client.HTTPConnection(m.group(1), int(m.group(2)), timeout=30)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        conn.request("POST", path, body=data, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


# --------------------------------------------------------------- fake backend


@pytest.fixture(scope="module")
def fake_server() -> Iterator[str]:
    server, url = serve_in_thread([FakeCorpus(["Paris is in France .", "Berlin is in Germany ."])])
    yield url
    server.close()


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "JSON"),
        (b"[1, 2]", 400, "object"),
        ({"query_type": "ntd", "query": "Paris"}, 400, "query_type"),
        ({"query": "Paris"}, 400, "query_type"),
        ({"query_type": "count"}, 400, "query"),
        ({"query_type": "count", "query": ""}, 400, "empty"),
        ({"query_type": "count", "query": 5}, 400, "string"),
        ({"query_type": "count", "query": "x" * 1001}, 400, "1000"),
        ({"query_type": "count", "index": "nope", "query": "Paris"}, 400, "unknown index"),
        ({"query_type": "count", "query": "Paris AND France", "max_diff_tokens": 0}, 400, "max_diff_tokens"),
        (
            {"query_type": "count", "query": "Paris AND France", "max_diff_tokens": "9"},
            400,
            "max_diff_tokens",
        ),
        ({"query_type": "count", "query": "Paris AND France", "mode": "near"}, 400, "mode"),
        ({"query_type": "count", "query": "A AND B AND C"}, 400, "local index"),  # the fake has no CNF
        ({"query_type": "count", "query": "A AND B AND C AND D AND E"}, 400, "at most 4 AND clauses"),
        ({"query_type": "count", "query": "A OR B OR C OR D OR E"}, 400, "at most 4 OR terms"),
        ({"query_type": "count", "query": "A AND B", "max_diff_tokens": 1001}, 400, "at most 1000"),
        ({"query_type": "count", "query": "A AND B", "max_clause_freq": 500_001}, 400, "at most 500000"),
        ({"query_type": "count", "query": "A AND B", "max_clause_freq": 0}, 400, "max_clause_freq"),
        ({"query_type": "count", "query": "\ud800"}, 400, "unicode"),
        ({"query_type": "count", "query_ids": [[[1]]] * 5}, 400, "at most 4 AND clauses"),
        ({"query_type": "count", "query_ids": [1] * 501}, 400, "500"),
        ({"query_type": "count", "index": ["x"], "query": "Paris"}, 400, "unknown index"),
        ({"query_type": "count", "query": "Paris AND "}, 400, "empty"),
        ({"query_type": "count", "query_ids": "12"}, 400, "query_ids"),
    ],
)
def test_bad_requests_get_a_json_4xx(fake_server: str, body: Any, status: int, needle: str) -> None:
    code, answer = post(fake_server, body)
    assert code == status
    assert set(answer) == {"error"} and needle.lower() in answer["error"].lower()


def test_oversized_body_is_refused(fake_server: str) -> None:
    big = {"query_type": "count", "query": "Paris", "pad": "x" * (MAX_BODY_BYTES + 10)}
    code, answer = post(fake_server, big)
    assert code == 413 and "bytes" in answer["error"]
    # the server still answers afterwards
    assert post(fake_server, {"query_type": "count", "query": "Paris"})[0] == 200


def test_health_and_unknown_paths(fake_server: str) -> None:
    with urllib.request.urlopen(fake_server + "health", timeout=10) as r:
        info = json.loads(r.read())
    assert info["status"] == "ok" and info["indexes"] == ["index0"]
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(fake_server + "nothing", timeout=10)
    assert exc.value.code == 404 and "error" in json.loads(exc.value.read())


def test_count_and_window_on_a_backend_without_tokenizer(fake_server: str) -> None:
    code, ans = post(fake_server, {"query_type": "count", "query": "Paris AND France", "max_diff_tokens": 3})
    assert code == 200 and (ans["count"], ans["approx"], ans["mode"]) == (1, False, "window")
    assert isinstance(ans["latency"], float)
    code, ans = post(fake_server, {"query_type": "count", "query": "Paris AND France", "max_diff_tokens": 2})
    assert ans["count"] == 0
    code, ans = post(fake_server, {"query_type": "search_docs", "query": "Paris"})
    assert code == 400 and "local index" in ans["error"]


# ----------------------------------------------------------------- real index


@pytest.fixture(scope="module")
def served(small_index, small_stats) -> Iterator[tuple[str, Any]]:
    server, url = serve_in_thread([small_index])
    yield url, small_stats
    server.close()


@pytest.fixture(scope="module")
def terms(small_stats) -> list[str]:
    """Capitalised words and bigrams taken from the index's own documents, plus absent terms."""
    words: list[str] = []
    shards = small_stats.manifest.shards
    for s in shards:
        for d in range(min(s.documents, 8)):
            ids, _ = small_stats.get_doc(s.index, d)
            text = small_stats.decode(ids)
            words += re.findall(r"\b[A-Z][a-z]{2,}(?: [A-Z][a-z]{2,})?\b", text)
    seen: list[str] = []
    for w in words:
        if w not in seen:
            seen.append(w)
    assert len(seen) >= 4, "the small index should hold some capitalised words"
    return seen[:10] + ABSENT


@pytest.mark.slow
def test_remote_counts_equal_local_counts(served, terms) -> None:
    url, local = served
    remote = RemoteStats(url, max_workers=2)
    assert remote.count_many(terms) == [local.count(t) for t in terms]
    assert any(local.count(t).value > 0 for t in terms)
    pairs = [(a, b) for i, a in enumerate(terms[:6]) for b in terms[i + 1 : 7]] + [(terms[0], ABSENT[0])]
    for window in (1, 5, 50, 1000):
        got = remote.cooccur_many(pairs, window=window)
        want = [local.cooccur(a, b, window=window) for a, b in pairs]
        assert got == want, f"window {window}"
    got = remote.cooccur_many(pairs, mode="doc")
    assert got == [local.cooccur(a, b, mode="doc") for a, b in pairs]
    assert any(c.value > 0 for c in got) and any(c.value == 0 for c in got)
    assert remote.errors == []


@pytest.mark.slow
def test_api_answers_over_a_real_index(served, terms) -> None:
    url, local = served
    term = next(t for t in terms if local.count(t).value > 0)
    code, ans = post(url, {"query_type": "count", "query": term})
    assert code == 200 and ans["count"] == local.count(term).value
    assert ans["token_ids"] == local.variants(term)[0] and len(ans["tokens"]) == len(ans["token_ids"])
    # query_ids: one exact token sequence
    ids = local.variants(term)[0]
    code, ans = post(url, {"query_type": "count", "query_ids": ids})
    assert ans["count"] == local.count_ids(ids).value
    # find: the sum over surface forms, one entry per form
    code, ans = post(url, {"query_type": "find", "query": term})
    assert code == 200 and ans["cnt"] == local.count(term).value
    assert [v["token_ids"] for v in ans["variants"]] == local.variants(term)
    # search_docs: documents that contain the term
    code, ans = post(url, {"query_type": "search_docs", "query": term, "maxnum": 3})
    assert code == 200 and 1 <= len(ans["documents"]) <= 3
    for doc in ans["documents"]:
        assert term in doc["text"] and doc["disp_len"] == len(doc["token_ids"])
    # search_docs with two clauses: documents holding both terms within the window
    a, b = next(
        (x, y)
        for i, x in enumerate(terms)
        for y in terms[i + 1 :]
        if x not in y and y not in x and local.cooccur(x, y, window=50).value > 0
    )
    code, ans = post(
        url, {"query_type": "search_docs", "query": f"{a} AND {b}", "max_diff_tokens": 50, "maxnum": 5}
    )
    assert code == 200 and ans["documents"]
    assert ans["cnt"] <= local.cooccur(a, b, mode="doc").value
    for doc in ans["documents"]:
        assert a in doc["text"] and b in doc["text"]


@pytest.mark.slow
def test_twenty_concurrent_requests_are_answered_correctly(served, terms) -> None:
    url, local = served
    jobs: list[tuple[dict[str, Any], int]] = []
    for i in range(20):
        a, b = terms[i % 5], terms[(i + 1) % 5]
        if i % 2:
            jobs.append(({"query_type": "count", "query": a}, local.count(a).value))
        else:
            w = 10 * (i + 1)
            q = {"query_type": "count", "query": f"{a} AND {b}", "max_diff_tokens": w}
            jobs.append((q, local.cooccur(a, b, window=w).value))
    results: list[Any] = [None] * len(jobs)
    barrier = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        barrier.wait()
        results[i] = post(url, jobs[i][0])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert [r[0] for r in results] == [200] * len(jobs)
    assert [r[1]["count"] for r in results] == [want for _, want in jobs]


@pytest.mark.slow
def test_several_indexes_are_chosen_by_name(small_index, tmp_path) -> None:
    alias = tmp_path / "second"
    os.symlink(small_index, alias)
    server, url = serve_in_thread([small_index, alias])
    try:
        names = list(server.handler.indexes)
        assert names[1] == "second" and len(names) == 2
        first = RemoteStats(url)
        second = RemoteStats(url, index="second")
        term = "the"
        assert first.count(term) == second.count(term)
        code, ans = post(url, {"query_type": "count", "index": "third", "query": term})
        assert code == 400 and "second" in ans["error"]
    finally:
        server.close()


def test_cli_serve_missing_dir_is_one_line(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "quco", "serve", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cli_serve_starts_and_answers(small_index) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "quco", "serve", str(small_index), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert m, line
        code, ans = post(m.group(1), {"query_type": "count", "query": "the"})
        assert code == 200 and ans["count"] >= 0 and ans["approx"] is False
    finally:
        proc.terminate()
        proc.wait(30)


def test_remote_count_type(fake_server: str) -> None:
    assert RemoteStats(fake_server).count("Paris") == Count(1)


@pytest.mark.slow
def test_name_equals_dir_and_aliases(small_index, tmp_path) -> None:
    from quco.corpus.server import split_named

    assert split_named(f"v4_x={small_index}") == ("v4_x", small_index)
    odd = tmp_path / "with=sign"
    odd.mkdir()
    assert split_named(str(odd)) == (None, odd)  # an existing path holding '=' stays a path
    server, url = serve_in_thread([f"v4_olmo-2-0325-32b-instruct_llama={small_index}", str(small_index)], aliases=["v4_rpj_llama_s4"])
    try:
        h = server.handler
        assert list(h.indexes) == ["v4_olmo-2-0325-32b-instruct_llama", "index"]
        assert h.health()["aliases"] == {"v4_rpj_llama_s4": "v4_olmo-2-0325-32b-instruct_llama"}
        answers = [
            post(url, {"query_type": "count", "index": name, "query": "Paris"})
            for name in ("v4_olmo-2-0325-32b-instruct_llama", "v4_rpj_llama_s4", "index", None)
        ]
        assert [a[0] for a in answers] == [200] * 4 and len({a[1]["count"] for a in answers}) == 1
        code, ans = post(url, {"query_type": "count", "index": "v4_other", "query": "Paris"})
        assert code == 400 and "v4_rpj_llama_s4" in ans["error"]  # the error lists names and aliases
    finally:
        server.close()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["bad/name=DIR"], "bad index name"),
        (["v4_x="], "directory after"),
        (["DIR", "--alias", "a b"], "bad index name"),
        (["a=DIR", "a=DIR"], "two indexes are named 'a'"),
    ],
)
def test_cli_serve_bad_names_are_one_line(small_index, args, needle) -> None:
    argv = [a.replace("DIR", str(small_index)) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "quco", "serve", *argv, "--port", "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
