"""Prompts shared by the guard and the benchmarks.

Small instruction models ignore "answer briefly" and run to the token cap;
few-shot examples of short answers fix most of that. The examples are written
here by hand (not taken from HaluEval) so that no evaluation row leaks into a
prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

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
