"""Property tests of ``quco serve``'s request handling, over a real small index.

Invariants, for any request:

1. the query handler answers or raises RequestError with a 4xx status, never
   anything else (arbitrary JSON values; payloads with the API's keys and any values);
2. through the real HTTP server (arbitrary bodies; arbitrary request lines,
   headers and bytes on a raw socket): never a 5xx, never a hang (the server
   answers or closes within seconds), every answer a JSON object with ``error``
   when it is 4xx, no internal-error log, and the server keeps answering.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quco.corpus.server import QueryHandler, RequestError, ServedIndex, serve_in_thread

pytestmark = pytest.mark.slow

FAST = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
HTTP = settings(max_examples=120, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)
terms = st.sampled_from(["Paris", "France", "the", "capital", "Zyxwvut", "Marie Curie", "", " ", "AND", "OR"])
text_queries = st.lists(st.lists(terms, min_size=1, max_size=5), min_size=1, max_size=5).map(
    lambda cl: " AND ".join(" OR ".join(c) for c in cl)
)
ints = st.integers(-5, 60000) | st.sampled_from([0, 1, 1000, 1001, 500000, 500001, 2**63, -(2**63)])
id_queries = st.one_of(
    st.lists(ints, max_size=8),
    st.lists(st.lists(st.lists(ints, max_size=4), max_size=5), max_size=5),
    json_values,
)
api_payloads = st.fixed_dictionaries(
    {"query_type": st.sampled_from(["count", "find", "search_docs", "ntd", "", None, 3])},
    optional={
        "index": st.sampled_from(["small", "alias", "nope", "", None, 7, ["small"]]),
        "query": text_queries | st.text(max_size=60) | json_values,
        "query_ids": id_queries,
        "max_diff_tokens": ints | json_values,
        "max_clause_freq": ints | json_values,
        "mode": st.sampled_from(["window", "doc", "near", None, 1]),
        "maxnum": ints | json_values,
        "max_disp_len": ints | json_values,
    },
)


@pytest.fixture(scope="module")
def handler(small_stats) -> QueryHandler:
    return QueryHandler([ServedIndex("small", small_stats, owned=False)], aliases=["alias"])


def _check_answer(out: Any) -> None:
    assert isinstance(out, dict) and "latency" in out
    json.dumps(out).encode("ascii")
    if "count" in out:
        assert isinstance(out["count"], int) and out["count"] >= 0 and isinstance(out["approx"], bool)


@FAST
@given(payload=json_values | api_payloads)
@example(payload={"query_type": "count", "query": "Paris AND France AND capital AND the AND Zyxwvut"})
@example(payload={"query_type": "count", "query_ids": [[[2**70]], [[1]]]})
@example(payload={"query_type": "find", "query": "Paris OR France"})
@example(payload={"query_type": "count", "query": "\ud800 AND Paris"})
@example(payload={"query_type": "search_docs", "query": "Paris AND France AND the"})
def test_the_handler_answers_or_refuses_with_a_4xx(handler, payload) -> None:
    try:
        out = handler.handle(payload)
    except RequestError as exc:
        assert 400 <= exc.status < 500 and str(exc) and "\n" not in str(exc)
        return
    _check_answer(out)


# ------------------------------------------------------------------ over HTTP


@pytest.fixture(scope="module")
def server(small_stats) -> Iterator[tuple[str, int]]:
    srv, url = serve_in_thread([small_stats], aliases=["alias"])
    yield "127.0.0.1", srv.server_address[1]
    srv.close()


@pytest.fixture()
def no_internal_errors(caplog) -> Iterator[None]:
    with caplog.at_level(logging.ERROR, logger="quco.corpus.server"):
        yield
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def _alive(host: str, port: int) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("POST", "/", body=json.dumps({"query_type": "count", "query": "Paris"}))
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["count"] > 0
    finally:
        conn.close()


@HTTP
@given(body=st.binary(max_size=2048) | (json_values | api_payloads).map(lambda v: json.dumps(v).encode()))
@example(body=b"[" * 60_000)  # JSON nested too deeply: under the size limit, past the parser's recursion
@example(body=b'{"query_type": "count", "query": "\\ud800"}')
@example(body=b"\xef\xbb\xbf{}")  # a UTF-8 byte-order mark
def test_any_body_over_http_gets_a_json_answer_below_500(server, no_internal_errors, body) -> None:
    host, port = server
    conn = http.client.HTTPConnection(host, port, timeout=20)
    t0 = time.monotonic()
    try:
        conn.request("POST", "/", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
    finally:
        conn.close()
    assert time.monotonic() - t0 < 20
    assert resp.status < 500 and isinstance(answer, dict)
    if resp.status >= 400:
        assert set(answer) == {"error"} and answer["error"]
    else:
        _check_answer(answer)


methods = st.sampled_from([b"POST", b"GET", b"PUT", b"DELETE", b"HEAD", b"FOO", b"", b"P\x00ST"]) | st.binary(max_size=8)
paths = st.sampled_from([b"/", b"/health", b"/x", b"", b"*", b"/" + b"a" * 70000]) | st.binary(max_size=20)
versions = st.sampled_from([b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/0.9", b"", b"HTTP/1.1 extra"]) | st.binary(max_size=10)
header = st.one_of(
    st.tuples(st.just(b"Content-Length"), st.sampled_from([b"0", b"5", b"-1", b"abc", b"99999999999999999999", b"70000", b""])),
    st.tuples(st.just(b"Transfer-Encoding"), st.just(b"chunked")),
    st.tuples(st.just(b"Expect"), st.just(b"100-continue")),
    st.tuples(st.binary(max_size=12), st.binary(max_size=30)),
)
raw_requests = st.one_of(
    st.binary(max_size=600),
    st.builds(
        lambda m, p, v, hs, body: m + b" " + p + b" " + v + b"\r\n" + b"".join(k + b": " + val + b"\r\n" for k, val in hs) + b"\r\n" + body,
        methods, paths, versions, st.lists(header, max_size=5), st.binary(max_size=200),
    ),
)


def _exchange(host: str, port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, and read to the end (a reset after a complete answer counts as an end)."""
    with socket.create_connection((host, port), timeout=15) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before taking everything
            pass
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except ConnectionResetError:
            pass
        return out


@HTTP
@given(data=raw_requests)
@example(data=b"POST / HTTP/1.1\r\nContent-Length: 30\r\n\r\n{\"query_type\": \"count\"")  # body shorter than said
@example(data=b"GET /health HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n")  # too many headers
@example(data=b"POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n" + b"x" * 1000)
@example(data=b"GET /\r\n")  # an HTTP/0.9 request
def test_any_raw_request_gets_an_answer_below_500_or_a_clean_close(server, no_internal_errors, data) -> None:
    host, port = server
    t0 = time.monotonic()
    out = _exchange(host, port, data)
    assert time.monotonic() - t0 < 15, "the server neither answered nor closed"
    if out.startswith(b"HTTP/"):
        head, _, body = out.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        assert 100 <= status < 500, head
        if status >= 400 and body:
            assert "error" in json.loads(body)
    elif out:  # an HTTP/0.9 answer: the body alone
        assert isinstance(json.loads(out), dict)
    _alive(host, port)
