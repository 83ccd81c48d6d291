"""Token confidences from the logprobs a served model returns (the confidence side, read off the wire).

OpenAI-compatible servers return token logprobs on request in a few shapes;
:func:`confidence_from_logprobs` reads each of them into a
:class:`~quco.types.Confidence`:

- **chat** (OpenAI, vLLM, llama.cpp's ``llama-server``, llama-cpp-python;
  LangChain's ``ChatOpenAI(logprobs=True)`` keeps it under
  ``response_metadata["logprobs"]``): ``{"content": [{"token", "logprob",
  "bytes", "top_logprobs": [{"token", "logprob", "bytes"}, ...]}, ...]}``, or
  the bare list;
- **completions** (the legacy ``/v1/completions`` with ``logprobs=N``):
  ``{"tokens": [...], "token_logprobs": [...], "top_logprobs": [{token:
  logprob}, ...], "text_offset": [...]}``;
- **llama.cpp's native** ``/completion`` with ``n_probs``:
  ``[{"content" or "token", "probs": [{"tok_str", "prob"}, ...]}, ...]`` (older
  builds) or entries with ``"logprob"`` and ``"top_logprobs"`` (newer ones).

A server gives no token ids: ``token_id`` is ``-1``. The **entropy** of each
position is estimated from the alternatives returned with it (the chosen token
and its ``top_logprobs``, the remaining probability mass counted as one more
outcome): a lower bound of the full-vocabulary entropy, close to it when the
distribution is peaked or ``top_logprobs`` is large. Without alternatives the
entropy is NaN for every token (so ``Confidence.max_entropy`` is NaN and a
fitted risk model imputes it). A logprob of ``-inf`` (vLLM's masked tokens) or
below :data:`MIN_LOGPROB` is clamped to :data:`MIN_LOGPROB`.

:func:`split_confidence` cuts one answer's confidences along its sentences, so
that each sentence is judged with its own tokens.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from quco.errors import BadInputError
from quco.types import Confidence, TokenConfidence

__all__ = ["MIN_LOGPROB", "confidence_from_logprobs", "has_logprobs", "split_confidence"]

#: logprobs below this (and ``-inf``) are clamped to it
MIN_LOGPROB = -100.0


def _lp(value: Any, where: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{where}: logprob {value!r} is not a number") from exc
    if math.isnan(x):
        raise BadInputError(f"{where}: logprob is NaN")
    return max(min(x, 0.0), MIN_LOGPROB)


def _entropy(chosen: float, alternatives: Sequence[float]) -> float:
    """Entropy (nats) over the chosen token and its alternatives, the rest of the mass as one outcome."""
    lps = sorted({*alternatives, chosen}, reverse=True) if alternatives else []
    if not lps:
        return math.nan
    probs = [math.exp(x) for x in lps]
    total = sum(probs)
    if total > 1.0:  # rounding, or duplicates under different spellings
        probs = [p / total for p in probs]
        total = 1.0
    rest = 1.0 - total
    h = -sum(p * math.log(p) for p in probs if p > 0)
    if rest > 1e-12:
        h -= rest * math.log(rest)
    return h


def _token(token: str, lp: float, alts: Sequence[float] | None) -> TokenConfidence:
    return TokenConfidence(token, -1, lp, _entropy(lp, alts) if alts is not None else math.nan)


def _chat_entries(entries: Sequence[Any]) -> list[TokenConfidence]:
    out = []
    for i, e in enumerate(entries):
        if not isinstance(e, Mapping):
            raise BadInputError(f"logprobs entry {i} is not an object")
        where = f"logprobs entry {i}"
        if "logprob" in e:
            lp = _lp(e["logprob"], where)
            token = e.get("token", e.get("tok_str", ""))
            top = e.get("top_logprobs")
            alts = [_lp(t["logprob"], where) for t in top if isinstance(t, Mapping) and "logprob" in t] if top else None
        elif "probs" in e:  # llama.cpp's older native shape: probabilities, chosen token first or among them
            token = e.get("content", e.get("token", ""))
            probs = [p for p in e["probs"] if isinstance(p, Mapping)]
            chosen = next((p for p in probs if p.get("tok_str") == token), None)
            if chosen is None:
                raise BadInputError(f"{where}: the chosen token {token!r} is not among its probs")
            lp = _lp(math.log(max(float(chosen["prob"]), 1e-300)), where)
            alts = [_lp(math.log(max(float(p["prob"]), 1e-300)), where) for p in probs]
        else:
            raise BadInputError(f"{where} has neither 'logprob' nor 'probs'")
        if not isinstance(token, str):
            raise BadInputError(f"{where}: token is not a string")
        out.append(_token(token, lp, alts))
    return out


def _completion_entries(lp: Mapping[str, Any]) -> list[TokenConfidence]:
    tokens = lp.get("tokens") or []
    values = lp.get("token_logprobs") or []
    tops = lp.get("top_logprobs")
    if len(tokens) != len(values):
        raise BadInputError("logprobs: 'tokens' and 'token_logprobs' differ in length")
    out = []
    for i, (tok, v) in enumerate(zip(tokens, values)):
        if v is None:  # the first prompt token under echo=True has no logprob
            continue
        where = f"logprobs token {i}"
        alts = None
        if tops and i < len(tops) and isinstance(tops[i], Mapping):
            alts = [_lp(x, where) for x in tops[i].values()]
        out.append(_token(str(tok), _lp(v, where), alts))
    return out


def has_logprobs(logprobs: Any) -> bool:
    """True when ``logprobs`` holds at least one token in a known shape."""
    if isinstance(logprobs, Mapping):
        return bool(logprobs.get("content") or logprobs.get("tokens"))
    return isinstance(logprobs, Sequence) and not isinstance(logprobs, str) and len(logprobs) > 0


def confidence_from_logprobs(logprobs: Any) -> Confidence:
    """A :class:`~quco.types.Confidence` from logprobs in any of the shapes above.

    Args:
        logprobs: the ``logprobs`` object of a choice (chat or completions), a
            list of chat entries, or llama.cpp's ``completion_probabilities``.

    Returns:
        The token confidences (empty for ``None`` or an empty object). Entropies
        are NaN for every token unless every token came with alternatives.

    Raises:
        BadInputError: the object is in no known shape, or a logprob is not a number.
    """
    if logprobs is None:
        return Confidence()
    if isinstance(logprobs, Mapping):
        if "content" in logprobs:
            tokens = _chat_entries(logprobs.get("content") or [])
        elif "token_logprobs" in logprobs or "tokens" in logprobs:
            tokens = _completion_entries(logprobs)
        elif not logprobs:
            tokens = []
        else:
            raise BadInputError(f"unknown logprobs shape (keys: {', '.join(sorted(map(str, logprobs)))})")
    elif isinstance(logprobs, Sequence) and not isinstance(logprobs, str):
        tokens = _chat_entries(logprobs)
    else:
        raise BadInputError(f"logprobs must be an object or a list, not {type(logprobs).__name__}")
    if any(math.isnan(t.entropy) for t in tokens):
        tokens = [TokenConfidence(t.token, t.token_id, t.logprob, math.nan) for t in tokens]
    return Confidence(tuple(tokens))


def _offsets(tokens: Sequence[TokenConfidence], text: str) -> list[int]:
    """Start offset in ``text`` of each token's first non-space character (-1 when not found)."""
    joined = "".join(t.token for t in tokens)
    shift = None
    if joined == text:
        shift = 0
    elif joined.strip() == text.strip() and joined.strip():
        shift = (len(text) - len(text.lstrip())) - (len(joined) - len(joined.lstrip()))
    out = []
    pos = 0
    for t in tokens:
        lead = len(t.token) - len(t.token.lstrip())
        if shift is not None:
            out.append(pos + lead + shift if t.token.strip() else -1)
            pos += len(t.token)
            continue
        core = t.token.strip()
        at = text.find(core, pos) if core else -1
        if at >= 0:
            out.append(at)
            pos = at + len(core)
        else:
            out.append(-1)
    return out


def split_confidence(confidence: Confidence, text: str, spans: Sequence[tuple[int, int]]) -> list[Confidence]:
    """One :class:`Confidence` per sentence span of ``text``, from the answer's token confidences.

    A token belongs to the sentence whose span holds its first non-space
    character; whitespace-only tokens and tokens that cannot be placed (the
    text was edited after generation) belong to no sentence.

    Args:
        confidence: the confidences of the tokens that make up ``text``.
        text: the answer.
        spans: ``(start, end)`` character spans of its sentences, in order.

    Returns:
        A list as long as ``spans``.
    """
    offs = _offsets(confidence.tokens, text)
    groups: list[list[TokenConfidence]] = [[] for _ in spans]
    j = 0
    for t, off in zip(confidence.tokens, offs):
        if off < 0:
            continue
        while j < len(spans) and off >= spans[j][1]:
            j += 1
        if j == len(spans):
            break
        if off >= spans[j][0]:
            groups[j].append(t)
    return [Confidence(tuple(g)) for g in groups]
