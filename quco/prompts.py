"""Prompts shared by the guard and the benchmarks, and the final answer of a reply.

Two answer formats (:data:`PROMPTS`):

- ``short``: one short phrase ("Paris"). Small instruction models ignore
  "answer briefly" and run to the token cap; few-shot examples of short
  answers fix most of that.
- ``cot``: reasoning, as QuCo-RAG's generator writes it: one fact per
  sentence, names instead of pronouns, ending "So the answer is X." Stage 2
  exists to check the intermediate facts.

Every few-shot example is written here by hand (not taken from HaluEval; a
test checks that no example question is a HaluEval question) so that no
evaluation row leaks into a prompt.

:func:`final_answer` takes the answer a reply gives: the text after the last
"the answer is", else its last sentence. Both prompts are scored on it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from quco.errors import BadInputError
from quco.nlp.sentences import sentence_spans

#: answer formats: a short phrase, or step-by-step reasoning ending "So the answer is X."
PROMPTS: tuple[str, ...] = ("short", "cot")

FEW_SHOT: tuple[tuple[str, str, str], ...] = (
    # (evidence, question, short answer)
    (
        "The Eiffel Tower is a wrought-iron lattice tower in Paris, France, completed in 1889.",
        "In which city is the Eiffel Tower?",
        "Paris",
    ),
    (
        "Pride and Prejudice is an 1813 novel by Jane Austen. Emma is an 1815 novel by Jane Austen.",
        "Which novel was published first, Pride and Prejudice or Emma?",
        "Pride and Prejudice",
    ),
    (
        "Marie Curie was a Polish and naturalised-French physicist who won Nobel Prizes in Physics and Chemistry.",
        "What nationality was Marie Curie by birth?",
        "Polish",
    ),
)

INSTRUCTION = "Answer the question with a short phrase (a name, a date, a number, or yes/no). Do not explain."


def qa_prompt(question: str, evidence: Sequence[str] = (), *, few_shot: bool = True) -> str:
    """A short-answer prompt, closed-book or with evidence passages.

    Args:
        question: the user's question.
        evidence: passages to answer from; empty for closed-book.
        few_shot: include the hand-written short-answer examples.

    Returns:
        The prompt text (a user turn; generators apply the chat template).
    """
    parts = [INSTRUCTION, ""]
    if few_shot:
        for ev, q, a in FEW_SHOT:
            if evidence:
                parts.append(f"Evidence: {ev}")
            parts.append(f"Question: {q}\nAnswer: {a}\n")
    if evidence:
        for i, ev in enumerate(evidence, 1):
            parts.append(f"Evidence [{i}]: {' '.join(ev.split())}")
    parts.append(f"Question: {question.strip()}\nAnswer:")
    return "\n".join(parts)


def rewrite_prompt(question: str, evidence: Sequence[str], draft: str, prefix: str = "") -> str:
    """Prompt to rewrite a risky sentence with retrieved evidence (the guard's stage-2 rewrite)."""
    ev = "\n".join(f"Evidence [{i}]: {' '.join(e.split())}" for i, e in enumerate(evidence, 1))
    return (
        f"{INSTRUCTION}\n\n{ev}\n\nQuestion: {question.strip()}\n"
        + (f"Answer so far: {prefix.strip()}\n" if prefix.strip() else "")
        + f"A draft of the next sentence may be wrong: {draft.strip()}\n"
        + "Using the evidence, answer:"
    )


COT_FEW_SHOT: tuple[tuple[str, str, str], ...] = (
    # (evidence, question, reasoning ending "So the answer is X.")
    (
        "Budapest is the capital and largest city of Hungary. The Danube flows through the centre of Budapest.",
        "Which river runs through the capital of Hungary?",
        "The capital of Hungary is Budapest. The Danube flows through Budapest. So the answer is the Danube.",
    ),
    (
        "Jane Austen (born 16 December 1775) was an English novelist. "
        "Charles Dickens (born 7 February 1812) was an English writer.",
        "Who was born first, Jane Austen or Charles Dickens?",
        "Jane Austen was born in 1775. Charles Dickens was born in 1812. So the answer is Jane Austen.",
    ),
    (
        "Johannes Gutenberg introduced printing with movable type to Europe. "
        "Gutenberg was born in Mainz, a city in Germany.",
        "In which country was the man who introduced movable-type printing to Europe born?",
        "Johannes Gutenberg introduced movable-type printing to Europe. Johannes Gutenberg was born in Mainz. "
        "Mainz is in Germany. So the answer is Germany.",
    ),
)

COT_INSTRUCTION = (
    "Answer the question step by step. Write one fact per sentence. Use names, not pronouns "
    '(he, she, it, his, her, its). End with "So the answer is" and a short answer.'
)


def cot_prompt(question: str, evidence: Sequence[str] = (), *, few_shot: bool = True) -> str:
    """A chain-of-thought prompt (one fact per sentence, ending "So the answer is X."), closed-book or with evidence.

    Args:
        question: the user's question.
        evidence: passages to answer from; empty for closed-book.
        few_shot: include the hand-written reasoning examples.

    Returns:
        The prompt text (a user turn; generators apply the chat template).
    """
    parts = [COT_INSTRUCTION, ""]
    if few_shot:
        for ev, q, a in COT_FEW_SHOT:
            if evidence:
                parts.append(f"Evidence: {ev}")
            parts.append(f"Question: {q}\nAnswer: {a}\n")
    if evidence:
        for i, ev in enumerate(evidence, 1):
            parts.append(f"Evidence [{i}]: {' '.join(ev.split())}")
    parts.append(f"Question: {question.strip()}\nAnswer:")
    return "\n".join(parts)


def make_prompt(style: str, question: str, evidence: Sequence[str] = (), *, few_shot: bool = True) -> str:
    """The ``style`` prompt (``"short"``: :func:`qa_prompt`; ``"cot"``: :func:`cot_prompt`).

    Raises:
        BadInputError: an unknown style.
    """
    if style == "short":
        return qa_prompt(question, evidence, few_shot=few_shot)
    if style == "cot":
        return cot_prompt(question, evidence, few_shot=few_shot)
    raise BadInputError(f"unknown prompt {style!r}: choose one of {', '.join(PROMPTS)}")


#: where a reply states its answer ("the answer is", "the answer to this question is:", "the answer:")
ANSWER_IS = re.compile(
    r"\bthe\s+answer(?:\s+to\s+[^.:?!]{1,40}?)?(?:\s+(?:is|was|would be)\b\s*:?|\s*:)\s*", re.IGNORECASE
)


def final_answer(text: str) -> str:
    """The answer a reply gives: what follows the last "the answer is" (to the end of that sentence), else its last sentence.

    "The answer to this question is: X" and "The answer: X" count as "the answer is".

    Trailing sentence punctuation is dropped ("So the answer is Paris." → "Paris").

    Args:
        text: the whole reply.

    Returns:
        The final answer ("" for an empty reply).
    """
    hits = list(ANSWER_IS.finditer(text))
    if hits:
        rest = text[hits[-1].end() :]
        spans = sentence_spans(rest)
        ans = rest[spans[0][0] : spans[0][1]] if spans else rest
    else:
        spans = sentence_spans(text)
        ans = text[spans[-1][0] : spans[-1][1]] if spans else text
    ans = ans.strip()
    while ans and ans[-1] in ".!?;:,":
        ans = ans[:-1].rstrip()
    return ans
