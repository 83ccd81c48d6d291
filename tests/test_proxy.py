"""quco proxy: request validation, error mapping and header handling, with the proxy served by
uvicorn in the test process and small upstreams written here (a recording one, a slow one, a
closed port). The end-to-end run against a real served model is tests/test_proxy_e2e.py."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

pytest.importorskip("fastapi")

import httpx  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from quco.errors import BadInputError  # noqa: E402
from quco.integrations.session import AnswerGuard  # noqa: E402
from quco.proxy import build_app  # noqa: E402
from quco.proxy.upstream import Upstream, redact, secrets_of  # noqa: E402
from quco.testing import FakeCorpus, FakeExtractor, FakeRetriever  # noqa: E402
from tests.fixtures.upstream import ServerThread, free_port  # noqa: E402

DOCS = [
    "Paris is the capital of France. Paris has the Eiffel Tower.",
    "France is a country in Europe. Paris is in France.",
    "Zorblax Quint was a painter from Vienna.",
]
CORPUS = DOCS * 400  # Paris/France frequent, Zorblax Quint rare (400 < 1000)
KEY = "sk-test-DO-NOT-LOG-4f9a1c"


def make_guard(**kw: Any) -> AnswerGuard:
    kw.setdefault("entity_threshold", "1000")  # the paper's count unscaled: in this toy corpus the default rate (about 0) calls nothing rare
    return AnswerGuard(extractor=FakeExtractor(), stats=FakeCorpus(CORPUS), retriever=FakeRetriever(DOCS), **kw)


def chat_answer(text: str, logprob: float = -0.1) -> dict[str, Any]:
    toks = [t for t in text.replace(" ", "\x00 ").split("\x00") if t]
    entries = [{"token": t, "logprob": logprob, "bytes": None, "top_logprobs": [{"token": t, "logprob": logprob}]} for t in toks]
    return {
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "fake",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": {"content": entries},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": len(toks), "total_tokens": 5 + len(toks)},
    }  # fmt: skip


class Recording:
    """A small upstream that records what it receives and answers with a canned chat completion."""

    def __init__(self, answer: str = "Vienna is the capital of France.", *, delay: float = 0.0, status: int = 200) -> None:
        self.answer = answer
        self.delay = delay
        self.status = status
        self.requests: list[tuple[str, dict[str, str], Any]] = []

    async def chat(self, request: Request) -> Any:
        body = await request.json()
        self.requests.append((request.url.path, dict(request.headers), body))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.status >= 400:
            auth = request.headers.get("authorization", "")
            return JSONResponse({"error": {"message": f"bad key {auth}", "type": "auth"}}, status_code=self.status)
        if body.get("stream"):
            data = chat_answer(self.answer)
            ch = data["choices"][0]

            async def events() -> Any:
                for e in ch["logprobs"]["content"]:
                    chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "fake",
                             "choices": [{"index": 0, "delta": {"content": e["token"]}, "logprobs": {"content": [e]}}]}  # fmt: skip
                    yield f"data: {json.dumps(chunk)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse(chat_answer(self.answer))

    async def models(self, request: Request) -> Any:
        self.requests.append((request.url.path, dict(request.headers), None))
        return JSONResponse({"object": "list", "data": [{"id": "fake", "object": "model"}]}, headers={"x-upstream": "yes"})

    async def broken(self, request: Request) -> Any:
        return PlainTextResponse("internal failure", status_code=500)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/broken/chat/completions", self.broken, methods=["POST"]),
            ]
        )


CHAT = {"model": "fake", "messages": [{"role": "user", "content": "Where was Zorblax Quint born?"}], "max_tokens": 8}


def post(url: str, body: Any, **kw: Any) -> httpx.Response:
    content = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(url, content=content, headers={"Content-Type": "application/json", **kw.pop("headers", {})}, timeout=30, **kw)


@pytest.fixture(scope="module")
def recording() -> Any:
    rec = Recording()
    with ServerThread(rec.app()) as up:
        yield rec, up


@pytest.fixture(scope="module")
def proxy(recording: Any) -> Any:
    _, up = recording
    with ServerThread(build_app(f"{up.url}/v1", make_guard(), logprobs="always")) as srv:
        yield srv


def test_guarded_chat_adds_evidence_asks_logprobs_and_reports(recording: Any, proxy: Any) -> None:
    rec, _ = recording
    r = post(f"{proxy.url}/v1/chat/completions", {**CHAT, "quco": {"on_risk": "flag"}, "seed": 7})
    assert r.status_code == 200
    data = r.json()
    assert data["choices"][0]["message"]["content"] == "Vienna is the capital of France."
    sent = rec.requests[-1][2]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 5 and sent["seed"] == 7 and "quco" not in sent
    assert sent["messages"][-1]["content"].startswith("Evidence:\n[1] Zorblax Quint was a painter from Vienna.")
    q = data["quco"]
    assert q["stage1"]["retrieved"] and q["retrievals"] == 1 and q["flagged"]
    assert q["confidence"]["source"] == "model" and q["confidence"]["n_tokens"] == 6
    assert q["sentences"][0]["flagged"] and {r["where"] for r in q["reasons"]} == {"stage1", "sentence 0"}


def test_logprobs_asked_only_when_the_policy_uses_them(recording: Any) -> None:
    rec, up = recording
    with ServerThread(build_app(f"{up.url}/v1", make_guard())) as quco_srv, ServerThread(
        build_app(f"{up.url}/v1", make_guard(policy="flare"))
    ) as flare_srv:
        q = post(f"{quco_srv.url}/v1/chat/completions", CHAT).json()["quco"]
        assert "logprobs" not in rec.requests[-1][2] and q["confidence"]["source"] == "model"  # the canned answer has them
        post(f"{quco_srv.url}/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 2})
        assert rec.requests[-1][2]["logprobs"] is True and rec.requests[-1][2]["top_logprobs"] == 2  # the client's own
        q = post(f"{flare_srv.url}/v1/chat/completions", CHAT).json()["quco"]
        assert rec.requests[-1][2]["logprobs"] is True and rec.requests[-1][2]["top_logprobs"] == 5
        assert q["policy"] == "flare" and not q["flagged"]  # every canned token has probability 0.9
    with pytest.raises(BadInputError):
        build_app(f"{up.url}/v1", make_guard(), logprobs="sometimes")


def test_rewrite_per_request_asks_again_with_evidence(recording: Any, proxy: Any) -> None:
    rec, _ = recording
    n = len(rec.requests)
    body = {**CHAT, "messages": [{"role": "user", "content": "What is the capital of France?"}], "quco": {"on_risk": "rewrite"}}
    q = post(f"{proxy.url}/v1/chat/completions", body).json()["quco"]
    assert q["on_risk"] == "rewrite" and q["rewritten"] and q["draft"] == "Vienna is the capital of France."
    assert len(rec.requests) == n + 2  # the draft, then the answer asked again with the evidence
    assert rec.requests[-1][2]["messages"][-1]["content"].startswith("Evidence:\n[1]")


def test_malformed_bodies_get_400(proxy: Any) -> None:
    url = f"{proxy.url}/v1/chat/completions"
    cases = [
        b"{not json",
        b"[]",
        {"messages": []},
        {"messages": "hello"},
        {"messages": [{"content": "no role"}]},
        {**CHAT, "top_logprobs": 99},
        {**CHAT, "quco": {"on_risk": "delete"}},
        {"model": "fake", "messages": [{"role": "system", "content": "no user message"}]},
    ]
    for body in cases:
        r = post(url, body)
        assert r.status_code == 400, body
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and err["message"] and err["code"] == "400"
    r = post(f"{proxy.url}/v1/completions", {"prompt": ["one", "two"]})
    assert r.status_code == 400 and "one prompt per request" in r.json()["error"]["message"]


def test_oversized_body_gets_413(recording: Any) -> None:
    _, up = recording
    with ServerThread(build_app(f"{up.url}/v1", make_guard(), max_body_bytes=2048)) as srv:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        r = post(f"{srv.url}/v1/chat/completions", big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "413"

        def chunks() -> Any:  # no Content-Length: counted while read
            yield json.dumps(big).encode()

        r = httpx.post(f"{srv.url}/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413


def test_authorization_reaches_the_upstream_and_no_log_line(recording: Any, proxy: Any, caplog: pytest.LogCaptureFixture) -> None:
    rec, _ = recording
    caplog.set_level(logging.DEBUG)
    r = post(f"{proxy.url}/v1/chat/completions", CHAT, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and KEY not in r.text
    assert rec.requests[-1][1]["authorization"] == f"Bearer {KEY}"
    r = httpx.get(f"{proxy.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "fake" and r.headers["x-upstream"] == "yes"
    assert rec.requests[-1][0] == "/v1/models" and rec.requests[-1][1]["authorization"] == f"Bearer {KEY}"
    assert caplog.records, "the proxy and its HTTP client logged nothing at DEBUG"
    assert not [rec.getMessage() for rec in caplog.records if KEY in rec.getMessage()]


def test_upstream_4xx_passes_through_without_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rec = Recording(status=401)
    with ServerThread(rec.app()) as up, ServerThread(build_app(f"{up.url}/v1", make_guard())) as srv:
        r = post(f"{srv.url}/v1/chat/completions", CHAT, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 401 and "bad key" in r.json()["error"]["message"]
    assert KEY not in r.text and "[redacted]" in r.text
    assert not [x for x in caplog.records if KEY in x.getMessage()]


def test_upstream_down_is_502() -> None:
    port = free_port()  # nothing listens there
    with ServerThread(build_app(f"http://127.0.0.1:{port}/v1", make_guard())) as srv:
        r = post(f"{srv.url}/v1/chat/completions", CHAT, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 502
        err = r.json()["error"]
        assert err["type"] == "upstream_error" and "could not be reached" in err["message"] and KEY not in r.text
        r = post(f"{srv.url}/v1/chat/completions", {**CHAT, "stream": True})
        assert r.status_code == 502  # before any byte is streamed
        assert httpx.get(f"{srv.url}/v1/models").status_code == 502


def test_upstream_5xx_is_502(recording: Any) -> None:
    _, up = recording
    with ServerThread(build_app(f"{up.url}/v1/broken", make_guard())) as srv:
        r = post(f"{srv.url}/v1/chat/completions", CHAT)
    assert r.status_code == 502 and "answered 500" in r.json()["error"]["message"]


def test_upstream_timeout_is_504() -> None:
    rec = Recording(delay=3.0)  # a real server that answers too late
    with ServerThread(rec.app()) as up, ServerThread(build_app(f"{up.url}/v1", make_guard(), timeout=0.5)) as srv:
        t0 = time.monotonic()
        r = post(f"{srv.url}/v1/chat/completions", CHAT)
        assert r.status_code == 504 and r.json()["error"]["type"] == "upstream_timeout"
        assert time.monotonic() - t0 < 2.5
        r = post(f"{srv.url}/v1/chat/completions", {**CHAT, "stream": True})
        assert r.status_code == 504


def test_streaming_passes_chunks_then_the_report(recording: Any, proxy: Any) -> None:
    with httpx.stream("POST", f"{proxy.url}/v1/chat/completions", json={**CHAT, "stream": True}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] and "quco" not in c for c in chunks[:-1])
    assert chunks[-1]["choices"] == [] and chunks[-1]["quco"]["sentences"][0]["text"] == "Vienna is the capital of France."
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1]) == "Vienna is the capital of France."
    assert chunks[-1]["quco"]["confidence"]["n_tokens"] == len(chunks) - 1


def test_loopback_by_default_and_cli_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from quco.cli import build_parser, main

    args = build_parser().parse_args(["proxy", "--upstream", "http://127.0.0.1:1/v1"])
    assert args.host == "127.0.0.1" and args.port == 8100 and args.on_risk == "flag"
    assert main(["proxy", "--upstream", "ftp://x", "--index", "/nonexistent", "--retriever", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("quco: error:") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    with pytest.raises(BadInputError):
        Upstream("not a url")


def test_redaction_helpers() -> None:
    s = secrets_of({"authorization": f"Bearer {KEY}"})
    assert s == (f"Bearer {KEY}", KEY)
    assert redact(f"key {KEY} and Bearer {KEY}", s) == "key [redacted] and [redacted]"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["messages", "prompt", "role", "content", "model", "stream", "quco", "logprobs"]), inner, max_size=4),
            max_leaves=12,
        ).map(lambda x: json.dumps(x).encode()),
    ),
    path=st.sampled_from(["/v1/chat/completions", "/v1/completions"]),
)
def test_any_body_gets_a_json_answer_never_a_500(body: bytes, path: str) -> None:
    """Invariant: whatever the body, the proxy answers with its error shape (4xx) or the upstream's
    failure (502, the upstream here being a closed port); never a 500 or a traceback."""
    app = _closed_port_app()
    transport = httpx.ASGITransport(app=app)

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://proxy") as c:
            return await c.post(path, content=body, headers={"Content-Type": "application/json"})

    r = asyncio.run(go())
    assert r.status_code in (400, 413, 502), (r.status_code, body)
    assert set(r.json()) == {"error"} and r.json()["error"]["message"]


_APP: list[Any] = []


def _closed_port_app() -> Any:
    if not _APP:
        _APP.append(build_app(f"http://127.0.0.1:{free_port()}/v1", make_guard(), timeout=2))
    return _APP[0]
