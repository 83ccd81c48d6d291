"""Text generation with the token confidences of the generation itself.

:class:`HFGenerator` decodes token by token with the model's KV cache and keeps,
for each token it emits, the logprob and entropy of the distribution it was
drawn from: no second forward pass. Prompts are formatted by
:mod:`quco.lm.prompting`, exactly as :class:`~quco.lm.confidence.ConfidenceScorer`
formats them, so ``scorer.score_tokens(prompt, ids, prefix=prefix)`` on the
generated ids reproduces the generation's logprobs (to float rounding: the
cached step-by-step computation and the scorer's single pass differ by about
1e-6 in float32). ``scorer.score(prompt, text)`` agrees as well whenever
re-tokenizing the text gives back the generated ids, which is the usual case; a
model may emit a non-canonical split (e.g. ``"Par" + "is"``) that re-tokenizing
merges, and then the two differ in those tokens.

**Prefix KV cache.** The guard writes an answer one sentence at a time: each
call's context is the previous call's context plus the sentence just
accepted, or, after a retrieval, a prompt that shares its instruction and
few-shot examples with the last one. :class:`HFGenerator` keeps the KV cache
of the last call (the ids it fed, the cache, the last position's logits) and
feeds a new call only the ids after the longest common start. A context that
extends the cached one continues the cache; one that diverges crops it to the
common start (full-attention caches: a copy of the first ``n`` positions);
models whose cache is not a plain full-attention one (Gemma 3's sliding
window layers) reuse it only when the new context extends the cached ids,
and otherwise start again. The cached path gives the same tokens as reading
the whole context again (tests check it on the real model); logprobs agree
to float rounding.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quco._deps import require
from quco.errors import BadInputError
from quco.lm.confidence import (
    _cache_from,
    _cache_tensors,
    _common_length,
    forward_logits,
    logprobs_entropies,
    resolve_lm,
)
from quco.lm.prompting import check_text, encode_context, token_texts, use_chat
from quco.models import LoadedLM
from quco.types import Confidence, Generation, TokenConfidence

log = logging.getLogger("quco.lm")

#: words that end with a period without ending a sentence
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st jr sr vs mt ft gen col lt sgt capt rev hon no nos vol fig approx ca cf al".split()
)
#: shortest common start (tokens) worth cropping a cache to; shorter ones are read again
MIN_REUSE = 16

_TERMINATOR = re.compile(r"[.!?]+[\"')\]\u201d\u2019]*(?=\s)")
_LAST_WORD = re.compile(r"(\S+)$")


def sentence_end(text: str) -> int | None:
    """Where the first complete sentence of ``text`` ends, or None if none has ended yet.

    A sentence ends at ``.``, ``!`` or ``?`` (with any closing quotes or
    brackets) followed by whitespace, or at a newline, once some non-space text
    precedes it. A period after a single letter ("U.S.", "J. Smith"), after a
    word containing a period ("e.g.") or after a common abbreviation ("Dr.")
    does not end a sentence; "3.5" does not either (no whitespace follows).

    Args:
        text: generated text so far.

    Returns:
        The index just past the sentence's end (its terminator kept, the
        newline excluded), or None.
    """
    body_start = len(text) - len(text.lstrip())
    nl = text.find("\n", body_start)
    for m in _TERMINATOR.finditer(text, body_start):
        if nl != -1 and m.start() >= nl:
            break
        if m.start() <= body_start:
            continue
        if m.group(0)[0] == "." and m.group(0).rstrip("\"')]\u201d\u2019") == ".":
            w = _LAST_WORD.search(text, 0, m.start())
            word = w.group(1).lstrip("\"'([\u201c\u2018") if w else ""
            if (len(word) == 1 and word.isalpha()) or "." in word or word.lower() in ABBREVIATIONS:
                continue
        return m.end()
    if nl != -1:
        return len(text[:nl].rstrip())
    return None


@dataclass
class _CacheState:
    """The last call's context: the ids fed, their KV cache and the last position's logits."""

    ids: tuple[int, ...]
    cache: Any
    logits: Any


@dataclass(frozen=True)
class CacheStats:
    """How much of the contexts the prefix cache saved (counted since the generator was made).

    Attributes:
        calls: :meth:`HFGenerator.generate` calls that read a context.
        context_tokens: tokens in those contexts.
        fed_tokens: context tokens actually fed to the model (the rest came from the cache).
    """

    calls: int = 0
    context_tokens: int = 0
    fed_tokens: int = 0


class HFGenerator:
    """Greedy (or seeded sampling) generation with token confidences (satisfies ``quco.protocols.Generator``).

    Args:
        lm: a loaded model, a model name (alias, HF id, path) or None for the
            default SmolLM2-135M-Instruct.
        chat: apply the model's chat template (prompt as a user turn, prefix
            and output as the assistant's); None (default) when it has one.
        seed: seed of the sampler (only used when ``temperature > 0``).
        temperature: 0 for greedy decoding; above 0 samples from the
            tempered distribution. Reported logprobs and entropies are always
            those of the model's untempered distribution, like the scorer's.
        prefix_cache: keep the last call's KV cache and feed the next call
            only the ids after their common start (see the module docstring).

    Attributes:
        lm: the model bundle.
        name: the model's name.
    """

    def __init__(
        self,
        lm: LoadedLM | str | None = None,
        *,
        chat: bool | None = None,
        seed: int | None = None,
        temperature: float = 0.0,
        prefix_cache: bool = True,
    ) -> None:
        if not isinstance(temperature, (int, float)) or temperature < 0:
            raise BadInputError(f"temperature must be >= 0, got {temperature!r}")
        self.prefix_cache = bool(prefix_cache)
        self._state: _CacheState | None = None
        self._lock = threading.Lock()
        self._stats = CacheStats()
        self.lm = resolve_lm(lm)
        self.chat = use_chat(self.lm, chat)
        self.temperature = float(temperature)
        self.seed = seed
        self.name = self.lm.name
        self._rng: Any = None
        self._eos = self._eos_ids()

    def _eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        gen_eos = getattr(getattr(self.lm.model, "generation_config", None), "eos_token_id", None)
        for v in (gen_eos, self.lm.tokenizer.eos_token_id):
            if isinstance(v, int):
                ids.add(v)
            elif isinstance(v, (list, tuple)):
                ids.update(int(x) for x in v)
        if self.chat:  # the end-of-turn marker ends the answer
            for marker in ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>"):
                tid = self.lm.tokenizer.convert_tokens_to_ids(marker)
                if isinstance(tid, int) and tid != self.lm.tokenizer.unk_token_id:
                    ids.add(tid)
        return frozenset(ids)

    @property
    def cache_stats(self) -> CacheStats:
        """Context tokens read and fed so far (how much the prefix cache saved)."""
        return self._stats

    def _prefill(self, ids: Sequence[int]) -> tuple[Any, Any]:
        """(logits of the last context position, KV cache) for ``ids``, reusing the last call's cache."""
        torch = require("torch")
        model, dev = self.lm.model, self.lm.device
        with self._lock:  # take the state: a concurrent call starts afresh instead of sharing it
            state, self._state = self._state, None
        start = 0
        cache = None
        if state is not None and self.prefix_cache:
            n = _common_length([state.ids, ids])
            if n == len(state.ids) == len(ids):
                self._count(len(ids), 0)
                return state.logits, state.cache
            if n == len(state.ids):  # the new context extends the cached one
                start, cache = n, state.cache
            elif n >= MIN_REUSE:  # crop to the common start (full-attention caches only)
                kv = _cache_tensors(state.cache)
                if kv is not None:
                    start = min(n, len(ids) - 1)
                    cache = _cache_from(kv, start, 1)
        self._count(len(ids), len(ids) - start)
        logits, cache = forward_logits(
            model, 1, cache=cache, input_ids=torch.tensor([list(ids[start:])], device=dev), use_cache=True
        )
        return logits[0, -1], cache

    def _count(self, context: int, fed: int) -> None:
        s = self._stats
        self._stats = CacheStats(s.calls + 1, s.context_tokens + context, s.fed_tokens + fed)

    def _sampler(self) -> Any:
        if self._rng is None:
            torch = require("torch")
            self._rng = torch.Generator(device="cpu")
            if self.seed is None:
                self._rng.seed()
            else:
                self._rng.manual_seed(int(self.seed))
        return self._rng

    def _pick(self, logits: Any) -> int:
        torch = require("torch")
        if self.temperature == 0.0:
            return int(torch.argmax(logits).item())
        probs = torch.softmax(logits.float() / self.temperature, dim=-1).cpu()
        return int(torch.multinomial(probs, 1, generator=self._sampler()).item())

    def generate(
        self,
        prompt: str,
        *,
        prefix: str = "",
        max_new_tokens: int = 64,
        stop: Sequence[str] = (),
        sentence: bool = False,
    ) -> Generation:
        """Continue the assistant's answer to ``prompt`` after ``prefix``.

        Args:
            prompt: the user's text (a chat template is applied when in use).
            prefix: assistant text already written; the output continues it
                (so ``prefix + text`` is the answer so far).
            max_new_tokens: most tokens to generate (0 gives an empty text).
            stop: strings at whose first occurrence generation stops; the text
                is cut before it. A token that straddles the cut is kept in
                the confidences.
            sentence: stop after the first complete sentence (see :func:`sentence_end`).

        Returns:
            The text, its tokens' confidences from the generation,
            ``finish_reason`` (``"stop"`` for a stop string or sentence end,
            ``"eos"``, or ``"length"``) and the number of prompt tokens.

        Raises:
            BadInputError: a text argument is not a string, or max_new_tokens < 0.
        """
        check_text(prompt, "prompt")
        check_text(prefix, "prefix")
        if isinstance(stop, str):
            stop = (stop,)
        stops = tuple(check_text(s, "stop string") for s in stop if s != "")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise BadInputError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
        ctx_len = self.lm.context_length
        ctx = encode_context(
            self.lm, prompt, prefix, chat=self.chat, reserve=min(max_new_tokens, ctx_len // 2)
        )
        limit = min(max_new_tokens, ctx_len - len(ctx.ids))
        if limit <= 0:
            return Generation("", Confidence(()), "length", len(ctx.ids))
        torch = require("torch")
        model, dev = self.lm.model, self.lm.device
        ids: list[int] = []
        tokens: list[TokenConfidence] = []
        texts: list[str] = []
        text = ""
        finish = "length"
        cut: int | None = None
        with torch.inference_mode():
            logits, cache = self._prefill(ctx.ids)
            fed = list(ctx.ids)
            while True:
                tid = self._pick(logits)
                if tid in self._eos:
                    finish = "eos"
                    break
                (lp,), (ent,) = logprobs_entropies(logits[None], torch.tensor([tid], device=logits.device))
                piece = token_texts(self.lm.tokenizer, list(ctx.prefix_ids) + ids, [tid])[0]
                ids.append(tid)
                texts.append(piece)
                tokens.append(TokenConfidence(piece, tid, float(lp), float(ent)))
                scan_from = max(0, len(text) - max((len(s) for s in stops), default=0))
                text += piece
                cut = _first_stop(text, stops, scan_from)
                if cut is None and sentence:
                    cut = sentence_end(text)
                if cut is not None:
                    finish = "stop"
                    break
                if len(ids) >= limit:
                    break
                step_logits, cache = forward_logits(
                    model, 1, cache=cache, input_ids=torch.tensor([[tid]], device=dev), use_cache=True
                )
                fed.append(tid)
                logits = step_logits[0, -1]
            if self.prefix_cache and cache is not None:
                with self._lock:
                    self._state = _CacheState(tuple(fed), cache, logits)
        if cut is not None:
            kept, start = [], 0
            for t, piece in zip(tokens, texts):  # the tokens that begin before the cut
                if start >= cut:
                    break
                kept.append(t)
                start += len(piece)
            tokens = kept
            text = text[:cut]
        return Generation(text, Confidence(tuple(tokens)), finish, len(ctx.ids))


def _first_stop(text: str, stops: Sequence[str], scan_from: int) -> int | None:
    """Index of the earliest stop string in ``text`` at or after ``scan_from``."""
    hits = [i for s in stops if (i := text.find(s, scan_from)) != -1]
    return min(hits) if hits else None
