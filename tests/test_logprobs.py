"""Token logprobs read off the wire (OpenAI chat, legacy completions, llama.cpp native) and split
along an answer's sentences."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from quco.errors import BadInputError
from quco.integrations.logprobs import MIN_LOGPROB, confidence_from_logprobs, has_logprobs, split_confidence
from quco.nlp.sentences import sentence_spans
from quco.types import Confidence, TokenConfidence

LN = math.log


def test_chat_shape_with_alternatives_gives_logprobs_and_entropy() -> None:
    # a position whose alternatives make the whole distribution: the entropy is exact
    lp = {"content": [
        {"token": "Paris", "logprob": LN(0.5), "bytes": None,
         "top_logprobs": [{"token": "Paris", "logprob": LN(0.5)}, {"token": "Lyon", "logprob": LN(0.25)}, {"token": "Nice", "logprob": LN(0.25)}]},
        {"token": ".", "logprob": LN(0.9), "bytes": None, "top_logprobs": [{"token": ".", "logprob": LN(0.9)}]},
    ], "refusal": None}  # fmt: skip
    c = confidence_from_logprobs(lp)
    assert [t.token for t in c.tokens] == ["Paris", "."] and c.tokens[0].token_id == -1
    assert c.tokens[0].logprob == pytest.approx(LN(0.5))
    assert c.tokens[0].entropy == pytest.approx(1.5 * LN(2))
    # 0.9 seen, 0.1 left as one outcome: the binary entropy, a lower bound of the true one
    assert c.tokens[1].entropy == pytest.approx(-(0.9 * LN(0.9) + 0.1 * LN(0.1)))
    assert confidence_from_logprobs(lp["content"]) == c  # the bare list too
    assert has_logprobs(lp) and has_logprobs(lp["content"]) and not has_logprobs({"content": None})


def test_without_alternatives_every_entropy_is_nan() -> None:
    lp = {"content": [{"token": "a", "logprob": -0.1, "top_logprobs": []},
                      {"token": "b", "logprob": -0.2, "top_logprobs": [{"token": "b", "logprob": -0.2}]}]}  # fmt: skip
    c = confidence_from_logprobs(lp)
    assert all(math.isnan(t.entropy) for t in c.tokens) and math.isnan(c.max_entropy)
    assert c.mean_logprob == pytest.approx(-0.15)


def test_completions_shape_and_echoed_prompt() -> None:
    lp = {"tokens": ["Q", " Paris", "."], "token_logprobs": [None, -0.26, -0.39],
          "top_logprobs": [None, {" Paris": -0.26, " the": -2.8}, {".": -0.39, ",": -1.6}], "text_offset": [0, 1, 7]}  # fmt: skip
    c = confidence_from_logprobs(lp)
    assert [t.token for t in c.tokens] == [" Paris", "."] and c.tokens[0].logprob == -0.26
    assert c.tokens[0].entropy > 0 and not math.isnan(c.max_entropy)
    with pytest.raises(BadInputError):
        confidence_from_logprobs({"tokens": ["a", "b"], "token_logprobs": [-1.0]})


def test_llama_cpp_native_shapes() -> None:
    old = [{"content": " Paris", "probs": [{"tok_str": " Paris", "prob": 0.8}, {"tok_str": " Lyon", "prob": 0.2}]}]
    c = confidence_from_logprobs(old)
    assert c.tokens[0].logprob == pytest.approx(LN(0.8)) and c.tokens[0].entropy == pytest.approx(-(0.8 * LN(0.8) + 0.2 * LN(0.2)))
    new = [{"id": 5, "token": " Paris", "logprob": -0.2, "bytes": [32], "top_logprobs": [{"id": 5, "token": " Paris", "logprob": -0.2}]}]
    assert confidence_from_logprobs(new).tokens[0].logprob == -0.2
    with pytest.raises(BadInputError):
        confidence_from_logprobs([{"content": " Rome", "probs": [{"tok_str": " Paris", "prob": 0.8}]}])


def test_odd_values() -> None:
    c = confidence_from_logprobs({"content": [{"token": "x", "logprob": float("-inf")}, {"token": "y", "logprob": 0.0001}]})
    assert c.tokens[0].logprob == MIN_LOGPROB and c.tokens[1].logprob == 0.0  # clamped to [MIN, 0]
    assert len(confidence_from_logprobs(None)) == 0 and len(confidence_from_logprobs({})) == 0
    for bad in ({"content": [{"token": "x", "logprob": "high"}]}, {"content": [{"token": "x", "logprob": float("nan")}]},
                {"content": [{"token": "x"}]}, {"content": ["x"]}, {"weird": 1}, "text", 3):  # fmt: skip
        with pytest.raises(BadInputError):
            confidence_from_logprobs(bad)


def conf(tokens: list[str]) -> Confidence:
    return Confidence(tuple(TokenConfidence(t, i, -0.1 * (i + 1), 0.0) for i, t in enumerate(tokens)))


def test_split_along_sentences() -> None:
    text = "Paris is in France. Vienna is in Austria."
    c = conf(["Paris", " is", " in", " France", ".", " Vienna", " is", " in", " Austria", "."])
    parts = split_confidence(c, text, sentence_spans(text))
    assert ["".join(t.token for t in p.tokens) for p in parts] == ["Paris is in France.", " Vienna is in Austria."]
    # a chat answer whose text lost the tokens' leading space
    c = conf([" Paris", " is", ".", " Rome", "."])
    parts = split_confidence(c, "Paris is. Rome.", sentence_spans("Paris is. Rome."))
    assert [len(p) for p in parts] == [3, 2]
    # tokens that no longer match the text (it was edited) are left out, the rest placed by search
    parts = split_confidence(conf(["Par", "is", " xyz", ".", " Rome", "."]), "Paris. Rome.", sentence_spans("Paris. Rome."))
    assert [t.token for t in parts[1].tokens] == [" Rome", "."] and " xyz" not in [t.token for p in parts for t in p.tokens]


@given(st.lists(st.sampled_from(["Paris", " is", " big", ".", " The", " U.S.", " city", "!", "\n", " ", "Rome", "?"]), max_size=30))
def test_split_places_every_visible_token_once(tokens: list[str]) -> None:
    """Invariant: when the tokens make the text, every token with visible characters lands in
    exactly one sentence, in order; whitespace-only tokens in none."""
    text = "".join(tokens)
    spans = sentence_spans(text)
    parts = split_confidence(conf(tokens), text, spans)
    assert len(parts) == len(spans)
    placed = [t.token_id for p in parts for t in p.tokens]
    assert placed == [i for i, t in enumerate(tokens) if t.strip()]
