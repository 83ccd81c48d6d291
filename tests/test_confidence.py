"""ConfidenceScorer on the real default LM (SmolLM2-135M-Instruct), plus Confidence's rules."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest

from quco.errors import BadInputError
from quco.protocols import Scorer
from quco.types import Confidence, TokenConfidence

PROMPT = "What is the capital of France?"


def _tol() -> float:
    """1e-4 in float32 (CPU); the default half precision on CUDA rounds far more."""
    import torch

    return 1e-4 if not torch.cuda.is_available() else 0.1


pytestmark = pytest.mark.slow


def _manual(small_lm, prompt: str, continuation: str) -> tuple[list[int], list[float], list[float]]:
    """Token ids, logprobs and entropies by a plain full forward pass (no quco code)."""
    import torch

    tok = small_lm.tokenizer
    text = tok.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ctx = tok(text, add_special_tokens=False)["input_ids"]
    cont = tok(continuation, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = small_lm.model(torch.tensor([ctx + cont])).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    rows = lp[len(ctx) - 1 : len(ctx) + len(cont) - 1]
    chosen = rows.gather(-1, torch.tensor(cont).view(-1, 1)).squeeze(-1)
    ent = -(rows.exp() * rows).sum(-1)
    return cont, chosen.tolist(), ent.tolist()


def _close(a: Confidence, b: Confidence, tol: float | None = None) -> None:
    tol = _tol() if tol is None else tol
    assert [t.token_id for t in a.tokens] == [t.token_id for t in b.tokens]
    for x, y in zip(a.tokens, b.tokens):
        assert x.logprob == pytest.approx(y.logprob, abs=tol)
        assert x.entropy == pytest.approx(y.entropy, abs=tol)
        assert x.token == y.token


def test_scorer_satisfies_protocol(scorer):
    assert isinstance(scorer, Scorer)
    assert scorer.chat is True  # SmolLM2-Instruct has a chat template


def test_score_equals_manual_forward_pass(scorer, small_lm):
    cont = "The capital of France is Paris."
    conf = scorer.score(PROMPT, cont)
    ids, lps, ents = _manual(small_lm, PROMPT, cont)
    assert [t.token_id for t in conf.tokens] == ids
    assert [t.logprob for t in conf.tokens] == pytest.approx(lps, abs=_tol())
    assert [t.entropy for t in conf.tokens] == pytest.approx(ents, abs=_tol())
    assert "".join(t.token for t in conf.tokens) == cont
    assert conf.seq_logprob == pytest.approx(sum(lps), abs=1e-3)
    assert all(e >= 0 for e in ents)


def test_batched_equals_unbatched(small_lm):
    from quco.lm.confidence import ConfidenceScorer

    pairs = [
        (PROMPT, "Paris."),
        ("Name a large city in Germany and say why it is famous.", "Berlin is famous for its wall."),
        ("Hi", " hello there"),
        ("x", ""),
    ]
    one_by_one = [ConfidenceScorer(small_lm, batch_size=1).score(p, c) for p, c in pairs]
    batched = ConfidenceScorer(small_lm, batch_size=8).score_many(pairs)
    in_twos = ConfidenceScorer(small_lm, batch_size=2).score_many(pairs)
    assert len(batched) == len(pairs) and len(batched[3]) == 0
    for a, b, c in zip(one_by_one, batched, in_twos):
        _close(a, b)
        _close(a, c)


def test_long_continuation_is_scored_in_chunks(scorer, monkeypatch):
    import quco.lm.confidence as mod

    cont = "Paris is the capital and largest city of France, on the Seine."
    whole = scorer.score(PROMPT, cont)
    vocab = scorer._vocab_size()
    monkeypatch.setattr(mod, "MAX_LOGIT_ELEMENTS", vocab * 4)  # at most 4 positions' logits at once
    chunked = scorer.score(PROMPT, cont)
    assert len(whole) > 8
    _close(whole, chunked)


def test_flare_rule_on_real_scores(scorer):
    sure = scorer.score(PROMPT, "The capital of France is Paris.")
    absurd = scorer.score(PROMPT, "The capital of France is Kalamazoo.")
    # the absurd city has a token the model finds very unlikely; the true answer's is far likelier
    assert absurd.min_prob < 0.01
    assert absurd.flare_flag(0.4)
    assert any("Kal" in t.token for t in absurd.low_tokens(0.01))
    paris = next(t for t in sure.tokens if "Paris" in t.token)
    assert paris.prob > 0.4
    assert sure.mean_logprob > absurd.mean_logprob


def test_flare_rule_on_constructed_confidence():
    def conf(*probs: float) -> Confidence:
        return Confidence(tuple(TokenConfidence(f"t{i}", i, math.log(p), 0.1) for i, p in enumerate(probs)))

    assert conf(0.9, 0.8, 0.35).flare_flag(0.4)
    assert not conf(0.9, 0.8, 0.45).flare_flag(0.4)
    assert conf(0.9, 0.8, 0.45).flare_flag(0.5)
    assert conf(0.9, 0.2).min_prob == pytest.approx(0.2)


def test_empty_continuation_gives_empty_confidence(scorer):
    conf = scorer.score(PROMPT, "")
    assert len(conf) == 0
    assert math.isnan(conf.mean_logprob) and not conf.flare_flag()


def test_whitespace_continuation_is_scored(scorer):
    conf = scorer.score(PROMPT, "   ")
    assert len(conf) >= 1
    assert "".join(t.token for t in conf.tokens) == "   "
    assert all(t.logprob <= 0 and math.isfinite(t.logprob) for t in conf.tokens)


def test_empty_prompt_is_scored(scorer):
    conf = scorer.score("", "Hello.")
    assert len(conf) >= 2 and all(math.isfinite(t.logprob) for t in conf.tokens)


@pytest.mark.parametrize(
    "cont",
    ["La capitale de la France est Paris.", "Столица Франции — Париж.", "法国的首都是巴黎。", "Paris 🇫🇷!"],
)
def test_non_english_text(scorer, cont):
    conf = scorer.score(PROMPT, cont)
    assert len(conf) >= 3
    assert "".join(t.token for t in conf.tokens) == cont  # multi-byte characters split across tokens rejoin
    assert all(t.logprob <= 1e-6 and math.isfinite(t.logprob) and t.entropy >= -1e-6 for t in conf.tokens)


@pytest.mark.parametrize(
    "args",
    [(None, "x"), (PROMPT, None), (PROMPT, 5), (b"bytes", "x")],
)
def test_non_string_input_raises(scorer, args):
    with pytest.raises(BadInputError):
        scorer.score(*args)


def test_bad_pairs_raise(scorer):
    with pytest.raises(BadInputError):
        scorer.score_many("not pairs")  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        scorer.score_many([("only one",)])  # type: ignore[list-item]
    with pytest.raises(BadInputError):
        scorer.score_many([(PROMPT, "x")], prefixes=["a", "b"])


def test_prompt_beyond_context_is_cut_from_the_left(small_lm, caplog):
    """A 100k-character prompt against a 64-token context: the prompt's tail is kept, with a warning.

    A narrowed view of the loaded model stands in for the real 8192-token
    context (the same code path without a minute-long forward pass).
    """
    from quco.lm.confidence import ConfidenceScorer
    from quco.lm.prompting import encode_context

    lm = dataclasses.replace(small_lm, context_length=64)
    scorer = ConfidenceScorer(lm)
    prompt = ("The quick brown fox jumps over the lazy dog. " * 2300)[
        :100_000
    ] + "What is the capital of France?"
    cont = "Paris."
    with caplog.at_level(logging.WARNING, logger="quco.lm"):
        conf = scorer.score(prompt, cont)
    assert any("does not fit" in r.getMessage() for r in caplog.records)
    assert "".join(t.token for t in conf.tokens) == cont
    ctx = encode_context(lm, prompt, chat=True, reserve=len(conf))
    assert ctx.truncated and len(ctx.ids) + len(conf) <= 64
    text = small_lm.tokenizer.decode(list(ctx.ids))
    assert (
        text.startswith("<|im_start|>system") and "capital of France?<|im_end|>" in text
    )  # template kept whole
    # the result is the score of the kept context
    direct = scorer.score_tokens(prompt, [t.token_id for t in conf.tokens])
    _close(conf, direct)


def test_continuation_beyond_context_keeps_its_start(small_lm, caplog):
    from quco.lm.confidence import ConfidenceScorer

    lm = dataclasses.replace(small_lm, context_length=64)
    cont = "Paris is lovely in spring. " * 4000  # ~100k characters
    with caplog.at_level(logging.WARNING, logger="quco.lm"):
        conf = ConfidenceScorer(lm).score("Tell me about Paris.", cont)
    assert any("continuation" in r.getMessage() for r in caplog.records)
    assert 0 < len(conf) < 64
    assert cont.startswith("".join(t.token for t in conf.tokens))


# ---------------------------------------------------------------- prefix KV cache


def _fewshot_pairs() -> list[tuple[str, str]]:
    from quco.prompts import qa_prompt

    return [
        (qa_prompt("Who wrote Hamlet?"), "William Shakespeare wrote Hamlet."),
        (qa_prompt("What is the capital of Peru?"), "Lima"),
        (qa_prompt("Which band recorded Abbey Road, and where?"), "The Beatles, at EMI Studios in London."),
        (qa_prompt("x"), " y z"),
    ]


def _spy(monkeypatch, scorer) -> list[int]:
    """Counts the batches scored after a cached shared prefix (the shared length of each)."""
    calls: list[int] = []
    real = scorer._shared_prefix

    def wrapped(batch):
        shared = real(batch)
        if shared is not None:
            calls.append(shared[0])
        return shared

    monkeypatch.setattr(scorer, "_shared_prefix", wrapped)
    return calls


def test_prefix_cache_equals_plain_scoring(small_lm, monkeypatch):
    from quco.lm.confidence import MIN_SHARED_PREFIX, ConfidenceScorer

    pairs = _fewshot_pairs()
    plain = ConfidenceScorer(small_lm, prefix_cache=False)
    cached = ConfidenceScorer(small_lm, batch_size=3)
    calls = _spy(monkeypatch, cached)
    want = plain.score_many(pairs)
    batched = cached.score_many(pairs)
    one_by_one = [cached.score(p, c) for p, c in pairs]
    with_prefix = cached.score(pairs[0][0], " It was first staged", prefix="Shakespeare.")
    # the shared few-shot start is well past the threshold and every batch went through the cache
    assert len(calls) == 2 + len(pairs) + 1 and min(calls) >= 3 * MIN_SHARED_PREFIX
    assert cached._shared is not None and plain._shared is None
    for a, b, c in zip(want, batched, one_by_one):
        _close(a, b)
        _close(a, c)
    _close(plain.score(pairs[0][0], " It was first staged", prefix="Shakespeare."), with_prefix)
    # and against a full forward pass written without quco
    ids, lps, ents = _manual(small_lm, pairs[1][0], pairs[1][1])
    assert [t.token_id for t in batched[1].tokens] == ids
    assert [t.logprob for t in batched[1].tokens] == pytest.approx(lps, abs=_tol())
    assert [t.entropy for t in batched[1].tokens] == pytest.approx(ents, abs=_tol())


def test_prefix_cache_follows_changing_prompts(small_lm, monkeypatch):
    """A cache kept from one prompt family is cut back or rebuilt for the next, never reused wrongly."""
    from quco.lm.confidence import ConfidenceScorer

    fewshot = _fewshot_pairs()
    plain_prompts = [
        ("Name a large city in Germany and say why it is famous.", "Berlin is famous for its wall."),
        ("Name a large city in Germany and say why it is loved.", "Munich, for its beer gardens."),
    ]
    plain = ConfidenceScorer(small_lm, prefix_cache=False)
    cached = ConfidenceScorer(small_lm)
    calls = _spy(monkeypatch, cached)
    for pairs in (fewshot[:2], plain_prompts, fewshot[2:], plain_prompts[:1]):
        got = cached.score_many(pairs)
        for a, b in zip(plain.score_many(pairs), got):
            _close(a, b)
        assert cached._shared is not None
        shared_ids = cached._shared[0]
        ctx = cached._prepare(0, pairs[0][0], [1], "").context.ids
        assert ctx[: len(shared_ids)] == shared_ids  # the kept start is this call's
    assert len(calls) == 4


def test_prefix_cache_turns_off_for_other_cache_kinds(small_lm, monkeypatch):
    import quco.lm.confidence as mod

    pairs = _fewshot_pairs()[:2]
    want = mod.ConfidenceScorer(small_lm, prefix_cache=False).score_many(pairs)
    monkeypatch.setattr(mod, "_cache_tensors", lambda cache: None)  # e.g. a sliding-window model's cache
    scorer = mod.ConfidenceScorer(small_lm)
    got = scorer.score_many(pairs)
    assert scorer.prefix_cache is False and scorer._shared is None
    for a, b in zip(want, got):
        _close(a, b)


def test_prefix_cache_is_safe_across_threads(small_lm):
    """Threads scoring different prompt families through one scorer (as LangChain's batch does) get plain figures."""
    from concurrent.futures import ThreadPoolExecutor

    from quco.lm.confidence import ConfidenceScorer

    families = [_fewshot_pairs()[:2], [(PROMPT, "Paris."), ("Hi", " hello there")], _fewshot_pairs()[2:]]
    plain = ConfidenceScorer(small_lm, prefix_cache=False)
    want = [plain.score_many(f) for f in families]
    shared = ConfidenceScorer(small_lm)
    with ThreadPoolExecutor(3) as pool:
        got = list(pool.map(shared.score_many, families * 2))
    for w, g in zip(want * 2, got):
        for a, b in zip(w, g):
            _close(a, b)
