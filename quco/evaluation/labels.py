"""Labels for the ``self`` protocol: is the model's own short answer wrong?

Normalization follows SQuAD's evaluation script: lower-case, drop punctuation,
drop the articles a/an/the, collapse white space.

**The rule** (:func:`self_label`): an answer is *correct* (label 0) when

1. the normalized gold answer (non-empty) occurs in the normalized answer as a
   whole-token span ("paris" in "paris france"), or
2. the token F1 between answer and gold is at least :data:`F1_THRESHOLD` (0.5);

otherwise it is *wrong* (label 1 = hallucinated). An empty answer is wrong.
The reverse containment (answer inside gold) is not a rule of its own: a
one-token answer inside a long gold answer ("John" for "John Smith") is
correct only when it reaches F1 0.5, which needs it to cover most of the gold.

Comparison questions ("Which is older, A or B?") name their gold answer in
the question, so a model that repeats the question contains the gold answer
and is marked correct: :func:`is_comparison` flags them and the evaluation
reports them separately.

Measured error (``eval/labels_handcheck.jsonl``): on 60 answers of
SmolLM2-135M-Instruct to HaluEval QA rows 0–49 (both conditions), judged by
hand, the rule disagreed 3 times (5%; 2 of 53 outside comparison questions,
3.8%): one comparison answer that names both candidates without choosing
(rule too lenient) and two correct answers under an alias or paraphrase
("El-P" for Jaime Meline, "filmmakers" for director; rule too strict).
"""

from __future__ import annotations

import re
import string
from collections import Counter

#: token F1 at or above which an answer counts as correct
F1_THRESHOLD = 0.5

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014"}


def normalize_answer(text: str) -> str:
    """SQuAD-style normalization: lower-case, no punctuation, no articles, single spaces."""
    s = text.lower()
    s = "".join(" " if ch in _PUNCT else ch for ch in s)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def token_f1(answer: str, gold: str) -> float:
    """SQuAD token F1 between two answers after normalization (0.0 when either is empty)."""
    a, g = _tokens(answer), _tokens(gold)
    if not a or not g:
        return 0.0
    common = Counter(a) & Counter(g)
    same = sum(common.values())
    if same == 0:
        return 0.0
    p = same / len(a)
    r = same / len(g)
    return 2 * p * r / (p + r)


def contains(haystack: str, needle: str) -> bool:
    """Whether normalized ``needle`` (non-empty) occurs in normalized ``haystack`` as whole tokens."""
    n = normalize_answer(needle)
    h = normalize_answer(haystack)
    return bool(n) and f" {n} " in f" {h} "


def is_correct(answer: str, gold: str) -> bool:
    """The rule of this module: gold contained in the answer, or token F1 >= 0.5."""
    if not normalize_answer(answer):
        return False
    return contains(answer, gold) or token_f1(answer, gold) >= F1_THRESHOLD


def self_label(answer: str, gold: str) -> int:
    """1 when ``answer`` is wrong against ``gold`` (hallucinated), else 0."""
    return 0 if is_correct(answer, gold) else 1


def is_comparison(question: str, gold: str) -> bool:
    """True when the question names its own gold answer (an "A or B?" question).

    Flagged when the normalized gold occurs in the question, or when the
    question offers alternatives (" or ") and at least two thirds of the gold's
    tokens occur in it ("Sir Francis Nethersole" for "... Francis Nethersole
    or Elizabeth Stuart?"). Yes/no golds are not comparisons. A gold that the
    question names makes containment labels unreliable.
    """
    if contains(question, gold):
        return True
    q = normalize_answer(question).split()
    g = normalize_answer(gold).split()
    if "or" not in q or not g:
        return False
    qs = set(q)
    return sum(t in qs for t in g) >= 2 * len(g) / 3
