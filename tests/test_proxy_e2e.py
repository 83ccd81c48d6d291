"""End to end: the official ``openai`` client -> ``quco proxy`` (the CLI, a real process) -> a real
OpenAI-compatible model server (llama-cpp-python over the packaged SmolLM2 GGUF, with an API key).
The guard uses the real small index, spaCy and a real BM25 collection. No mock anywhere."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")

from tests.fixtures.upstream import Upstream, free_port, stop, wait_http  # noqa: E402

pytestmark = pytest.mark.slow

QUESTION = "In which city was Marie Curie born?"


@dataclass(frozen=True)
class Proxy:
    url: str
    log: Path


@pytest.fixture(scope="module")
def proxy(llama_upstream: Upstream, small_index: Path, bm25_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxy]:
    """``quco -v proxy --policy combined`` (both sides: it asks for logprobs) in front of the llama.cpp
    server, over the small index and BM25 collection."""
    port = free_port()
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    cmd = [
        sys.executable, "-m", "quco", "-v", "proxy", "--upstream", llama_upstream.base_url, "--port", str(port),
        "--index", str(small_index), "--retriever", str(bm25_dir), "-k", "2", "--policy", "combined",
    ]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/quco/health", proc)
        yield Proxy(f"http://127.0.0.1:{port}/v1", log)
    finally:
        stop(proc)


def client(base_url: str, key: str) -> Any:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=120)


def ask(c: Any, **kw: Any) -> Any:
    return c.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": QUESTION}], max_tokens=24, temperature=0, **kw
    )


@pytest.fixture(scope="module")
def answer(proxy: Proxy, llama_upstream: Upstream) -> Any:
    return ask(client(proxy.url, llama_upstream.api_key))


def test_answer_with_the_report(answer: Any, llama_upstream: Upstream) -> None:
    text = answer.choices[0].message.content
    assert isinstance(text, str) and text.strip()
    report = answer.model_extra["quco"]
    assert report["policy"] == "combined" and report["on_risk"] == "flag"
    # Marie Curie occurs twice in the small corpus: stage 1 fired and retrieved her passages
    s1 = report["stage1"]
    assert s1["entities"][0]["text"] == "Marie Curie" and s1["retrieved"] and report["retrievals"] >= 1
    assert any("Curie" in d["text"] for d in s1["documents"])
    assert report["coverage"] == {"known": 1, "total": 1, "share": 1.0, "floor": 0.5, "verdict": "covered"}
    # the upstream's own token logprobs are the confidence side: one per generated token
    conf = report["confidence"]
    assert conf["source"] == "model" and conf["n_tokens"] == answer.usage.completion_tokens
    assert conf["max_entropy"] is not None and conf["max_entropy"] >= 0
    assert report["sentences"] and all(s["confidence"] and s["confidence"]["tokens"] for s in report["sentences"])
    assert all(s["rule"] == "combined" for s in report["sentences"])
    # the evidence reached the upstream: the guarded prompt is longer than the bare question's
    direct = ask(client(llama_upstream.base_url, llama_upstream.api_key))
    assert answer.usage.prompt_tokens > direct.usage.prompt_tokens + 20


def test_streaming_passes_chunks_then_the_report(proxy: Proxy, llama_upstream: Upstream, answer: Any) -> None:
    chunks = list(ask(client(proxy.url, llama_upstream.api_key), stream=True))
    last = chunks[-1]
    assert last.choices == [] and "quco" in last.model_extra
    assert all(c.choices and "quco" not in (c.model_extra or {}) for c in chunks[:-1])
    text = "".join(c.choices[0].delta.content or "" for c in chunks[:-1])
    assert text == answer.choices[0].message.content  # greedy decoding: the same answer as unstreamed
    report = last.model_extra["quco"]
    assert report["confidence"]["n_tokens"] == answer.usage.completion_tokens
    assert [s["text"] for s in report["sentences"]] == [s["text"] for s in answer.model_extra["quco"]["sentences"]]


def test_text_completions_whole_and_streamed(proxy: Proxy, llama_upstream: Upstream) -> None:
    c = client(proxy.url, llama_upstream.api_key)
    prompt = "Question: In which city was Marie Curie born?\nAnswer:"
    r = c.completions.create(model="smollm2", prompt=prompt, max_tokens=12, temperature=0)
    report = r.model_extra["quco"]
    assert report["stage1"]["retrieved"] and report["confidence"]["source"] == "model"
    assert report["confidence"]["n_tokens"] == r.usage.completion_tokens
    chunks = list(c.completions.create(model="smollm2", prompt=prompt, max_tokens=12, temperature=0, stream=True))
    assert "".join(ch.choices[0].text for ch in chunks[:-1]) == r.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].model_extra["quco"]["confidence"]["n_tokens"] == r.usage.completion_tokens


def test_rewrite_per_request_streams_the_buffered_answer(proxy: Proxy, llama_upstream: Upstream) -> None:
    chunks = list(ask(client(proxy.url, llama_upstream.api_key), stream=True, extra_body={"quco": {"on_risk": "rewrite"}}))
    report = chunks[-1].model_extra["quco"]
    assert report["on_risk"] == "rewrite" and chunks[-1].choices == []
    body = [c for c in chunks[:-1] if c.choices]
    assert body[0].choices[0].delta.content and body[-1].choices[0].finish_reason
    assert report["rewritten"] == ("draft" in report)


def test_models_pass_through(proxy: Proxy, llama_upstream: Upstream) -> None:
    models = client(proxy.url, llama_upstream.api_key).models.list()
    assert [m.id for m in models.data] == [llama_upstream.model]


def test_authorization_is_forwarded_and_never_logged(proxy: Proxy, llama_upstream: Upstream) -> None:
    wrong = "sk-wrong-" + llama_upstream.api_key[-8:] + "x"
    with pytest.raises(openai.AuthenticationError) as err:  # the upstream's 401, passed through
        ask(client(proxy.url, wrong))
    assert wrong not in str(err.value)
    # the right key worked in the other tests, so it reached the upstream; no line of the
    # proxy's verbose log (uvicorn access log, HTTP client, quco) holds either key
    log = proxy.log.read_text()
    assert "POST /v1/chat/completions" in log and "HTTP Request: POST" in log
    assert llama_upstream.api_key not in log and wrong not in log
