"""RemoteStats against a tiny scripted HTTP server: request format, retries, timeouts, failure modes."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from quco.corpus import open_stats
from quco.corpus.remote import FAIL_OPEN_COUNT, DegradedCount, RemoteStats
from quco.errors import BackendUnavailableError, BadInputError, EngineError
from quco.types import Count


class Script:
    """Answers to give, in order (the last one repeats), and the payloads received."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any, float]] = [(200, {"count": 1, "approx": False}, 0.0)]
        self.received: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def set(self, *answers: tuple[int, Any] | tuple[int, Any, float]) -> None:
        self.answers = [(a[0], a[1], a[2] if len(a) > 2 else 0.0) for a in answers]  # type: ignore[misc]
        self.received.clear()

    def next(self, payload: dict[str, Any]) -> tuple[int, Any, float]:
        with self.lock:
            self.received.append(payload)
            return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


@pytest.fixture(scope="module")
def fake_api() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers["Content-Length"])
            payload = json.loads(self.rfile.read(n))
            status, body, delay = script.next(payload)
            if delay:
                time.sleep(delay)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", script
    server.shutdown()
    server.server_close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def client(url: str, **kw: Any) -> tuple[RemoteStats, list[float]]:
    kw.setdefault("backoff", 0.01)
    rs = RemoteStats(url, **kw)
    sleeps: list[float] = []

    def fake_sleep(s: float) -> None:
        sleeps.append(s)
        time.sleep(s)

    rs._sleep = fake_sleep
    return rs, sleeps


def test_request_format_follows_the_public_api(fake_api) -> None:
    url, script = fake_api
    rs, _ = client(url, index="v4_demo")
    script.set((200, {"count": 42, "approx": False, "latency": 0.5, "token_ids": [1], "tokens": ["a"]}))
    assert rs.count("Paris") == Count(42, False)
    assert script.received[-1] == {"query_type": "count", "index": "v4_demo", "query": "Paris"}
    script.set((200, {"count": 7, "approx": True}))
    assert rs.cooccur("Paris", "France", window=500) == Count(7, True)
    sent = script.received[-1]
    assert sent["query"] == "Paris AND France"
    assert (sent["max_diff_tokens"], sent["mode"], sent["index"]) == (500, "window", "v4_demo")
    assert sent["max_clause_freq"] == 100_000  # LocalStats' own cap, so quco serve answers alike


def test_doc_mode_on_a_server_without_it_is_marked_approximate(fake_api) -> None:
    url, script = fake_api
    rs, _ = client(url)
    script.set((200, {"count": 3, "approx": False}))  # public API: no "mode" echo
    c = rs.cooccur("Paris", "France", mode="doc")
    assert c == Count(3, True)
    assert script.received[-1]["max_diff_tokens"] == rs.doc_window
    script.set((200, {"count": 3, "approx": False, "mode": "doc"}))  # quco serve echoes the mode
    assert rs.cooccur("Paris", "France", mode="doc") == Count(3, False)


def test_variants_are_sent_as_query_ids(fake_api) -> None:
    url, script = fake_api
    forms = {"Paris": [[12, 3], [99]], "France": [[7]]}
    rs, _ = client(url, variants=lambda t: forms[t])
    script.set((200, {"count": 5, "approx": False}))
    rs.count("Paris")
    assert script.received[-1]["query_ids"] == [[[12, 3], [99]]]
    assert "query" not in script.received[-1]
    rs.cooccur("Paris", "France", window=10)
    assert script.received[-1]["query_ids"] == [[[12, 3], [99]], [[7]]]


def test_retries_with_backoff_on_5xx_then_success(fake_api) -> None:
    url, script = fake_api
    rs, sleeps = client(url, retries=3, backoff=0.01)
    script.set((500, {"error": "busy"}), (503, {"error": "busy"}), (200, {"count": 9, "approx": False}))
    assert rs.count("Paris") == Count(9)
    assert len(script.received) == 3
    assert sleeps == [0.01, 0.02]  # exponential
    assert rs.requests == 3


def test_no_retry_on_4xx(fake_api) -> None:
    url, script = fake_api
    rs, sleeps = client(url, retries=3)
    script.set((400, {"error": "query is too long"}))
    with pytest.raises(EngineError, match="query is too long"):
        rs.count("Paris")
    assert len(script.received) == 1 and sleeps == []


def test_error_field_in_a_200_answer_raises(fake_api) -> None:
    url, script = fake_api
    rs, _ = client(url)
    script.set((200, {"error": "unknown index"}))
    with pytest.raises(EngineError, match="unknown index"):
        rs.count("Paris")
    script.set((200, {"cnt": 3}))  # no count field
    with pytest.raises(EngineError, match="count"):
        rs.count("Paris")


def test_timeout_is_retried_then_reported(fake_api) -> None:
    url, script = fake_api
    rs, sleeps = client(url, timeout=0.2, retries=1)
    script.set((200, {"count": 1, "approx": False}, 1.0))
    t0 = time.perf_counter()
    with pytest.raises(BackendUnavailableError, match="did not answer after 2 attempts"):
        rs.count("Paris")
    assert time.perf_counter() - t0 < 2.0
    assert len(script.received) == 2 and len(sleeps) == 1


@pytest.mark.parametrize("on_error", ["open", "closed", "raise"])
def test_failure_modes(fake_api, on_error: str) -> None:
    url, script = fake_api
    rs, _ = client(url, retries=1, on_error=on_error)
    script.set((503, {"error": "down"}))
    if on_error == "raise":
        with pytest.raises(BackendUnavailableError, match="HTTP 503"):
            rs.cooccur("Paris", "France")
        assert rs.errors == []
        return
    c = rs.cooccur("Paris", "France")
    expected = FAIL_OPEN_COUNT if on_error == "open" else 0
    assert isinstance(c, DegradedCount)
    assert (c.value, c.approx) == (expected, True)
    assert c.to_dict()["degraded"] is True
    assert len(rs.errors) == 1
    assert rs.errors[0].query == "Paris AND France" and "503" in rs.errors[0].error
    # a rejected query (4xx) degrades the same way, without retries
    script.set((400, {"error": "bad"}))
    assert rs.count("Paris").value == expected
    assert len(script.received) == 1 and len(rs.errors) == 2


def test_batched_forms_keep_order(fake_api) -> None:
    url, script = fake_api
    rs, _ = client(url, max_workers=4)
    script.set((200, {"count": 1, "approx": False}))
    out = rs.count_many(["a", "b", "c", "d", "e"])
    assert len(out) == 5 and all(c == Count(1) for c in out)
    assert sorted(p["query"] for p in script.received) == ["a", "b", "c", "d", "e"]


def test_bad_input_is_rejected_before_sending(fake_api) -> None:
    url, script = fake_api
    rs, _ = client(url)
    script.set((200, {"count": 1, "approx": False}))
    with pytest.raises(BadInputError):
        rs.count("  ")
    with pytest.raises(BadInputError):
        rs.cooccur("Tom AND Jerry", "cartoon")
    with pytest.raises(BadInputError):
        RemoteStats("ftp://example.org/")
    with pytest.raises(BadInputError):
        RemoteStats(url, on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="quco serve --casefold"):
        RemoteStats(url, casefold=True)
    assert script.received == []


def test_unreachable_server_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{closed_port()}/"
    rs = open_stats(url)
    assert isinstance(rs, RemoteStats)
    t0 = time.perf_counter()
    with pytest.raises(BackendUnavailableError) as exc:
        rs.count("Paris")
    assert url in str(exc.value) and "\n" not in str(exc.value)
    assert time.perf_counter() - t0 < 2.0  # a refused connection is not retried


def test_cli_count_on_unreachable_url_fails_cleanly() -> None:
    pytest.importorskip("quco.cli.stats_cmd", reason="the count command is not built yet")
    url = f"http://127.0.0.1:{closed_port()}/"
    proc = subprocess.run(
        [sys.executable, "-m", "quco", "count", "--index", url, "Paris"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and url in lines[0]


def test_cache_over_a_failing_remote_keeps_no_degraded_answer(fake_api) -> None:
    from quco.corpus.cache import CachedStats

    url, script = fake_api
    rs, _ = client(url, retries=0, on_error="closed")
    cache = CachedStats(rs)
    script.set((503, {"error": "down"}), (200, {"count": 4, "approx": False}))
    assert cache.count("Paris").value == 0  # degraded, reported
    assert len(cache.errors) == 1
    assert cache.count("Paris") == Count(4)  # asked again once the server is back
    assert cache.count("Paris") == Count(4)
    assert len(script.received) == 2
