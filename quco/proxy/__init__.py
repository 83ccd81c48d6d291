"""``quco proxy``: an OpenAI-compatible guard server in front of any OpenAI-compatible upstream.

Point an OpenAI client at the proxy instead of the model server. Each chat or
text completion gets QuCo's stage 1 (risky question: retrieved evidence is
added to the request) and stage 2 (each sentence of the answer checked, with
the upstream's own token logprobs on the confidence side), and comes back as
the upstream's response with a ``quco`` field holding the risk report.
Streaming passes the upstream's chunks through and ends with a chunk carrying
the report. Everything else (``/v1/models``, embeddings...) is passed through.

Modules: :mod:`~quco.proxy.schema` (request, report and error models),
:mod:`~quco.proxy.upstream` (the pooled HTTP client and its error mapping),
:mod:`~quco.proxy.kinds` (chat vs text completions),
:mod:`~quco.proxy.serving` (the serving class), :mod:`~quco.proxy.app` (the
ASGI routes). Needs ``pip install 'quco[server]'``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app"]


def build_app(
    upstream: str,
    guard: Any,
    *,
    timeout: float = 120.0,
    top_logprobs: int = 5,
    logprobs: str = "auto",
    max_body_bytes: int = 1 << 20,
) -> Any:
    """The proxy's ASGI app in front of ``upstream``.

    Args:
        upstream: the upstream's OpenAI base URL (``http://host:port/v1``).
        guard: a :class:`quco.integrations.session.AnswerGuard`.
        timeout: seconds to wait for each upstream read.
        top_logprobs: alternatives per token asked of the upstream (entropy estimate).
        logprobs: when to ask the upstream for logprobs: ``auto`` (the policy
            uses them), ``always``, ``never`` (see :class:`~quco.proxy.serving.ProxyService`).
        max_body_bytes: largest request body accepted.
    """
    from quco.proxy.app import create_app
    from quco.proxy.serving import ProxyService
    from quco.proxy.upstream import Upstream

    service = ProxyService(guard, Upstream(upstream, timeout=timeout), top_logprobs=top_logprobs, logprobs=logprobs)
    return create_app(service, max_body_bytes=max_body_bytes)
