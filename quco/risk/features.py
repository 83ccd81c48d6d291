"""Features of an answer (or one sentence) from the data side and the confidence side.

:class:`Signals` holds the raw evidence — entities with their corpus counts,
pairs with their co-occurrence counts, the model's token confidences — and
:func:`feature_vector` turns it into named floats. A feature that could not be
computed (no entity found, no pair, no confidence) is ``NaN``, never a silent
zero; fitted models see an explicit missing indicator for it.

Counts enter on a ``log10(1 + count)`` scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from quco.types import Confidence, Count, Entity, Pair

#: data-side features (higher counts = better supported = less risk)
DATA_FEATURES: tuple[str, ...] = (
    "q_ent_freq_min",  # log10(1+count), rarest question entity
    "q_ent_freq_mean",  # log10(1 + mean count) over question entities (the paper's stage-1 figure)
    "a_ent_freq_min",  # rarest answer entity (new relative to the question when any, else all)
    "a_ent_freq_mean",
    "pair_cooc_min",  # log10(1+count), least co-occurring head/tail pair
    "pair_cooc_max",
    "zero_cooc",  # 1.0 when some pair never co-occurs, else 0.0 (NaN without pairs)
    "n_pairs",
    "n_entities",  # entities in the answer
    "any_approx",  # 1.0 when any count behind these figures was approximate
)

#: confidence-side features (higher logprob/min_prob = more confident = less risk)
CONFIDENCE_FEATURES: tuple[str, ...] = (
    "mean_logprob",
    "min_prob",
    "max_entropy",
    "seq_logprob",
    "length",  # tokens in the answer (or sentence)
)

ALL_FEATURES: tuple[str, ...] = DATA_FEATURES + CONFIDENCE_FEATURES

NAN = math.nan


@dataclass(frozen=True)
class EntityCount:
    """An entity with its corpus frequency."""

    entity: Entity
    count: Count


@dataclass(frozen=True)
class PairCount:
    """A head/tail pair with its co-occurrence count."""

    pair: Pair
    count: Count


@dataclass(frozen=True)
class Signals:
    """The raw evidence about one answer or sentence.

    Attributes:
        question_entities: question entities with their counts.
        answer_entities: entities of the answer/sentence with counts; those new
            relative to the question are flagged by ``new_answer_entities``.
        new_answer_entities: the subset of ``answer_entities`` not in the question.
        pairs: checked head/tail pairs with their co-occurrence counts.
        confidence: token confidences of the answer; ``None`` when no model ran.
        window: co-occurrence window used (``None`` for document mode).
    """

    question_entities: tuple[EntityCount, ...] = ()
    answer_entities: tuple[EntityCount, ...] = ()
    new_answer_entities: tuple[EntityCount, ...] = ()
    pairs: tuple[PairCount, ...] = ()
    confidence: Confidence | None = None
    window: int | None = 1000


def _log(c: float) -> float:
    return math.log10(1.0 + max(c, 0.0))


def _min_mean(counts: list[int]) -> tuple[float, float]:
    if not counts:
        return NAN, NAN
    return _log(min(counts)), _log(sum(counts) / len(counts))


def feature_vector(s: Signals) -> dict[str, float]:
    """Named features of ``s``; NaN marks a feature that could not be computed."""
    q = [ec.count.value for ec in s.question_entities]
    a_src = s.new_answer_entities or s.answer_entities
    a = [ec.count.value for ec in a_src]
    p = [pc.count.value for pc in s.pairs]
    q_min, q_mean = _min_mean(q)
    a_min, a_mean = _min_mean(a)
    approx = any(x.count.approx for x in (*s.question_entities, *s.answer_entities)) or any(
        pc.count.approx for pc in s.pairs
    )
    out: dict[str, float] = {
        "q_ent_freq_min": q_min,
        "q_ent_freq_mean": q_mean,
        "a_ent_freq_min": a_min,
        "a_ent_freq_mean": a_mean,
        "pair_cooc_min": _log(min(p)) if p else NAN,
        "pair_cooc_max": _log(max(p)) if p else NAN,
        "zero_cooc": (1.0 if min(p) < 1 else 0.0) if p else NAN,
        "n_pairs": float(len(p)),
        "n_entities": float(len(s.answer_entities)),
        "any_approx": 1.0 if approx else 0.0,
    }
    c = s.confidence
    if c is None or len(c) == 0:
        out.update({k: NAN for k in CONFIDENCE_FEATURES})
    else:
        out.update(
            {
                "mean_logprob": c.mean_logprob,
                "min_prob": c.min_prob,
                "max_entropy": c.max_entropy,
                "seq_logprob": c.seq_logprob,
                "length": float(len(c)),
            }
        )
    return out
