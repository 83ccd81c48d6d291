"""The proxy's serving class: the guarded exchange with the upstream, whole or streamed.

For each guarded request :class:`ProxyService`:

1. reads the question (the last user message, or the prompt) and runs stage 1
   (:meth:`quco.integrations.session.AnswerGuard.start`); when it fires, the
   retrieved evidence is added to the request (before the question in the
   last user message, or before the prompt);
2. asks the upstream for logprobs (``logprobs``/``top_logprobs`` unless the
   client set them) when the confidence side is wanted (``logprobs="auto"``:
   when the policy uses it, ``combined`` or ``flare``; ``"always"``; ``"never"``)
   and forwards the request. Logprobs are not free everywhere: llama-cpp-python's
   server computes them in Python over the whole vocabulary and answers about 8x
   slower with them (``scripts/bench_proxy.py``);
3. reads each choice's text and token logprobs, runs stage 2 on it
   (:meth:`~quco.integrations.session.GuardSession.check`) and adds the report
   under ``quco``;
4. with ``on_risk="rewrite"``, when a risky sentence retrieved evidence, asks
   the upstream once more with all the evidence and returns that answer
   (first choice), the report keeping the draft's checks and the draft.

Streaming passes the upstream's events through as they come, then sends one
chunk without choices that carries the report, then ``data: [DONE]``. With
``rewrite`` the answer is fetched whole first (a rewrite needs it) and sent as
chunks. A failure after streaming began is sent as an ``error`` event (the
status line is gone by then).

The guard's components (spaCy, the index) are used by one request at a time,
in a worker thread, so the event loop keeps streaming other requests.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from functools import partial
from typing import Any, TypeVar

import anyio

from quco.errors import BadInputError
from quco.guard.trace import SentenceRecord
from quco.integrations.logprobs import confidence_from_logprobs
from quco.integrations.session import AnswerGuard, GuardSession, evidence_block
from quco.proxy.kinds import ChatKind, ChoiceBuffer, CompletionKind, report_chunk
from quco.proxy.schema import ErrorDetail, ErrorResponse, QucoReport
from quco.proxy.upstream import ProxyError, TransportError, Upstream, secrets_of
from quco.types import Confidence

log = logging.getLogger("quco.proxy")

T = TypeVar("T")
Kind = ChatKind | CompletionKind


def sse(data: Any) -> bytes:
    """One server-sent event carrying ``data`` as JSON."""
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


DONE = b"data: [DONE]\n\n"

#: when the proxy asks the upstream for logprobs
LOGPROBS_MODES: tuple[str, ...] = ("auto", "always", "never")


class ProxyService:
    """Guards the exchange between clients and the upstream.

    Args:
        guard: the guard (components, policy, default ``on_risk``).
        upstream: the upstream client.
        top_logprobs: alternatives per token asked of the upstream when the
            client did not say (they make the entropy estimate; 0: none).
        logprobs: when to ask the upstream for token logprobs: ``"auto"`` (when
            the policy uses them: ``combined``, ``flare``), ``"always"`` (also
            to report them under ``quco``), ``"never"``. A client that asks for
            logprobs itself gets them, and the guard uses them, in every mode.
    """

    def __init__(self, guard: AnswerGuard, upstream: Upstream, *, top_logprobs: int = 5, logprobs: str = "auto") -> None:
        if not 0 <= top_logprobs <= 20:
            raise BadInputError(f"top_logprobs must be within 0..20, not {top_logprobs}")
        if logprobs not in LOGPROBS_MODES:
            raise BadInputError(f"logprobs must be one of {', '.join(LOGPROBS_MODES)}, not {logprobs!r}")
        self.ask_logprobs = logprobs == "always" or (logprobs == "auto" and guard.policy in ("combined", "flare"))
        self.guard = guard
        self.upstream = upstream
        self.chat_kind = ChatKind(top_logprobs)
        self.completion_kind = CompletionKind(top_logprobs)
        self._lock = threading.Lock()

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)`` in a worker thread, one guard computation at a time."""

        def locked() -> T:
            with self._lock:
                return fn(*args, **kwargs)

        return await anyio.to_thread.run_sync(partial(locked))

    async def _start(self, kind: Kind, req: Any) -> tuple[GuardSession, str, str]:
        on_risk = (req.quco.on_risk if req.quco else None) or self.guard.on_risk
        st = await self._run(self.guard.start, kind.question(req))
        return st, on_risk, evidence_block(st.evidence, self.guard.max_evidence_chars)

    async def _check(self, st: GuardSession, text: str, logprobs: Any, on_risk: str) -> tuple[list[SentenceRecord], Confidence | None]:
        try:
            conf = confidence_from_logprobs(logprobs) if logprobs else None
        except BadInputError as exc:  # the upstream's logprobs are unreadable: judge without them
            log.warning("ignoring the upstream's logprobs: %s", exc)
            conf = None
        records = await self._run(st.check, text, conf, on_risk=on_risk)
        return records, conf

    def _report(self, st: GuardSession, records: list[SentenceRecord], conf: Confidence | None, on_risk: str, **kw: Any) -> dict[str, Any]:
        source = "model" if conf is not None and len(conf) else "none"
        report = st.report(records, confidence=conf, source=source, on_risk=on_risk, **kw)
        return QucoReport.model_validate(report).model_dump()

    # -- whole answers --------------------------------------------------------------------

    async def complete(self, kind: Kind, req: Any, headers: Mapping[str, str]) -> dict[str, Any]:
        """The upstream's answer to a guarded request, with the report under ``quco``.

        Raises:
            ProxyError: the upstream failed (502/504) or rejected the request (its 4xx).
            BadInputError: the request has no question to guard.
        """
        t0 = time.perf_counter()
        st, on_risk, block = await self._start(kind, req)
        data = await self._complete(kind, req, headers, st, on_risk, block)
        q = data["quco"]
        log.info("%s answered in %.3f s: flagged=%s retrievals=%d", kind.path, time.perf_counter() - t0, q["flagged"], q["retrievals"])
        return data

    async def _complete(
        self, kind: Kind, req: Any, headers: Mapping[str, str], st: GuardSession, on_risk: str, block: str
    ) -> dict[str, Any]:
        data = await self.upstream.post_json(kind.path, kind.upstream_body(req, block, stream=False, logprobs=self.ask_logprobs), headers)
        choices = [c for c in data.get("choices") or [] if isinstance(c, dict)]
        if not choices:
            raise ProxyError(502, "the upstream answered without choices")
        checked = [await self._check(st, kind.choice_text(c), c.get("logprobs"), on_risk) for c in choices]
        records, conf = checked[0]
        if on_risk == "rewrite" and st.needs_rewrite(records):
            draft = kind.choice_text(choices[0])
            block2 = evidence_block(st.rewrite_documents(records), self.guard.max_evidence_chars)
            data = await self.upstream.post_json(kind.path, kind.upstream_body(req, block2, stream=False, logprobs=self.ask_logprobs), headers)
            report = self._report(st, records, conf, on_risk, rewritten=True, draft=draft)
        else:
            report = self._report(st, records, conf, on_risk)
        if len(checked) > 1:
            report["flagged"] = any(st.flagged(r) for r, _ in checked)
            report["choices"] = [
                {"index": c.get("index", i), "flagged": st.flagged(r), "reasons": st.reasons(r), "sentences": [x.to_dict() for x in r]}
                for i, (c, (r, _)) in enumerate(zip(choices, checked))
            ]
        data["quco"] = report
        return data

    # -- streamed answers -----------------------------------------------------------------

    async def stream(self, kind: Kind, req: Any, headers: Mapping[str, str]) -> AsyncIterator[bytes]:
        """Open the guarded stream; errors before the first byte raise :class:`ProxyError`.

        Returns:
            An async iterator of SSE bytes: the upstream's events, the report chunk, ``[DONE]``.
        """
        st, on_risk, block = await self._start(kind, req)
        if on_risk == "rewrite":
            return self._replay(kind, await self._complete(kind, req, headers, st, on_risk, block))
        resp = await self.upstream.open_stream(kind.path, kind.upstream_body(req, block, stream=True, logprobs=self.ask_logprobs), headers)
        return self._pass_through(kind, st, on_risk, resp, secrets_of(headers))

    async def _replay(self, kind: Kind, data: dict[str, Any]) -> AsyncIterator[bytes]:
        for chunk in kind.text_chunks(data):
            yield sse(chunk)
        yield sse(report_chunk(data, kind.chunk_object, data["quco"]))
        yield DONE

    async def _pass_through(
        self, kind: Kind, st: GuardSession, on_risk: str, resp: Any, secrets: tuple[str, ...]
    ) -> AsyncIterator[bytes]:
        bufs: dict[int, ChoiceBuffer] = {}
        last: dict[str, Any] | None = None
        try:
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    last = self._collect(kind, payload, bufs) or last
                yield (line + "\n").encode()
        except TransportError as exc:  # the status line is sent: say it in the stream, as OpenAI does
            err = self.upstream.failure(exc, secrets)
            yield sse(ErrorResponse(error=ErrorDetail(message=str(err), type=err.kind, code=str(err.status))).model_dump())
            return
        finally:
            await resp.aclose()
        checked = [await self._check(st, b.text, b.logprobs(), on_risk) for _, b in sorted(bufs.items())] or [
            await self._check(st, "", None, on_risk)
        ]
        report = self._report(st, checked[0][0], checked[0][1], on_risk)
        if len(checked) > 1:
            report["flagged"] = any(st.flagged(r) for r, _ in checked)
        yield sse(report_chunk(last, kind.chunk_object, report))
        yield DONE

    @staticmethod
    def _collect(kind: Kind, payload: str, bufs: dict[int, ChoiceBuffer]) -> dict[str, Any] | None:
        """Add one event's choices to their buffers; the event, or None when it is not a JSON object."""
        try:
            event = json.loads(payload)
        except ValueError:
            return None
        if not isinstance(event, dict):
            return None
        for c in event.get("choices") or []:
            if isinstance(c, dict):
                idx = c.get("index")
                kind.add_chunk(bufs.setdefault(idx if isinstance(idx, int) else 0, ChoiceBuffer()), c)
        return event
