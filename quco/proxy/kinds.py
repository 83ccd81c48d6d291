"""What differs between ``/v1/chat/completions`` and ``/v1/completions``.

Each kind knows where the question is in a request, how to add evidence to
it, how to ask the upstream for logprobs, where a choice keeps its text and
logprobs (whole and streamed), and how to write a streamed chunk of its own.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any

from quco.errors import BadInputError
from quco.proxy.schema import ChatCompletionRequest, CompletionRequest

EVIDENCE_HEADER = "Evidence:"


def _with_evidence(text: str, block: str) -> str:
    return f"{EVIDENCE_HEADER}\n{block}\n\nQuestion: {text}" if block else text


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


@dataclass
class ChoiceBuffer:
    """A streamed choice put back together: its text and its logprob entries."""

    parts: list[str] = field(default_factory=list)
    chat_entries: list[Any] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)
    token_logprobs: list[Any] = field(default_factory=list)
    top_logprobs: list[Any] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def logprobs(self) -> Any:
        if self.chat_entries:
            return {"content": self.chat_entries}
        if self.tokens:
            return {"tokens": self.tokens, "token_logprobs": self.token_logprobs, "top_logprobs": self.top_logprobs}
        return None


class ChatKind:
    """``/v1/chat/completions``: the question is the last user message."""

    path = "/v1/chat/completions"
    chunk_object = "chat.completion.chunk"
    request_model = ChatCompletionRequest

    def __init__(self, top_logprobs: int) -> None:
        self.top_logprobs = top_logprobs

    def question(self, req: Any) -> str:
        for m in reversed(req.messages):
            if m.role == "user":
                text = _message_text(m.content).strip()
                if text:
                    return text
        raise BadInputError("the request has no user message with text to guard")

    def upstream_body(self, req: Any, block: str, *, stream: bool, logprobs: bool) -> dict[str, Any]:
        body = req.model_dump(exclude_unset=True, exclude={"quco"})
        body["stream"] = stream
        if logprobs and not body.get("logprobs"):
            body["logprobs"] = True
            if body.get("top_logprobs") is None and self.top_logprobs:
                body["top_logprobs"] = self.top_logprobs
        if block:
            msgs = copy.deepcopy(body["messages"])
            for m in reversed(msgs):
                if m.get("role") == "user" and _message_text(m.get("content")).strip():
                    c = m.get("content")
                    if isinstance(c, list):
                        m["content"] = [{"type": "text", "text": f"{EVIDENCE_HEADER}\n{block}\n\nQuestion:"}, *c]
                    else:
                        m["content"] = _with_evidence(str(c), block)
                    break
            body["messages"] = msgs
        return body

    def choice_text(self, choice: dict[str, Any]) -> str:
        msg = choice.get("message") or {}
        return _message_text(msg.get("content"))

    def set_choice_text(self, choice: dict[str, Any], text: str) -> None:
        choice.setdefault("message", {"role": "assistant"})["content"] = text

    def add_chunk(self, buf: ChoiceBuffer, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str):
            buf.parts.append(delta["content"])
        lp = choice.get("logprobs")
        if isinstance(lp, dict) and isinstance(lp.get("content"), list):
            buf.chat_entries.extend(lp["content"])
        if choice.get("finish_reason"):
            buf.finish_reason = choice["finish_reason"]

    def text_chunks(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        """A whole (rewritten) answer as stream chunks: the text, then the finish."""
        ch = (data.get("choices") or [{}])[0]
        base = _chunk_base(data, self.chunk_object)
        text = self.choice_text(ch)
        first = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": None}]}
        last = {**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": ch.get("finish_reason") or "stop"}]}
        return [first, last]


class CompletionKind:
    """``/v1/completions``: the question is the prompt (one per request)."""

    path = "/v1/completions"
    chunk_object = "text_completion"
    request_model = CompletionRequest

    def __init__(self, top_logprobs: int) -> None:
        self.top_logprobs = top_logprobs

    def question(self, req: Any) -> str:
        prompt = req.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1:
                raise BadInputError("quco proxy guards one prompt per request; send a list of several one by one")
            prompt = prompt[0]
        if not prompt.strip():
            raise BadInputError("the prompt is empty")
        return prompt.strip()

    def upstream_body(self, req: Any, block: str, *, stream: bool, logprobs: bool) -> dict[str, Any]:
        body = req.model_dump(exclude_unset=True, exclude={"quco"})
        body["stream"] = stream
        if logprobs and body.get("logprobs") is None:
            body["logprobs"] = max(1, self.top_logprobs)
        if block:
            p = body["prompt"]
            body["prompt"] = _with_evidence(p[0] if isinstance(p, list) else p, block)
        return body

    def choice_text(self, choice: dict[str, Any]) -> str:
        return str(choice.get("text") or "")

    def set_choice_text(self, choice: dict[str, Any], text: str) -> None:
        choice["text"] = text

    def add_chunk(self, buf: ChoiceBuffer, choice: dict[str, Any]) -> None:
        if isinstance(choice.get("text"), str):
            buf.parts.append(choice["text"])
        lp = choice.get("logprobs")
        if isinstance(lp, dict):
            buf.tokens.extend(lp.get("tokens") or [])
            buf.token_logprobs.extend(lp.get("token_logprobs") or [])
            buf.top_logprobs.extend(lp.get("top_logprobs") or [])
        if choice.get("finish_reason"):
            buf.finish_reason = choice["finish_reason"]

    def text_chunks(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        ch = (data.get("choices") or [{}])[0]
        base = _chunk_base(data, self.chunk_object)
        return [{**base, "choices": [{"index": 0, "text": self.choice_text(ch), "logprobs": None,
                                      "finish_reason": ch.get("finish_reason") or "stop"}]}]  # fmt: skip


def _chunk_base(data: dict[str, Any], obj: str) -> dict[str, Any]:
    return {
        "id": data.get("id", "quco"),
        "object": obj,
        "created": data.get("created", int(time.time())),
        "model": data.get("model", ""),
    }


def report_chunk(last: dict[str, Any] | None, obj: str, report: dict[str, Any]) -> dict[str, Any]:
    """The stream's last chunk: no choices, the report under ``quco``."""
    return {**_chunk_base(last or {}, obj), "choices": [], "quco": report}
