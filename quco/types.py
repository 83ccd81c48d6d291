"""Typed value objects that flow between quco's components.

All are frozen dataclasses; none is a dict keyed by strings. Each has a
``to_dict`` for JSON output (CLI ``--json``, traces, audits).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Count:
    """A corpus count.

    Attributes:
        value: the count (occurrences for a term; documents or occurrence pairs
            for a co-occurrence, depending on the mode).
        approx: True when the figure is an estimate (sampled beyond the
            occurrence cap, or reported approximate by a remote engine).
    """

    value: int
    approx: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"count": int(self.value), "approx": bool(self.approx)}


@dataclass(frozen=True)
class Entity:
    """An entity found in a text.

    Attributes:
        text: the normalized form used for corpus lookups (leading "the",
            possessive "'s", quotes and trailing punctuation removed).
        surface: the text exactly as it appears.
        label: spaCy entity label (``PERSON``, ``GPE``...) or ``PROPN`` for a
            proper-noun noun chunk found by the fallback.
        start: character offset of ``surface`` in the source text.
        end: character offset just past ``surface``.
        source: ``"ner"`` or ``"noun_chunk"``.
    """

    text: str
    surface: str
    label: str
    start: int = 0
    end: int = 0
    source: str = "ner"

    @property
    def key(self) -> str:
        """Case-folded lookup form, used to compare entities lexically."""
        return self.text.casefold()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Pair:
    """A (head, tail) entity pair whose co-occurrence QuCo checks."""

    head: Entity
    tail: Entity

    def to_dict(self) -> dict[str, Any]:
        return {"head": self.head.text, "tail": self.tail.text}


@dataclass(frozen=True)
class Claim:
    """A claim a sentence makes: a (head, relation, tail) triplet, or a (head, relation) tuple.

    QuCo's stage 2 checks a triplet by the co-occurrence of its head and tail
    in the corpus, and a tuple (a relation stated without a tail entity) by the
    frequency of its head. Its retrieval query is ``head ⊕ relation``
    (:attr:`query`), never the tail: the tail is what may be hallucinated.

    Attributes:
        head: the entity the claim is about (offsets in the sentence; in the
            question for ``source="answer_span"``).
        relation: the relation as words of the sentence ("born in", "directed
            by", "husband"), lower-case.
        tail: the entity (or date or number) the relation links the head to;
            ``None`` for a tuple.
        start: offset of the relation's first word in the sentence.
        end: offset just past its last word.
        source: ``"sentence"`` (stated by the sentence), ``"answer_span"``
            (a bare answer span completing the question's own (head,
            relation)), or the name of a model extractor.
    """

    head: Entity
    relation: str
    tail: Entity | None = None
    start: int = 0
    end: int = 0
    source: str = "sentence"

    @property
    def is_triplet(self) -> bool:
        return self.tail is not None

    @property
    def query(self) -> str:
        """The stage-2 retrieval query: ``head ⊕ relation`` (never the tail)."""
        return f"{self.head.text} {self.relation}".strip()

    def describe(self) -> str:
        """``'X' —born in→ 'Y'`` (a tuple: ``'X' —born in→ ?``)."""
        tail = f"'{self.tail.text}'" if self.tail is not None else "?"
        return f"'{self.head.text}' \u2014{self.relation}\u2192 {tail}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "head": self.head.text,
            "relation": self.relation,
            "tail": self.tail.text if self.tail is not None else None,
            "head_span": [self.head.start, self.head.end],
            "tail_span": [self.tail.start, self.tail.end] if self.tail is not None else None,
            "relation_span": [self.start, self.end],
            "tail_label": self.tail.label if self.tail is not None else None,
            "source": self.source,
        }


@dataclass(frozen=True)
class TokenConfidence:
    """One generated or scored token with the model's confidence in it.

    Attributes:
        token: the token's text.
        token_id: the tokenizer id.
        logprob: natural-log probability the model gave this token.
        entropy: entropy (nats) of the model's next-token distribution here.
    """

    token: str
    token_id: int
    logprob: float
    entropy: float

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)


@dataclass(frozen=True)
class Confidence:
    """A sequence of token confidences with the aggregates quco uses.

    Higher ``mean_logprob``/``min_prob``/``seq_logprob`` mean more confident;
    higher ``max_entropy`` means less. An empty sequence has NaN aggregates.
    """

    tokens: tuple[TokenConfidence, ...] = ()

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def seq_logprob(self) -> float:
        return float(sum(t.logprob for t in self.tokens)) if self.tokens else math.nan

    @property
    def mean_logprob(self) -> float:
        return self.seq_logprob / len(self.tokens) if self.tokens else math.nan

    @property
    def min_prob(self) -> float:
        return min(t.prob for t in self.tokens) if self.tokens else math.nan

    @property
    def max_entropy(self) -> float:
        return max(t.entropy for t in self.tokens) if self.tokens else math.nan

    def flare_flag(self, theta: float = 0.4) -> bool:
        """FLARE's rule: True when any token's probability is below ``theta``."""
        return any(t.prob < theta for t in self.tokens)

    def low_tokens(self, theta: float = 0.4) -> list[TokenConfidence]:
        """The tokens whose probability is below ``theta``."""
        return [t for t in self.tokens if t.prob < theta]

    def aggregates(self) -> dict[str, float]:
        return {
            "mean_logprob": self.mean_logprob,
            "min_prob": self.min_prob,
            "max_entropy": self.max_entropy,
            "seq_logprob": self.seq_logprob,
            "n_tokens": float(len(self.tokens)),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.aggregates().items()},
            "tokens": [asdict(t) for t in self.tokens],
        }


@dataclass(frozen=True)
class Generation:
    """Text produced by a generator with its own token confidences.

    Attributes:
        text: the generated text (stop string excluded).
        confidence: confidences of the generated tokens, taken from the
            generation itself.
        finish_reason: ``"stop"`` (stop string or sentence end), ``"eos"``,
            or ``"length"``.
        prompt_tokens: tokens in the prompt as the model saw it.
    """

    text: str
    confidence: Confidence
    finish_reason: str = "eos"
    prompt_tokens: int = 0


@dataclass(frozen=True)
class Document:
    """A retrieved passage."""

    id: str
    text: str
    score: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "text": self.text, "score": float(self.score), "metadata": dict(self.metadata)}


@dataclass(frozen=True)
class Reason:
    """Why a risk is high (or what could not be checked).

    Attributes:
        kind: ``rare_entity``, ``zero_cooccurrence``, ``low_prob_token``,
            ``high_entropy``, ``no_entities``, ``backend_error``...
        message: human-readable explanation.
        subject: the entity, pair ("A | B") or token concerned.
        value: the figure behind it (a count, a probability).
    """

    kind: str
    message: str
    subject: str = ""
    value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Risk:
    """A risk verdict: probability of hallucination (higher = riskier)."""

    probability: float
    flagged: bool
    policy: str
    reasons: tuple[Reason, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "probability": float(self.probability),
            "flagged": bool(self.flagged),
            "policy": self.policy,
            "reasons": [r.to_dict() for r in self.reasons],
        }


def as_tuple(items: Sequence[Any] | None) -> tuple[Any, ...]:
    return tuple(items) if items else ()
