"""Coverage: how much of a question and its answer the corpus knows at all.

The data side reads absence from the corpus as risk. That holds when the index
is the model's own pretraining data; when it is a proxy (the demo corpus, the
public OLMo index for a closed model), an absent entity often means only "this
corpus does not cover it". :class:`Coverage` is the share of the named
entities of the question and the answer (dates and numbers left out, as in
stage 1) whose corpus count is non-zero. Below a floor (default
:data:`DEFAULT_FLOOR`) the data side's verdict is ``out_of_coverage``: a third
state, neither risky nor safe. What a guard does then is its
``on_out_of_coverage`` action (:data:`ACTIONS`):

- ``"rule"`` (default for now): the data rule's own verdict, as before
  coverage existed; the verdict still records its coverage. It stays the
  default until the evaluation figures are made again with coverage (issue
  11), so that today's published figures match the default behaviour;
- ``"retrieve"``: treat the check as risky and retrieve. An absent entity
  usually made stage 1's mean fall below τ_entity, so an uncovered question
  was mostly retrieved for anyway; now it always is;
- ``"pass"``: do not retrieve on the data side's account;
- ``"confidence-only"``: decide on the confidence side alone: the ``quco``
  policy applies FLARE's rule to the sentence's token probabilities (nothing
  at stage 1, before any token exists); ``combined`` scores its model with the
  data features neutral (:func:`neutral_features`: they add nothing to the
  logit, neither risk nor safety).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from quco.errors import BadInputError
from quco.risk.features import (
    CLAIM_FEATURES,
    DATA_FEATURES,
    NGRAM_FEATURES,
    NON_NAMED_LABELS,
    EntityCount,
    Signals,
)

#: share of known entities below which the data side says ``out_of_coverage``
DEFAULT_FLOOR = 0.5
#: what a guard does with an ``out_of_coverage`` check
ACTIONS: tuple[str, ...] = ("rule", "retrieve", "pass", "confidence-only")
#: the default action: quco's behaviour before coverage existed (see the module docs)
DEFAULT_ACTION = "rule"
#: the coverage verdicts
COVERED, OUT_OF_COVERAGE, NO_ENTITIES = "covered", "out_of_coverage", "no_entities"
#: every data-side feature (what ``out_of_coverage`` leaves to the confidence side)
DATA_SIDE: tuple[str, ...] = DATA_FEATURES + CLAIM_FEATURES + NGRAM_FEATURES


@dataclass(frozen=True)
class Coverage:
    """The share of named entities the corpus knows.

    Attributes:
        known: distinct named entities with a non-zero count.
        total: distinct named entities (question and answer together).
        floor: the share below which the verdict is ``out_of_coverage``.
    """

    known: int
    total: int
    floor: float = DEFAULT_FLOOR

    @property
    def share(self) -> float:
        """``known / total``; NaN without entities."""
        return self.known / self.total if self.total else math.nan

    @property
    def verdict(self) -> str:
        """``"covered"``, ``"out_of_coverage"`` (share below the floor) or ``"no_entities"``."""
        if not self.total:
            return NO_ENTITIES
        return OUT_OF_COVERAGE if self.share < self.floor else COVERED

    @property
    def out_of_coverage(self) -> bool:
        return self.verdict == OUT_OF_COVERAGE

    def describe(self) -> str:
        """``2 of 3 entities known (67%, floor 50%): covered``."""
        if not self.total:
            return "no named entity to judge coverage by"
        return (
            f"{self.known} of {self.total} entities known to the corpus "
            f"({self.share:.0%}, floor {self.floor:.0%}): {self.verdict.replace('_', ' ')}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "known": self.known,
            "total": self.total,
            "share": None if not self.total else round(self.share, 6),
            "floor": self.floor,
            "verdict": self.verdict,
        }


def check_floor(floor: float) -> float:
    """``floor`` if it is a share in [0, 1].

    Raises:
        BadInputError: not a number in [0, 1].
    """
    try:
        f = float(floor)
    except (TypeError, ValueError):
        raise BadInputError(f"the coverage floor must be a share in [0, 1], not {floor!r}") from None
    if not 0.0 <= f <= 1.0:
        raise BadInputError(f"the coverage floor must be a share in [0, 1], not {floor!r}")
    return f


def check_action(action: str) -> str:
    """``action`` if it is one of :data:`ACTIONS`.

    Raises:
        BadInputError: another value.
    """
    if action not in ACTIONS:
        raise BadInputError(f"on_out_of_coverage must be one of {', '.join(ACTIONS)}, not {action!r}")
    return action


def coverage_of(*groups: Iterable[EntityCount], floor: float = DEFAULT_FLOOR) -> Coverage:
    """Coverage of the named entities in ``groups`` (each entity text counted once).

    Args:
        *groups: entities with their counts (the question's, the answer's...).
        floor: the share below which the verdict is ``out_of_coverage``.
    """
    seen: dict[str, bool] = {}
    for group in groups:
        for ec in group:
            if ec.entity.label in NON_NAMED_LABELS:
                continue
            key = ec.entity.key
            seen[key] = seen.get(key, False) or ec.count.value > 0
    return Coverage(sum(seen.values()), len(seen), floor)


def signals_coverage(signals: Signals, floor: float = DEFAULT_FLOOR) -> Coverage:
    """Coverage of an answer (or sentence): its question's and its own named entities."""
    return coverage_of(signals.question_entities, signals.answer_entities, floor=floor)


def neutral_features(names: Sequence[str]) -> tuple[str, ...]:
    """The data-side features among ``names`` (those ``out_of_coverage`` makes neutral)."""
    return tuple(n for n in names if n in DATA_SIDE)


def mask_data(features: Mapping[str, float]) -> dict[str, float]:
    """``features`` with every data-side feature marked missing (NaN), never zero."""
    return {k: (math.nan if k in DATA_SIDE else v) for k, v in features.items()}
