"""Count thresholds of the data side, absolute or relative to the index's size.

QuCo-RAG's thresholds were set for a pretraining corpus of about 4T tokens
(τ_entity = 10^3 occurrences). Applied as absolute numbers to a 10.7M-token
index they fire on nearly everything. A :class:`Threshold` is either an
absolute count (``"1000"``, ``"1e3"``) or a rate ``"COUNT@TOKENS"``
(``"1e3@4e12"``: 10^3 per 4·10^12 tokens), which :meth:`Threshold.effective`
scales to the token count of the index at hand:
``effective = COUNT * index_tokens / TOKENS``.

The index's token count comes from its manifest (a local index, or every
part of a sharded one), or from ``quco serve``'s ``/health`` answer. A server
that does not report its size (the public infini-gram service) cannot scale a
rate: the default, the paper's own rate, is then taken at the paper's own
corpus size (4T tokens: 1000, right for the public ~4T-token OLMo index) and
says so; any other rate is refused with :class:`BadInputError` (give an
absolute count instead).

The default τ_entity is the paper's rate scaled to the index,
:data:`PAPER_ENTITY_RATE` (``1e3@4e12``: 0.0027 on the 10.7M-token demo
index, so stage 1 fires only where a question's named entities never occur);
τ_cooc (1: never co-occurring) and τ_tuple (20) stay absolute, since "never"
is the same count at every size. Measured side by side (``quco eval detectors
--ablations thresholds``, README section 3), the scaled rate cut the QuCo
rule's flag rate on self answers over the demo index (0.90 -> 0.45) and halved the guard's
retrievals, but ranked answers no better than the absolute 10^3
(:data:`ABSOLUTE_ENTITY`, the default until issue 11) and cost the guard
accuracy (-0.060 on 200 development questions, -0.015 [-0.06, +0.03] on 200
evaluation questions), since the 135M model knows almost nothing and every
retrieval helps (README): pass ``--tau-entity 1000`` for that behaviour. Thresholds fitted for an index
(``quco calibrate --fit-thresholds``) are the better choice on a small proxy
index.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from quco.errors import BadInputError

#: tokens of the corpus the paper's thresholds were set for (OLMo-2's pretraining data, ~4T)
PAPER_TOKENS = 4e12
#: the paper's τ_entity: 10^3 occurrences in its ~4T-token corpus
PAPER_ENTITY_COUNT = 1e3
#: the paper's τ_entity as a rate: 10^3 occurrences per 4T tokens
PAPER_ENTITY_RATE = "1e3@4e12"
#: the paper's τ_entity as an absolute count: the default before issue 11, and the rate at 4T tokens
ABSOLUTE_ENTITY = "1000"
#: the default τ_entity: the paper's rate, scaled to the index at hand
DEFAULT_ENTITY = PAPER_ENTITY_RATE
#: today's default τ_cooc: a triplet (or pair) co-occurring fewer times is risky, i.e. never
DEFAULT_COOC = "1"
#: today's default head-frequency threshold of stage 2's (head, relation) tuples
DEFAULT_TUPLE = "20"

_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_SPEC = re.compile(rf"^\s*({_NUMBER})\s*(?:@\s*({_NUMBER}))?\s*$")


def _human(n: float) -> str:
    """``10.7M``, ``4T``, ``1.5k``: a token count for messages."""
    for div, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.3g}{unit}"
    return f"{n:.3g}"


@dataclass(frozen=True)
class Threshold:
    """A count threshold: absolute, or a rate per some number of tokens.

    Attributes:
        count: the count (absolute), or the count per ``per_tokens`` tokens (rate).
        per_tokens: ``None`` for an absolute threshold; else the corpus size
            ``count`` is meant for.
    """

    count: float
    per_tokens: float | None = None

    def __post_init__(self) -> None:
        if not math.isfinite(self.count) or self.count < 0:
            raise BadInputError(f"a threshold must be a count of zero or more, not {self.count:g}")
        if self.per_tokens is not None and (not math.isfinite(self.per_tokens) or self.per_tokens <= 0):
            raise BadInputError(f"a threshold rate needs a positive token count after '@', not {self.per_tokens:g}")

    @classmethod
    def parse(cls, spec: str | float | int | Threshold) -> Threshold:
        """Read ``"1000"``, ``"1e3"``, ``"1e3@4e12"``, a number, or a Threshold.

        Raises:
            BadInputError: not a count of zero or more (0: the rule never
                fires), or not ``COUNT@TOKENS`` with a positive token count.
        """
        if isinstance(spec, Threshold):
            return spec
        if isinstance(spec, bool):
            raise BadInputError(f"not a threshold: {spec!r}")
        if isinstance(spec, (int, float)):
            return cls(float(spec))
        if not isinstance(spec, str):
            raise BadInputError(f"not a threshold: {spec!r}")
        m = _SPEC.match(spec)
        if m is None:
            raise BadInputError(
                f"bad threshold {spec!r}: give a count (1000, 1e3) or a rate COUNT@TOKENS (1e3@4e12)"
            )
        count = float(m.group(1))
        per = float(m.group(2)) if m.group(2) is not None else None
        if count < 0:
            raise BadInputError(f"bad threshold {spec!r}: the count must not be negative")
        if per is not None and per <= 0:
            raise BadInputError(f"bad threshold {spec!r}: the token count after '@' must be positive")
        return cls(count, per)

    @property
    def is_rate(self) -> bool:
        return self.per_tokens is not None

    def effective(self, tokens: int | float | None) -> float:
        """The count this threshold means for an index of ``tokens`` tokens.

        Absolute: ``count`` (``tokens`` is not needed). Rate:
        ``count * tokens / per_tokens``. The paper's rate (the default) at an
        index of unknown size is taken at the paper's own corpus size
        (:meth:`assumed_at_reference`).

        Raises:
            BadInputError: a rate other than the paper's with an unknown (``None``) index size, or
                any rate with a non-positive one.
        """
        if self.per_tokens is None:
            return self.count
        if tokens is None:
            if self.assumed_at_reference:
                return self.count
            raise BadInputError(
                f"threshold {self.spec} is a rate, but the index's token count is unknown "
                "(a server that does not report it): give an absolute count"
            )
        if tokens <= 0:
            raise BadInputError(f"threshold {self.spec} is a rate, but the index holds no tokens")
        return self.count * float(tokens) / self.per_tokens

    @property
    def assumed_at_reference(self) -> bool:
        """Whether this is the paper's rate, which an index of unknown size takes at 4T tokens (its count)."""
        return (self.count, self.per_tokens) == (PAPER_ENTITY_COUNT, PAPER_TOKENS)

    @property
    def spec(self) -> str:
        """The threshold written the way :meth:`parse` reads it (``1000``, ``1000@4e+12``)."""
        if self.per_tokens is None:
            return f"{self.count:g}"
        return f"{self.count:g}@{self.per_tokens:g}"

    def describe(self, tokens: int | float | None = None) -> str:
        """``1000 (absolute)``, or ``0.002675 (rate 1000 per 4T tokens, at 10.7M tokens)``."""
        if self.per_tokens is None:
            return f"{self.count:g} (absolute)"
        rate = f"rate {self.count:g} per {_human(self.per_tokens)} tokens"
        if tokens is None and self.assumed_at_reference:  # what effective(None) returns
            return f"{self.count:g} ({rate}; index size unknown, taken at {_human(self.per_tokens)} tokens)"
        if tokens is None or tokens <= 0:
            return f"{rate} (index size unknown)"
        return f"{self.effective(tokens):.4g} ({rate}, at {_human(float(tokens))} tokens)"

    def __str__(self) -> str:
        return self.spec


ThresholdSpec = str | float | int | Threshold


@dataclass(frozen=True)
class Thresholds:
    """The effective thresholds of a data-side check, with where they came from.

    Attributes:
        entity: τ_entity, stage 1's bound on the mean named question-entity count.
        cooc: τ_cooc, stage 2's bound on a triplet's (or pair's) co-occurrence.
        tuple_head: stage 2's bound on a (head, relation) tuple's head frequency.
        specs: the specs given, as :meth:`Threshold.spec` strings (entity, cooc, tuple).
        tokens: the index's token count (``None``: unknown).
    """

    entity: float
    cooc: float
    tuple_head: float
    specs: tuple[str, str, str] = (DEFAULT_ENTITY, DEFAULT_COOC, DEFAULT_TUPLE)
    tokens: int | None = None

    def describe(self) -> str:
        """One line: ``τ_entity 1000 (absolute), τ_cooc 1 (absolute), τ_tuple 20 (absolute)``."""
        names = ("τ_entity", "τ_cooc", "τ_tuple")
        return ", ".join(
            f"{n} {Threshold.parse(s).describe(self.tokens)}" for n, s in zip(names, self.specs, strict=True)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "tau_entity": self.entity,
            "tau_cooc": self.cooc,
            "tau_tuple": self.tuple_head,
            "specs": {"tau_entity": self.specs[0], "tau_cooc": self.specs[1], "tau_tuple": self.specs[2]},
            "index_tokens": self.tokens,
        }


def resolve(
    entity: ThresholdSpec = DEFAULT_ENTITY,
    cooc: ThresholdSpec = DEFAULT_COOC,
    tuple_: ThresholdSpec = DEFAULT_TUPLE,
    *,
    tokens: int | None = None,
    stats: Any = None,
) -> Thresholds:
    """Effective thresholds for an index.

    Args:
        entity: τ_entity spec.
        cooc: τ_cooc spec.
        tuple_: τ_tuple spec.
        tokens: the index's token count; when ``None`` it is read from
            ``stats`` (:func:`quco.corpus.size.corpus_tokens`).
        stats: the corpus backend.

    Raises:
        BadInputError: a bad spec, or a rate (other than the paper's) for an
            index of unknown size.
    """
    parsed = [Threshold.parse(s) for s in (entity, cooc, tuple_)]
    if tokens is None and stats is not None:
        from quco.corpus.size import corpus_tokens

        tokens = corpus_tokens(stats)
    e, c, t = (p.effective(tokens) for p in parsed)
    return Thresholds(e, c, t, (parsed[0].spec, parsed[1].spec, parsed[2].spec), tokens)


def paper_rate_at(tokens: int | None) -> float | None:
    """:data:`PAPER_ENTITY_RATE` scaled to an index of ``tokens`` tokens (``None`` when unknown)."""
    if tokens is None or tokens <= 0:
        return None
    return Threshold.parse(PAPER_ENTITY_RATE).effective(tokens)
