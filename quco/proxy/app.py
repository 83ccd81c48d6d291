"""The ASGI app of ``quco proxy``: thin routes over :class:`~quco.proxy.serving.ProxyService`.

Routes:

- ``POST /v1/chat/completions``, ``POST /v1/completions``: guarded (stage 1 on
  the request, stage 2 on the answer, the report under ``quco``);
- ``GET /v1/models`` and every other path and method: passed through to the
  upstream unchanged (status, headers and body streamed back);
- ``GET /quco/health``: the proxy's own state (no upstream call).

Errors have one shape, :class:`~quco.proxy.schema.ErrorResponse`: a body that
is not JSON, or does not fit the schema, gets **400**; a body over
``max_body_bytes`` gets **413**; a request without a question gets **400**; an
upstream failure **502**, an upstream timeout **504**, an upstream 4xx its own
status and body.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any

from quco._deps import require

require("fastapi", "server")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, Response, StreamingResponse  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from quco.errors import BadInputError  # noqa: E402
from quco.proxy.schema import ChatCompletionRequest, CompletionRequest, ErrorDetail, ErrorResponse  # noqa: E402
from quco.proxy.serving import ProxyService  # noqa: E402
from quco.proxy.upstream import HOP_BY_HOP, ProxyError  # noqa: E402

log = logging.getLogger("quco.proxy")

#: default largest request body, bytes
MAX_BODY_BYTES = 1 << 20


def error_response(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    """An :class:`ErrorResponse` with ``status``."""
    body = ErrorResponse(error=ErrorDetail(message=message, type=kind, param=param, code=str(status)))
    return JSONResponse(body.model_dump(), status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413.

    A declared ``Content-Length`` over the limit is answered at once; a body
    without one is counted as it is read, cut at the limit, and the app's
    answer is replaced by the 413.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        too_large = error_response(413, f"the request body is over {self.limit} bytes")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await too_large(scope, receive, send)
            return
        seen = 0
        exceeded = replaced = False

        async def counting_receive() -> Message:
            nonlocal seen, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return msg

        async def limited_send(msg: Message) -> None:
            nonlocal replaced
            if not exceeded:
                await send(msg)
            elif not replaced:  # the app answered a cut body: answer 413 instead
                replaced = True
                await too_large(scope, receive, send)

        await self.app(scope, counting_receive, limited_send)


def create_app(service: ProxyService, *, max_body_bytes: int = MAX_BODY_BYTES) -> Any:
    """The proxy's ASGI app (FastAPI behind the :class:`BodyLimit` middleware).

    Args:
        service: does the work; its upstream client is closed at shutdown.
        max_body_bytes: largest request body accepted.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        await service.upstream.aclose()

    app = FastAPI(title="quco proxy", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        loc = ".".join(str(x) for x in first.get("loc", ()) if x != "body")
        if first.get("type") == "json_invalid":
            return error_response(400, "the request body is not valid JSON")
        return error_response(400, f"invalid request: {loc or 'body'}: {first.get('msg', 'invalid')}", param=loc or None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(BadInputError)
    async def bad_input(request: Request, exc: BadInputError) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(ProxyError)
    async def upstream_failed(request: Request, exc: ProxyError) -> JSONResponse:
        if exc.body is not None:  # the upstream's own 4xx error, passed through
            return JSONResponse(exc.body, status_code=exc.status)
        return error_response(exc.status, str(exc), exc.kind)

    async def guarded(kind: Any, req: Any, request: Request) -> Response:
        if req.stream:
            return StreamingResponse(await service.stream(kind, req, request.headers), media_type="text/event-stream")
        return JSONResponse(await service.complete(kind, req, request.headers))

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest, request: Request) -> Response:
        return await guarded(service.chat_kind, req, request)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest, request: Request) -> Response:
        return await guarded(service.completion_kind, req, request)

    @app.get("/quco/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "upstream": service.upstream.base_url, "policy": service.guard.policy, "on_risk": service.guard.on_risk}

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
    async def pass_through(path: str, request: Request) -> Response:
        resp = await service.upstream.forward(
            request.method, "/" + path, request.url.query.encode("latin-1"), request.headers, await request.body()
        )
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}

        async def body() -> Any:
            try:
                async for chunk in resp.aiter_raw():
                    yield chunk
            finally:
                await resp.aclose()

        return StreamingResponse(body(), status_code=resp.status_code, headers=headers)

    return BodyLimit(app, max_body_bytes)
