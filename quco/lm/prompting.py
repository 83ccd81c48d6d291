"""How a prompt, a prefix and a continuation become token ids.

Shared by :class:`~quco.lm.confidence.ConfidenceScorer` and
:class:`~quco.lm.generator.HFGenerator` so that both feed the model exactly the
same ids, and a generated text scores with the logprobs it was generated with.

Layout of the ids the model sees::

    [template(prompt)] [prefix] [continuation / generated tokens]

- ``template(prompt)``: with a chat template, the prompt as one user turn
  followed by the assistant header (``add_generation_prompt=True``); without,
  the prompt's own tokens (with the tokenizer's BOS when it adds one).
- ``prefix``: assistant text already written, tokenized on its own.
- the continuation is tokenized on its own, without special tokens.

When the whole context is empty (no chat template, empty prompt and prefix)
the BOS (else EOS) token is put first, so that the first continuation token
has a prediction. Text beyond the model's context is cut from the left of the
prompt (the template is kept whole), then from the left of the prefix, with a
logged warning.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quco.errors import BadInputError
from quco.models import LoadedLM

log = logging.getLogger("quco.lm")

#: tokens of left context used to decode one token's text
_DECODE_WINDOW = 6
_REPLACEMENT = "\ufffd"


def check_text(value: object, what: str) -> str:
    """``value`` if it is a string, else :class:`BadInputError`."""
    if not isinstance(value, str):
        raise BadInputError(f"{what} must be a string, not {type(value).__name__}")
    return value


def use_chat(lm: LoadedLM, chat: bool | None) -> bool:
    """Whether to apply the chat template: auto (``None``) when the tokenizer has one.

    Raises:
        BadInputError: ``chat=True`` for a model without a chat template.
    """
    if chat is None:
        return lm.has_chat_template
    if chat and not lm.has_chat_template:
        raise BadInputError(f"model {lm.name!r} has no chat template; use chat=False")
    return bool(chat)


def encode_text(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` on its own, without special tokens (``[]`` for ``""``)."""
    if not text:
        return []
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _adds_bos(tokenizer: Any) -> bool:
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == bos


def template_ids(lm: LoadedLM, prompt: str, *, chat: bool) -> list[int]:
    """Ids of the prompt as the model sees it, before any assistant text."""
    tok = lm.tokenizer
    if chat:
        text = tok.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        return encode_text(tok, text)
    ids = encode_text(tok, prompt)
    if _adds_bos(tok):
        ids = [tok.bos_token_id, *ids]
    return ids


def start_token(tokenizer: Any) -> int:
    """The token put before an otherwise empty context (BOS, else EOS, else 0)."""
    for tid in (tokenizer.bos_token_id, tokenizer.eos_token_id):
        if tid is not None:
            return int(tid)
    return 0


@dataclass(frozen=True)
class Context:
    """The ids before the continuation.

    Attributes:
        ids: template(prompt) followed by the prefix ids.
        prefix_ids: the prefix's ids (the tail of ``ids``), the left context
            used to decode the first continuation token's text.
        truncated: True when the prompt or prefix was cut to fit the context.
    """

    ids: tuple[int, ...]
    prefix_ids: tuple[int, ...]
    truncated: bool = False


def encode_context(lm: LoadedLM, prompt: str, prefix: str = "", *, chat: bool, reserve: int = 0) -> Context:
    """Ids of template(prompt) + prefix, cut from the left to leave ``reserve`` tokens.

    Args:
        lm: the model bundle (tokenizer and context length).
        prompt: the user's text.
        prefix: assistant text already written.
        chat: apply the chat template.
        reserve: tokens to keep free for the continuation.

    Returns:
        The context; ``truncated`` says whether anything was cut (a warning is logged).
    """
    tok = lm.tokenizer
    budget = max(1, lm.context_length - max(0, reserve))
    prefix_ids = encode_text(tok, prefix)
    ids = template_ids(lm, prompt, chat=chat)
    truncated = False
    if len(ids) + len(prefix_ids) > budget and prompt:
        prompt_ids = encode_text(tok, prompt)
        n_prompt = len(prompt_ids)
        overhead = max(0, len(ids) - n_prompt)
        keep = max(0, budget - overhead - len(prefix_ids))
        text = prompt
        # decoding then re-encoding a cut can shift a token or two: shrink until it fits
        for _ in range(4):
            text = tok.decode(prompt_ids[n_prompt - keep :]) if keep > 0 else ""
            ids = template_ids(lm, text, chat=chat)
            if len(ids) + len(prefix_ids) <= budget or keep == 0:
                break
            keep = max(0, keep - (len(ids) + len(prefix_ids) - budget) - 1)
        log.warning(
            "prompt of %d tokens does not fit the %d-token context of %s: kept its last %d tokens",
            n_prompt,
            lm.context_length,
            lm.name,
            len(encode_text(tok, text)),
        )
        truncated = True
    if len(ids) + len(prefix_ids) > budget and prefix_ids:
        keep = max(0, budget - len(ids))
        log.warning(
            "prefix of %d tokens does not fit the context of %s: kept its last %d tokens",
            len(prefix_ids),
            lm.name,
            keep,
        )
        prefix_ids = prefix_ids[len(prefix_ids) - keep :] if keep else []
        truncated = True
    if len(ids) + len(prefix_ids) > budget:  # the template alone is too long: keep its end
        ids = ids[len(ids) + len(prefix_ids) - budget :]
        truncated = True
    full = [*ids, *prefix_ids]
    if not full:
        full = [start_token(tok)]
    return Context(tuple(full), tuple(prefix_ids), truncated)


def token_texts(tokenizer: Any, prev_ids: Sequence[int], new_ids: Sequence[int]) -> list[str]:
    """The text each of ``new_ids`` adds after ``prev_ids``.

    Each token's text is the difference between decoding a short window that
    ends with it and the same window without it, so leading spaces are right
    and the pieces join to the decoded text. A byte-level token that ends
    inside a multi-byte character gets ``""``; the token completing the
    character carries it (so a U+FFFD the model really writes at a token's
    end is dropped: a rare, accepted loss).

    Args:
        tokenizer: the HF tokenizer.
        prev_ids: the ids before (only the last few are used).
        new_ids: the ids whose texts are wanted.

    Returns:
        One string per new id.
    """
    head_ids = list(prev_ids[-_DECODE_WINDOW:]) if prev_ids else []
    all_ids = head_ids + list(new_ids)
    out = []
    for i in range(len(head_ids), len(all_ids)):
        lo = max(0, i - _DECODE_WINDOW)
        head = tokenizer.decode(all_ids[lo:i]).rstrip(_REPLACEMENT) if i > lo else ""
        full = tokenizer.decode(all_ids[lo : i + 1])
        full_c = full.rstrip(_REPLACEMENT)
        if full_c.startswith(head):
            out.append(full_c[len(head) :])
        else:  # the tokenizer normalised across the boundary: fall back to the token alone
            out.append(tokenizer.decode([all_ids[i]]))
    return out
