"""Request, report and error models of ``quco proxy`` (pydantic, mirroring the OpenAI schema).

Requests keep every field they do not name (``extra="allow"``): the proxy
forwards them to the upstream as sent. The one extension is ``quco``
(``{"on_risk": "flag" | "rewrite"}``), which the proxy reads and never
forwards. Responses are the upstream's JSON with a ``quco`` field, a
:class:`QucoReport`; errors, the proxy's own and the upstream's that it maps,
are one :class:`ErrorResponse` shape.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class QucoOptions(BaseModel):
    """Per-request options (the ``quco`` field of a request body)."""

    model_config = ConfigDict(extra="forbid")

    on_risk: Literal["flag", "rewrite"] | None = None
    """Overrides the server's ``--on-risk`` for this request."""


class ChatMessage(BaseModel):
    """One message of a chat request (other fields, e.g. ``name`` or ``tool_calls``, are kept)."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatCompletionRequest(BaseModel):
    """``POST /v1/chat/completions``."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    quco: QucoOptions | None = None


class CompletionRequest(BaseModel):
    """``POST /v1/completions`` (one prompt per request)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    prompt: str | list[str]
    stream: bool | None = None
    logprobs: int | None = Field(default=None, ge=0, le=20)
    quco: QucoOptions | None = None


class QucoReport(BaseModel):
    """The risk report added to each guarded response under ``quco``.

    ``flagged`` is the headline; ``reasons`` says why (each with ``where``:
    ``stage1`` or ``sentence N``); ``retrievals`` counts retrieval calls;
    ``coverage`` is how much of the question the corpus knows (known, total,
    share, floor and verdict: ``covered``, ``out_of_coverage`` or
    ``no_entities``; None for the ``flare`` policy); ``confidence.source`` says where the token confidences
    came from (``model``: the upstream's logprobs; ``none``). ``choices`` holds
    one summary per choice when the upstream returned several.
    """

    model_config = ConfigDict(extra="allow")

    policy: str
    on_risk: Literal["flag", "rewrite"]
    flagged: bool
    reasons: list[dict[str, Any]]
    retrievals: int
    rewritten: bool
    coverage: dict[str, Any] | None
    confidence: dict[str, Any]
    stage1: dict[str, Any]
    sentences: list[dict[str, Any]]
    backend_errors: list[dict[str, Any]]
    timings: dict[str, float]


class ErrorDetail(BaseModel):
    """The OpenAI error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error the proxy answers: ``{"error": {"message", "type", "param", "code"}}``."""

    error: ErrorDetail
