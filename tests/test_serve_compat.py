"""A real ``quco serve NAME=DIR --alias NAME`` process answers QuCo-RAG's own requests unchanged,
counts CNF queries like LocalStats, and refuses a 20 MB body with a 413 that real clients read."""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from quco.corpus.server import MAX_BODY_BYTES

pytestmark = pytest.mark.slow

#: the index name QuCo-RAG's configs ask the public API for (infini_gram_index_name)
QUCO_RAG_INDEX = "v4_olmo-2-0325-32b-instruct_llama"
TWENTY_MB = 20 * 1024 * 1024


class ServeProcess:
    """A ``quco serve`` child process; its stderr goes to a file, read for its URL and for tracebacks."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self._f = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "quco", "serve", *args, "--port", "0"], stderr=self._f, text=True
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            m = re.search(r"(http://127\.0\.0\.1:(\d+)/)", log.read_text())
            if m:
                self.url, self.port = m.group(1), int(m.group(2))
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"quco serve did not start: {log.read_text()}")

    def stderr(self) -> str:
        return self.log.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._f.close()


@pytest.fixture(scope="module")
def served(small_index, tmp_path_factory) -> Iterator[ServeProcess]:
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    server = ServeProcess([f"{QUCO_RAG_INDEX}={small_index}", "--alias", "v4_rpj_llama_s4"], log)
    yield server
    server.stop()
    assert "Traceback" not in server.stderr(), server.stderr()


def post(server: ServeProcess, payload: Any) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", "/", body=json.dumps(payload), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def quco_rag_count(url: str, query: str, index: str) -> tuple[int | None, float | None]:
    """What QuCo-RAG's get_infini_gram_count does (requests, raise_for_status, 'error', 'count', 'latency')."""
    requests = pytest.importorskip("requests")
    payload: dict[str, Any] = {"index": index, "query_type": "count", "query": query}
    if "AND" in query or "OR" in query:
        payload["max_diff_tokens"] = 1000
        payload["max_clause_freq"] = 500000
    response = requests.post(url, json=payload, timeout=60)
    response.raise_for_status()
    result = response.json()
    if "error" in result:
        return None, None
    return result["count"], result["latency"] / 1000.0


def test_health_names_the_index_and_its_alias(served) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        conn.request("GET", "/health")
        info = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert info["indexes"] == [QUCO_RAG_INDEX] and info["default"] == QUCO_RAG_INDEX
    assert info["aliases"] == {"v4_rpj_llama_s4": QUCO_RAG_INDEX}


def test_quco_rag_exact_payload_gets_the_right_count(served, small_stats) -> None:
    exact = {
        "index": QUCO_RAG_INDEX,
        "query_type": "count",
        "query": "A AND B",
        "max_diff_tokens": 1000,
        "max_clause_freq": 500000,
    }
    status, ans = post(served, exact)
    want = small_stats.cooccur("A", "B", window=1000)
    assert status == 200 and (ans["count"], ans["approx"]) == (want.value, False)
    assert (ans["max_diff_tokens"], ans["max_clause_freq"], ans["mode"]) == (1000, 500000, "window")
    # the same payload with entities that do co-occur, as QuCo-RAG's stage 2 sends them
    status, ans = post(served, {**exact, "query": "Paris AND France"})
    want = small_stats.cooccur("Paris", "France", window=1000)
    assert status == 200 and ans["count"] == want.value > 0 and ans["approx"] is False
    status, ans = post(served, {**exact, "query": "Tokyo AND Zanzibar"})
    assert status == 200 and ans["count"] == 0


def test_quco_rag_client_code_works_against_quco_serve(served, small_stats) -> None:
    for index in (QUCO_RAG_INDEX, "v4_rpj_llama_s4"):  # the name, and the alias (QuCo-RAG's default index)
        count, latency = quco_rag_count(served.url, "Paris", index)  # stage 1: an entity, no AND
        assert count == small_stats.count("Paris").value > 0 and latency is not None and latency >= 0
        count, _ = quco_rag_count(served.url, "Berlin AND Germany", index)  # stage 2: head AND tail
        assert count == small_stats.cooccur("Berlin", "Germany", window=1000).value > 0
    requests = pytest.importorskip("requests")
    with pytest.raises(requests.HTTPError):  # an unknown index is a 400, which QuCo-RAG's code raises on
        quco_rag_count(served.url, "Paris", "v4_unknown_index")


def test_cnf_queries_over_http_equal_local_counts(served, small_stats) -> None:
    queries = [
        "Paris AND France AND capital",
        "Paris OR Berlin AND France OR Germany",
        "Paris OR Berlin OR Rome AND capital AND France OR Germany OR Italy",
        "Berlin OR Zyxwvut",
        "Tokyo AND Kyoto AND city",
    ]
    for q in queries:
        clauses = [[v for t in c.split(" OR ") for v in small_stats.variants(t)] for c in q.split(" AND ")]
        for mdt in (5, 100, 1000):
            status, ans = post(served, {"query_type": "count", "query": q, "max_diff_tokens": mdt})
            want = small_stats.count_cnf(clauses, window=mdt)
            assert status == 200 and (ans["count"], ans["approx"]) == (want.value, want.approx), (q, mdt)
        status, ans = post(served, {"query_type": "count", "query": q, "mode": "doc"})
        assert ans["count"] == small_stats.count_cnf(clauses, window=None, mode="doc").value
    # query_ids in CNF form give the same count as the text
    ids = [[small_stats.variants("Paris")[0]], [small_stats.variants("France")[0]]]
    status, ans = post(served, {"query_type": "count", "query_ids": ids, "max_diff_tokens": 50})
    assert ans["count"] == small_stats.count_cnf(ids, window=50).value


def test_clause_frequency_beyond_max_clause_freq_is_marked_approximate(served, small_stats) -> None:
    n_the = small_stats.count("the").value
    q = {"query_type": "count", "query": "the AND capital", "max_diff_tokens": 50}
    status, exact = post(served, q)
    assert status == 200 and exact["approx"] is False
    status, approx = post(served, {**q, "max_clause_freq": max(1, n_the // 2)})
    assert status == 200 and approx["approx"] is True and approx["max_clause_freq"] == max(1, n_the // 2)
    status, one = post(served, {"query_type": "count", "query": "the OR capital", "max_clause_freq": 1})
    assert one["approx"] is False  # one clause: always exact, as the API counts it
    assert one["count"] == n_the + small_stats.count("capital").value


# --------------------------------------------------------------- 20 MB bodies


def _big_body() -> bytes:
    return json.dumps({"query_type": "count", "query": "Paris", "pad": "x" * TWENTY_MB}).encode()


def test_twenty_megabytes_get_a_413_with_http_client(served) -> None:
    body = _big_body()
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=60)
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})  # sends it all
        resp = conn.getresponse()
        answer = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 413 and str(MAX_BODY_BYTES) in answer["error"]
    assert resp.getheader("Connection") == "close"
    assert post(served, {"query_type": "count", "query": "Paris"})[0] == 200  # still serving


def test_twenty_megabytes_get_a_413_with_requests(served) -> None:
    requests = pytest.importorskip("requests")
    resp = requests.post(served.url, data=_big_body(), headers={"Content-Type": "application/json"}, timeout=60)
    assert resp.status_code == 413 and "bytes" in resp.json()["error"]


def test_a_raw_client_reads_the_413_and_a_clean_close(served) -> None:
    """Headers, then the whole 20 MB in pieces, then read: the answer is there and the close is an EOF."""
    body = _big_body()
    with socket.create_connection(("127.0.0.1", served.port), timeout=60) as s:
        s.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        for i in range(0, len(body), 1 << 20):
            s.sendall(body[i : i + (1 << 20)])
        data = b""
        while chunk := s.recv(65536):  # ends with an EOF, not a reset
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"413" and head.startswith(b"HTTP/1.") and "larger than" in json.loads(payload)["error"]
