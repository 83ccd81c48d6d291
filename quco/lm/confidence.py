"""Token confidence of a continuation under a causal LM (the confidence side).

:class:`ConfidenceScorer` returns, for each token of a continuation given a
prompt, the natural-log probability the model gives it and the entropy (nats)
of the model's full next-token distribution there. Aggregates (mean logprob,
min probability, max entropy, FLARE's rule) are on :class:`quco.types.Confidence`:
higher logprob / probability = more confident; higher entropy = less.

Prompts are formatted exactly as :class:`quco.lm.generator.HFGenerator` formats
them (see :mod:`quco.lm.prompting`), so scoring a generated text gives the
logprobs it was generated with.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from quco._deps import require
from quco.errors import BadInputError
from quco.lm.prompting import Context, check_text, encode_context, encode_text, token_texts, use_chat
from quco.models import LoadedLM, load_causal_lm
from quco.types import Confidence, TokenConfidence

log = logging.getLogger("quco.lm")

#: most logits (batch x kept positions x vocabulary) held at once: 2**27 floats = 512 MiB
MAX_LOGIT_ELEMENTS = 1 << 27

#: shortest shared start of the prompts (tokens) worth keeping in the prefix KV cache
MIN_SHARED_PREFIX = 32


def resolve_lm(lm: LoadedLM | str | None) -> LoadedLM:
    """A loaded model bundle from a bundle, a name (alias, HF id, path) or None (default)."""
    if isinstance(lm, LoadedLM):
        return lm
    if lm is not None and not isinstance(lm, str):
        raise BadInputError(f"lm must be a LoadedLM, a model name or None, not {type(lm).__name__}")
    return load_causal_lm(lm)


def _cache_kwarg(model: Any) -> str:
    """Name of the KV-cache argument of ``model.forward``: ``cache`` (transformers 5) or ``past_key_values``."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in params else "past_key_values"


def forward_logits(model: Any, keep: int, *, cache: Any = None, **inputs: Any) -> tuple[Any, Any]:
    """``model(**inputs)`` keeping only the last ``keep`` positions' logits.

    Uses ``logits_to_keep`` when the model supports it (no full-vocabulary
    logits for the prompt); otherwise slices the full logits.

    Args:
        model: a causal LM.
        keep: how many final positions' logits to return.
        cache: a KV cache from a previous call (continues it), or None.
        **inputs: ``input_ids``, ``attention_mask``, ``position_ids``, ``use_cache``.

    Returns:
        (logits ``[batch, keep, vocab]``, the KV cache or None).
    """
    if cache is not None:
        inputs[_cache_kwarg(model)] = cache
    try:
        out = model(**inputs, logits_to_keep=keep)
        logits = out.logits
    except TypeError:
        out = model(**inputs)
        logits = out.logits[:, -keep:]
    if not inputs.get("use_cache"):
        return logits, None
    new_cache = getattr(out, "cache", None)
    if new_cache is None:
        new_cache = getattr(out, "past_key_values", None)
    return logits, new_cache


def logprobs_entropies(logits: Any, targets: Any) -> tuple[list[float], list[float]]:
    """Logprob of each target and entropy of each distribution (float32 math).

    Args:
        logits: ``[n, vocab]`` tensor.
        targets: ``[n]`` long tensor of token ids.

    Returns:
        (logprobs, entropies) as Python floats.
    """
    torch = require("torch")
    lp = torch.log_softmax(logits.float(), dim=-1)
    ent = -(lp.exp() * lp).sum(dim=-1)
    chosen = lp.gather(-1, targets.view(-1, 1)).squeeze(-1)
    return chosen.tolist(), ent.tolist()


def _common_length(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the longest common start of ``seqs``."""
    if not seqs:
        return 0
    n = min(len(s) for s in seqs)
    first = seqs[0]
    for i in range(n):
        t = first[i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


def _cache_tensors(cache: Any) -> list[tuple[Any, Any]] | None:
    """Per-layer (keys, values) of a full-attention KV cache; None for any other kind (sliding window, ...)."""
    layers = getattr(cache, "layers", None)
    if layers is not None:  # transformers 5: one DynamicLayer per layer
        if any(type(layer).__name__ != "DynamicLayer" for layer in layers):
            return None
        return [(layer.keys, layer.values) for layer in layers]
    keys, values = getattr(cache, "key_cache", None), getattr(cache, "value_cache", None)
    if keys is not None and values is not None and type(cache).__name__ == "DynamicCache":
        return list(zip(keys, values))
    return None


def _cache_from(kv: Sequence[tuple[Any, Any]], length: int, batch: int) -> Any:
    """A fresh DynamicCache holding the first ``length`` positions of ``kv``, repeated ``batch`` times."""
    dynamic_cache = require("transformers").DynamicCache
    data = [
        (
            k[:, :, :length].expand(batch, -1, -1, -1).contiguous(),
            v[:, :, :length].expand(batch, -1, -1, -1).contiguous(),
        )
        for k, v in kv
    ]
    try:
        return dynamic_cache(ddp_cache_data=data)
    except TypeError:  # transformers 4.x before ddp_cache_data
        return dynamic_cache.from_legacy_cache(tuple(data))


@dataclass(frozen=True)
class _Item:
    index: int
    context: Context
    target: tuple[int, ...]


class ConfidenceScorer:
    """Per-token logprobs and entropies of continuations (satisfies ``quco.protocols.Scorer``).

    Args:
        lm: a loaded model, a model name (alias, HF id, path) or None for the
            default SmolLM2-135M-Instruct.
        batch_size: pairs per forward pass in :meth:`score_many`.
        chat: wrap the prompt as a user turn with the model's chat template;
            None (default) does so when the tokenizer has one.
        prefix_cache: keep the KV cache of the start the prompts share (a
            few-shot prompt, the chat template's system turn) and feed each
            pair only its own tokens after it. Same figures as without it (to
            float rounding), several times faster on long shared prompts.
            Full-attention models only; others score without it.

    Attributes:
        lm: the model bundle.
        name: the model's name.
    """

    def __init__(
        self,
        lm: LoadedLM | str | None = None,
        *,
        batch_size: int = 8,
        chat: bool | None = None,
        prefix_cache: bool = True,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise BadInputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.lm = resolve_lm(lm)
        self.batch_size = batch_size
        self.chat = use_chat(self.lm, chat)
        self.name = self.lm.name
        self.prefix_cache = bool(prefix_cache)
        # the shared prompt start last used: its ids and its per-layer (keys, values), batch 1
        self._shared: tuple[tuple[int, ...], list[tuple[Any, Any]]] | None = None

    # ------------------------------------------------------------------ public API

    def score(self, prompt: str, continuation: str, *, prefix: str = "") -> Confidence:
        """Confidence of ``continuation`` written after ``prompt`` (and ``prefix``).

        Args:
            prompt: the user's text (wrapped as a user turn when chatting).
            continuation: the text to score; ``""`` gives an empty Confidence.
                Whitespace is text like any other and is scored.
            prefix: assistant text already written before the continuation.

        Returns:
            One :class:`TokenConfidence` per continuation token.

        Raises:
            BadInputError: an argument is not a string.
        """
        return self.score_many([(prompt, continuation)], prefixes=[prefix])[0]

    def score_many(
        self, pairs: Sequence[tuple[str, str]], *, prefixes: Sequence[str] | None = None
    ) -> list[Confidence]:
        """Batched :meth:`score`, in the order of ``pairs``.

        Args:
            pairs: (prompt, continuation) pairs.
            prefixes: one assistant prefix per pair (default: none).

        Returns:
            One Confidence per pair.
        """
        if isinstance(pairs, (str, bytes)) or not isinstance(pairs, Sequence):
            raise BadInputError("pairs must be a sequence of (prompt, continuation) tuples")
        if prefixes is not None and len(prefixes) != len(pairs):
            raise BadInputError(f"{len(prefixes)} prefixes for {len(pairs)} pairs")
        items: list[_Item] = []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise BadInputError(f"pair {i} is not a (prompt, continuation) tuple")
            prompt = check_text(pair[0], "prompt")
            cont = check_text(pair[1], "continuation")
            prefix = check_text(prefixes[i], "prefix") if prefixes is not None else ""
            items.append(self._prepare(i, prompt, encode_text(self.lm.tokenizer, cont), prefix))
        return self._run(items)

    def score_tokens(self, prompt: str, token_ids: Sequence[int], *, prefix: str = "") -> Confidence:
        """Confidence of given continuation token ids (no re-tokenization).

        Scoring a generation's own ids with this reproduces its logprobs even
        where re-tokenizing its text would split it differently.

        Args:
            prompt: the user's text.
            token_ids: continuation ids, e.g. ``[t.token_id for t in gen.confidence.tokens]``.
            prefix: assistant text already written.

        Returns:
            One TokenConfidence per id.
        """
        check_text(prompt, "prompt")
        check_text(prefix, "prefix")
        ids = [int(t) for t in token_ids]
        return self._run([self._prepare(0, prompt, ids, prefix)])[0]

    # ------------------------------------------------------------------ internals

    def _prepare(self, index: int, prompt: str, cont_ids: list[int], prefix: str) -> _Item:
        ctx_len = self.lm.context_length
        if cont_ids:
            room = ctx_len - len(encode_context(self.lm, "", prefix, chat=self.chat, reserve=0).ids)
            room = max(1, room)
            if len(cont_ids) > room:
                log.warning(
                    "continuation of %d tokens does not fit the %d-token context of %s: "
                    "scoring its first %d tokens",
                    len(cont_ids),
                    ctx_len,
                    self.lm.name,
                    room,
                )
                cont_ids = cont_ids[:room]
        ctx = encode_context(self.lm, prompt, prefix, chat=self.chat, reserve=len(cont_ids))
        return _Item(index, ctx, tuple(cont_ids))

    def _run(self, items: list[_Item]) -> list[Confidence]:
        results: list[Confidence] = [Confidence(()) for _ in items]
        todo = sorted(
            (it for it in items if it.target), key=lambda it: -(len(it.context.ids) + len(it.target))
        )
        vocab = self._vocab_size()
        batch: list[_Item] = []
        for it in todo:
            keep = max([len(b.target) for b in batch] + [len(it.target)]) + 1
            if batch and (
                len(batch) >= self.batch_size or (len(batch) + 1) * keep * vocab > MAX_LOGIT_ELEMENTS
            ):
                self._score_batch(batch, results)
                batch = []
            batch.append(it)
        if batch:
            self._score_batch(batch, results)
        return results

    def _vocab_size(self) -> int:
        emb = self.lm.model.get_output_embeddings()
        n = getattr(getattr(emb, "weight", None), "shape", (0,))[0] if emb is not None else 0
        return int(n) or int(getattr(self.lm.model.config, "vocab_size", 0) or 1)

    def _score_batch(self, batch: list[_Item], results: list[Confidence]) -> None:
        if len(batch) == 1 and (len(batch[0].target) + 1) * self._vocab_size() > MAX_LOGIT_ELEMENTS:
            self._score_long(batch[0], results)
            return
        # the shared start's cache, when there is one: only the tokens after it are fed
        shared = self._shared_prefix(batch) if self.prefix_cache else None
        n, kv = shared if shared is not None else (0, None)
        torch = require("torch")
        model, dev = self.lm.model, self.lm.device
        seqs = [list(it.context.ids[n:]) + list(it.target) for it in batch]
        width = max(len(s) for s in seqs)
        keep = max(len(it.target) for it in batch) + 1
        pad = self.lm.tokenizer.pad_token_id
        pad = 0 if pad is None else int(pad)
        # padding before each pair's own tokens (after the shared start): every continuation ends at the last position
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        own = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            own[r, width - len(s) :] = 1
        positions = n + (own.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([torch.ones((len(seqs), n), dtype=torch.long), own], dim=1) if n else own
        with torch.inference_mode():
            logits, _ = forward_logits(
                model,
                keep,
                cache=_cache_from(kv, n, len(seqs)) if kv is not None else None,
                input_ids=ids.to(dev),
                attention_mask=mask.to(dev),
                position_ids=positions.to(dev),
                use_cache=kv is not None,
            )  # [B, keep, V]; the last position predicts nothing we need
            for r, it in enumerate(batch):
                k = len(it.target)
                rows = logits[r, keep - 1 - k : keep - 1]
                tgt = torch.tensor(it.target, dtype=torch.long, device=rows.device)
                lps, ents = logprobs_entropies(rows, tgt)
                results[it.index] = self._confidence(it, lps, ents)

    def _shared_prefix(self, batch: list[_Item]) -> tuple[int, list[tuple[Any, Any]]] | None:
        """The KV cache of the start all of ``batch``'s contexts share, reusing the last one's common part.

        Returns (its length, per-layer (keys, values)), or None when the shared
        start is shorter than :data:`MIN_SHARED_PREFIX` or the model's cache is
        not a plain full-attention one (then the prefix cache is turned off).
        """
        # leave at least each context's last token to the per-pair pass: its logits score the first target
        n = _common_length([it.context.ids[:-1] for it in batch])
        if n < MIN_SHARED_PREFIX:
            return None
        want = batch[0].context.ids[:n]
        have = 0
        kv: list[tuple[Any, Any]] | None = None
        cur = self._shared  # one read: another thread may replace it
        if cur is not None:
            have = _common_length([cur[0], want])
            if have >= MIN_SHARED_PREFIX:
                kv = cur[1]
            else:
                have = 0
        if kv is None or have < n:
            torch = require("torch")
            dev = self.lm.device
            try:
                with torch.inference_mode():
                    past = _cache_from(kv, have, 1) if kv is not None else None
                    _, cache = forward_logits(
                        self.lm.model,
                        1,
                        cache=past,
                        input_ids=torch.tensor([want[have:]], dtype=torch.long, device=dev),
                        position_ids=torch.arange(have, n, dtype=torch.long, device=dev).unsqueeze(0),
                        use_cache=True,
                    )
                kv = _cache_tensors(cache)
            except (AttributeError, TypeError, ValueError) as exc:  # a cache API this code does not know
                log.debug("prefix cache off for %s: %s", self.lm.name, exc)
                kv = None
            if kv is None:
                log.debug("prefix cache off for %s: not a full-attention dynamic cache", self.lm.name)
                self.prefix_cache = False
                self._shared = None
                return None
        self._shared = (tuple(want), kv)
        return n, kv

    def _score_long(self, it: _Item, results: list[Confidence]) -> None:
        """One continuation too long for its logits at once: chunks through the KV cache."""
        torch = require("torch")
        model, dev = self.lm.model, self.lm.device
        chunk = max(1, MAX_LOGIT_ELEMENTS // self._vocab_size())
        seq = list(it.context.ids) + list(it.target)
        first = len(it.context.ids) - 1  # position whose logits predict the first target
        lps: list[float] = []
        ents: list[float] = []
        past = None
        fed = 0
        with torch.inference_mode():
            while len(lps) < len(it.target):
                n = min(chunk, len(it.target) - len(lps))
                end = first + len(lps) + n  # feed positions [fed, end)
                inp = torch.tensor([seq[fed:end]], dtype=torch.long, device=dev)
                logits, past = forward_logits(model, n, cache=past, input_ids=inp, use_cache=True)
                tgt = torch.tensor(seq[first + len(lps) + 1 : end + 1], dtype=torch.long, device=dev)
                a, b = logprobs_entropies(logits[0], tgt)
                lps += a
                ents += b
                fed = end
        results[it.index] = self._confidence(it, lps, ents)

    def _confidence(self, it: _Item, lps: list[float], ents: list[float]) -> Confidence:
        texts = token_texts(self.lm.tokenizer, it.context.prefix_ids, it.target)
        return Confidence(
            tuple(
                TokenConfidence(t, int(i), float(lp), float(e))
                for t, i, lp, e in zip(texts, it.target, lps, ents)
            )
        )
