"""HFGenerator on the real default LM: its confidences are the scorer's; stops, sentences, prefixes."""

from __future__ import annotations

import dataclasses
import logging
import math

import pytest

from quco.errors import BadInputError
from quco.lm.generator import sentence_end
from quco.protocols import Generator

PROMPT = "What is the capital of France?"


def _tol() -> float:
    """1e-4 in float32 (CPU); the default half precision on CUDA rounds far more."""
    import torch

    return 1e-4 if not torch.cuda.is_available() else 0.1


def _same_logprobs(gen_conf, score_conf) -> None:
    assert [t.token_id for t in gen_conf.tokens] == [t.token_id for t in score_conf.tokens]
    for g, s in zip(gen_conf.tokens, score_conf.tokens):
        assert g.logprob == pytest.approx(s.logprob, abs=_tol())
        assert g.entropy == pytest.approx(s.entropy, abs=_tol())
        assert g.token == s.token


# ---------------------------------------------------------------- sentence_end (no model)


@pytest.mark.parametrize(
    ("text", "end"),
    [
        ("Paris is big. It is old", 13),
        ("The U.S. is large. Next", 18),
        ("Pi is about 3.14 here. More", 22),
        ("Dr. Smith came home. Then", 20),
        ("John F. Kennedy was president! He", 30),
        ("Is it? Yes", 6),
        ('He said "stop." Then', 15),
        ("Answer: Paris\nQuestion", 13),
        ("\n\nParis is big. It", 15),
        ("e.g. apples are fruit. So", 22),
        ("no end yet", None),
        ("It ends here.", None),  # needs the following whitespace (or the end of generation)
        ("Version 3.5", None),
        ("   ", None),
    ],
)
def test_sentence_end(text, end):
    assert sentence_end(text) == end


# ---------------------------------------------------------------- real model


@pytest.mark.slow
def test_generator_satisfies_protocol(generator):
    assert isinstance(generator, Generator)
    assert generator.name == "smollm2-135m-instruct"


@pytest.mark.slow
def test_generation_logprobs_equal_scores(generator, scorer):
    gen = generator.generate(PROMPT, max_new_tokens=16)
    assert gen.text and len(gen.confidence) > 0
    assert gen.finish_reason in {"eos", "length"}
    ids = [t.token_id for t in gen.confidence.tokens]
    _same_logprobs(gen.confidence, scorer.score_tokens(PROMPT, ids))
    # re-tokenizing the text gives the same ids here, so scoring the text agrees as well
    _same_logprobs(gen.confidence, scorer.score(PROMPT, gen.text))
    assert "".join(t.token for t in gen.confidence.tokens) == gen.text
    assert all(math.isfinite(t.logprob) and t.logprob <= 0 for t in gen.confidence.tokens)


@pytest.mark.slow
def test_greedy_is_deterministic(generator):
    a = generator.generate(PROMPT, max_new_tokens=8)
    b = generator.generate(PROMPT, max_new_tokens=8)
    assert a.text == b.text and a.confidence == b.confidence


@pytest.mark.slow
def test_prompt_tokens_counts_the_template(generator, small_lm):
    from quco.lm.prompting import template_ids

    gen = generator.generate(PROMPT, max_new_tokens=1)
    assert gen.prompt_tokens == len(template_ids(small_lm, PROMPT, chat=True))
    assert gen.finish_reason == "length" and len(gen.confidence) == 1


@pytest.mark.slow
def test_seeded_sampling_is_reproducible_and_scored(small_lm, scorer):
    from quco.lm.generator import HFGenerator

    a = HFGenerator(small_lm, temperature=1.0, seed=7).generate(PROMPT, max_new_tokens=10)
    b = HFGenerator(small_lm, temperature=1.0, seed=7).generate(PROMPT, max_new_tokens=10)
    assert a.text == b.text
    # logprobs are the model's untempered ones, like the scorer's
    _same_logprobs(a.confidence, scorer.score_tokens(PROMPT, [t.token_id for t in a.confidence.tokens]))


@pytest.mark.slow
def test_stop_string_truncates_text_and_tokens(generator):
    full = generator.generate(PROMPT, max_new_tokens=12)
    assert " is" in full.text
    gen = generator.generate(PROMPT, max_new_tokens=12, stop=[" is"])
    assert gen.finish_reason == "stop"
    assert gen.text == full.text[: full.text.index(" is")]
    assert "".join(t.token for t in gen.confidence.tokens) == gen.text
    assert gen.confidence.tokens == full.confidence.tokens[: len(gen.confidence)]


@pytest.mark.slow
def test_sentence_mode_stops_after_one_sentence(generator, scorer):
    prompt = "Describe Paris in three short sentences."
    gen = generator.generate(prompt, max_new_tokens=48, sentence=True)
    assert gen.finish_reason in {"stop", "eos"}
    assert gen.text.rstrip()[-1] in ".!?"
    assert sentence_end(gen.text + " Next") == len(gen.text)
    assert "".join(t.token for t in gen.confidence.tokens) == gen.text
    _same_logprobs(gen.confidence, scorer.score_tokens(prompt, [t.token_id for t in gen.confidence.tokens]))


@pytest.mark.slow
def test_prefix_is_continued(generator, scorer):
    prefix = "The capital of France is"
    gen = generator.generate(PROMPT, prefix=prefix, max_new_tokens=6)
    assert gen.text.startswith(" ")  # continues the prefix's last word
    assert "Paris" in gen.text
    ids = [t.token_id for t in gen.confidence.tokens]
    _same_logprobs(gen.confidence, scorer.score_tokens(PROMPT, ids, prefix=prefix))
    plain = generator.generate(PROMPT, max_new_tokens=1)
    assert gen.prompt_tokens > plain.prompt_tokens


@pytest.mark.slow
def test_zero_new_tokens(generator):
    gen = generator.generate(PROMPT, max_new_tokens=0)
    assert gen.text == "" and len(gen.confidence) == 0 and gen.finish_reason == "length"


@pytest.mark.slow
@pytest.mark.parametrize("prompt", ["", "   ", "Quelle est la capitale de la France ?", "法国的首都是哪里？"])
def test_odd_prompts_generate(generator, scorer, prompt):
    gen = generator.generate(prompt, max_new_tokens=4)
    assert len(gen.confidence) >= 1
    _same_logprobs(gen.confidence, scorer.score_tokens(prompt, [t.token_id for t in gen.confidence.tokens]))


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": None},
        {"prompt": PROMPT, "prefix": 3},
        {"prompt": PROMPT, "max_new_tokens": -1},
        {"prompt": PROMPT, "stop": [None]},
    ],
)
def test_bad_input_raises(generator, kwargs):
    prompt = kwargs.pop("prompt")
    with pytest.raises(BadInputError):
        generator.generate(prompt, **kwargs)


@pytest.mark.slow
def test_long_prompt_is_cut_from_the_left(small_lm, caplog):
    """100k characters against a 96-token context (a narrowed view of the real model)."""
    from quco.lm.generator import HFGenerator

    lm = dataclasses.replace(small_lm, context_length=96)
    prompt = ("Lorem ipsum dolor sit amet. " * 3600)[:100_000] + " What is the capital of France?"
    with caplog.at_level(logging.WARNING, logger="quco.lm"):
        gen = HFGenerator(lm).generate(prompt, max_new_tokens=8)
    assert any("does not fit" in r.getMessage() for r in caplog.records)
    assert gen.prompt_tokens + 8 <= 96
    assert len(gen.confidence) >= 1


# ---------------------------------------------------------------- prefix KV cache


def _answer_like_the_guard(gen) -> list[list[int]]:
    """Token ids of each call of a guard-like loop: sentence by sentence, the prompt changing once (a rewrite)."""
    from quco.prompts import qa_prompt

    prompt = qa_prompt("Who wrote Pride and Prejudice? Explain.")
    answer, out = "", []
    for i in range(3):
        g = gen.generate(prompt, prefix=answer, max_new_tokens=10, stop=("\n",), sentence=True)
        out.append([t.token_id for t in g.confidence.tokens] + [hash(g.finish_reason)])
        answer = f"{answer} {g.text.strip() or 'Jane Austen wrote it.'}".strip()
        if i == 1:
            prompt = qa_prompt("Who wrote Pride and Prejudice? Explain.", ["Pride and Prejudice is an 1813 novel by Jane Austen."])
    # the same context again, and a context that is a prefix of the cached one
    out.append([t.token_id for t in gen.generate(prompt, prefix=answer, max_new_tokens=6).confidence.tokens])
    out.append([t.token_id for t in gen.generate(prompt, max_new_tokens=6).confidence.tokens])
    return out


@pytest.mark.slow
def test_prefix_cache_gives_the_same_tokens_as_reading_everything(small_lm, monkeypatch):
    from quco.lm import generator as gmod
    from quco.lm.generator import HFGenerator

    plain = HFGenerator(small_lm, prefix_cache=False)
    cached = HFGenerator(small_lm)
    want = _answer_like_the_guard(plain)
    assert _answer_like_the_guard(cached) == want
    st, sp = cached.cache_stats, plain.cache_stats
    assert st.context_tokens == sp.context_tokens and sp.fed_tokens == sp.context_tokens
    assert st.fed_tokens < 0.5 * st.context_tokens  # most of each context came from the cache
    # a cache that cannot be cropped (Gemma 3's sliding-window layers) is only ever extended
    monkeypatch.setattr(gmod, "_cache_tensors", lambda cache: None)
    extend_only = HFGenerator(small_lm)
    assert _answer_like_the_guard(extend_only) == want
    assert st.fed_tokens < extend_only.cache_stats.fed_tokens < extend_only.cache_stats.context_tokens
