"""Property test of the guard's question input (quco.Guard.answer), with the fakes of quco.testing.

Invariant, for any question (any Unicode, control characters, lone surrogates,
very long, blank, or not a string at all) under every policy:

- either a GuardResult whose question is the stripped question (cut to
  MAX_QUESTION_CHARS and marked ``truncated``), whose answer is a string, and whose
  whole trace is writable as UTF-8 JSON;
- or a BadInputError (a QucoError, one clear line) when the question is not a
  string, is blank, or is not valid Unicode;
- never another exception.

Unit level: fakes for the generator, extractor, corpus and retriever (the real
components are exercised by tests/test_guard_e2e.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quco.errors import BadInputError
from quco.guard import MAX_QUESTION_CHARS, Guard
from quco.testing import FakeCorpus, FakeExtractor, FakeRetriever
from quco.types import Confidence, Generation, TokenConfidence

DOCS = [
    "Paris is the capital of France. Paris has the Eiffel Tower.",
    "Zorblax Quint was a painter from Vienna.",
]


class EchoGenerator:
    """Answers with a sentence that repeats the start of the question (so its text reaches stage 2)."""

    name = "echo"

    def generate(
        self, prompt: str, *, prefix: str = "", max_new_tokens: int = 64, stop: Sequence[str] = (), sentence: bool = False
    ) -> Generation:
        if prefix:
            return Generation("", Confidence(()), "eos")
        q = prompt.rsplit("Question:", 1)[-1][:80].strip()
        text = f"It is {q} in Paris."
        words = text.split(" ")
        toks = tuple(TokenConfidence((" " if i else "") + w, i, -0.5 * (i % 3), 0.2) for i, w in enumerate(words))
        return Generation(text, Confidence(toks[:max_new_tokens]), "eos")


any_text = st.text(alphabet=st.characters(codec=None, categories=None), max_size=200)
long_text = st.integers(MAX_QUESTION_CHARS - 5, MAX_QUESTION_CHARS + 400).map(lambda n: ("Who is Zorblax Quint " * 200)[:n])


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    question=st.one_of(any_text, long_text, st.none(), st.integers(), st.binary(max_size=10), st.lists(st.text(), max_size=2)),
    policy=st.sampled_from(["none", "single", "flare", "quco"]),
)
@example(question="   \n\t  ", policy="quco")
@example(question="Who painted \ud800 the Louvre?", policy="quco")  # a lone surrogate (e.g. from argv bytes)
@example(question="\x00\x1b[2J Who is Zorblax Quint?", policy="flare")
@example(question="Paris " * 1000, policy="quco")
def test_any_question_gives_an_answer_or_a_clear_bad_input_error(question, policy) -> None:
    guard = Guard(EchoGenerator(), FakeExtractor(), FakeCorpus(DOCS * 50), FakeRetriever(DOCS), policy=policy)
    try:
        result = guard.answer(question)
    except BadInputError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        assert (
            not isinstance(question, str)
            or not question.strip()
            or any(0xD800 <= ord(c) <= 0xDFFF for c in question)
        ), msg
        return
    assert isinstance(question, str)
    stripped = question.strip()
    assert isinstance(result.answer, str)
    assert result.truncated == (len(stripped) > MAX_QUESTION_CHARS)
    if result.truncated:
        assert len(result.question) <= MAX_QUESTION_CHARS and stripped.startswith(result.question)
    else:
        assert result.question == stripped
    json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")
