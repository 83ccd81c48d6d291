"""Features of an answer (or one sentence) from the data side and the confidence side.

:class:`Signals` holds the raw evidence — entities with their corpus counts,
pairs with their co-occurrence counts, claims (triplets with their head/tail
co-occurrence, tuples with their head's frequency), the model's token
confidences — and :func:`feature_vector` turns it into named floats (and, when the analysis computed
it, the answer's n-gram novelty: :data:`NGRAM_FEATURES`, an optional group
that fitted models use only when they were fitted with it). A feature that could not be
computed (no entity found, no pair, no confidence) is ``NaN``, never a silent
zero; fitted models see an explicit missing indicator for it.

Counts enter on a ``log10(1 + count)`` scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from quco.types import Claim, Confidence, Count, Entity, Pair

#: data-side features (higher counts = better supported = less risk)
DATA_FEATURES: tuple[str, ...] = (
    "q_ent_freq_min",  # log10(1+count), rarest named question entity (dates and numbers left out)
    "q_ent_freq_mean",  # log10(1 + mean count) over named question entities (the paper's stage-1 figure)
    "a_ent_freq_min",  # rarest answer entity (new relative to the question when any, else all)
    "a_ent_freq_mean",
    "pair_cooc_min",  # log10(1+count), least co-occurring head/tail pair
    "pair_cooc_max",
    "zero_cooc",  # 1.0 when some pair never co-occurs, else 0.0 (NaN without pairs)
    "n_pairs",
    "n_entities",  # entities in the answer
    "any_approx",  # 1.0 when any count behind these figures was approximate
)

#: the data-side features of entity-pair mode (``claims="pairs"``)
PAIR_FEATURES: tuple[str, ...] = ("pair_cooc_min", "pair_cooc_max", "zero_cooc", "n_pairs")

#: claim features (``claims="triplets"``; higher counts = better supported = less risk)
CLAIM_FEATURES: tuple[str, ...] = (
    "claim_cooc_min",  # log10(1+count), least co-occurring triplet head/tail (NaN without triplets)
    "zero_claim",  # 1.0 when some triplet's head and tail never co-occur, else 0.0 (NaN without triplets)
    "n_claims",  # triplets + tuples in the answer (NaN when claims were not extracted)
    "tuple_head_min",  # log10(1+count), rarest head of a (head, relation) tuple (NaN without tuples)
)

#: n-gram novelty features (optional group: computed only when the analysis asks for them, NaN otherwise;
#: higher novelty = less support = more risk; a longer matched suffix = more support = less risk)
NGRAM_FEATURES: tuple[str, ...] = (
    "ngram_novel_share",  # share of the answer's token n-grams (n = 2..5) that never occur in the corpus
    "ngram_longest_match",  # tokens in the longest suffix of the answer that occurs in the corpus
)

#: labels that are not named entities: left out of stage 1's mean (dates and numbers stay tails)
NON_NAMED_LABELS = frozenset({"DATE", "TIME", "CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT"})


def data_features(claims: str = "pairs") -> tuple[str, ...]:
    """The fitted data side's features in a claims mode.

    ``"pairs"``: :data:`DATA_FEATURES`; ``"triplets"``: the same with the pair
    features (:data:`PAIR_FEATURES`) replaced by :data:`CLAIM_FEATURES`.
    """
    if claims == "pairs":
        return DATA_FEATURES
    if claims == "triplets":
        return tuple(f for f in DATA_FEATURES if f not in PAIR_FEATURES) + CLAIM_FEATURES
    raise ValueError(f"claims must be 'pairs' or 'triplets', not {claims!r}")


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
class ClaimCount:
    """A claim with the count stage 2 checks it by.

    A triplet's ``count`` is its head and tail's co-occurrence within the
    window; a tuple's is its head's corpus frequency.
    """

    claim: Claim
    count: Count


@dataclass(frozen=True)
class Novelty:
    """How much of an answer's token sequence the corpus has seen (:mod:`quco.corpus.ngrams`).

    Attributes:
        tokens: the answer's tokens in the index's tokenizer.
        ngrams: its n-grams checked (every n in the range, overlapping).
        novel: of them, those that never occur in the corpus.
        longest_match: tokens in the longest suffix of the answer that occurs
            in the corpus (the ∞-gram's match length at its last token; capped
            by :data:`quco.corpus.ngrams.MAX_MATCH`).
    """

    tokens: int
    ngrams: int
    novel: int
    longest_match: int

    @property
    def share(self) -> float:
        """``novel / ngrams``; NaN without n-grams."""
        return self.novel / self.ngrams if self.ngrams else NAN

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "tokens": self.tokens,
            "ngrams": self.ngrams,
            "novel": self.novel,
            "novel_share": None if not self.ngrams else round(self.share, 6),
            "longest_match": self.longest_match,
        }


@dataclass(frozen=True)
class Signals:
    """The raw evidence about one answer or sentence.

    Attributes:
        question_entities: question entities with their counts.
        answer_entities: entities of the answer/sentence with counts; those new
            relative to the question are flagged by ``new_answer_entities``.
        new_answer_entities: the subset of ``answer_entities`` not in the question.
        pairs: checked head/tail pairs with their co-occurrence counts.
        claims: checked claims with their counts; ``None`` when claims were not
            extracted (entity-pair mode), ``()`` when the text makes none.
        confidence: token confidences of the answer; ``None`` when no model ran.
        window: co-occurrence window used (``None`` for document mode).
        novelty: the answer's n-gram novelty; ``None`` when not computed.
    """

    question_entities: tuple[EntityCount, ...] = ()
    answer_entities: tuple[EntityCount, ...] = ()
    new_answer_entities: tuple[EntityCount, ...] = ()
    pairs: tuple[PairCount, ...] = ()
    confidence: Confidence | None = None
    window: int | None = 1000
    claims: tuple[ClaimCount, ...] | None = None
    novelty: Novelty | None = None


def _log(c: float) -> float:
    return math.log10(1.0 + max(c, 0.0))


def _min_mean(counts: list[int]) -> tuple[float, float]:
    if not counts:
        return NAN, NAN
    return _log(min(counts)), _log(sum(counts) / len(counts))


def feature_vector(s: Signals) -> dict[str, float]:
    """Named features of ``s``; NaN marks a feature that could not be computed."""
    q = [ec.count.value for ec in s.question_entities if ec.entity.label not in NON_NAMED_LABELS]
    a_src = s.new_answer_entities or s.answer_entities
    a = [ec.count.value for ec in a_src]
    p = [pc.count.value for pc in s.pairs]
    q_min, q_mean = _min_mean(q)
    a_min, a_mean = _min_mean(a)
    approx = (
        any(x.count.approx for x in (*s.question_entities, *s.answer_entities))
        or any(pc.count.approx for pc in s.pairs)
        or any(cc.count.approx for cc in s.claims or ())
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
    out.update(claim_features(s.claims))
    out.update(ngram_features(s.novelty))
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


def ngram_features(novelty: Novelty | None) -> dict[str, float]:
    """:data:`NGRAM_FEATURES` of an answer (all NaN when novelty was not computed)."""
    if novelty is None or not novelty.tokens:
        return {k: NAN for k in NGRAM_FEATURES}
    return {"ngram_novel_share": novelty.share, "ngram_longest_match": float(novelty.longest_match)}


def claim_features(claims: tuple[ClaimCount, ...] | None) -> dict[str, float]:
    """:data:`CLAIM_FEATURES` of a claim list (all NaN when claims were not extracted)."""
    if claims is None:
        return {k: NAN for k in CLAIM_FEATURES}
    tri = [cc.count.value for cc in claims if cc.claim.is_triplet]
    heads = [cc.count.value for cc in claims if not cc.claim.is_triplet]
    return {
        "claim_cooc_min": _log(min(tri)) if tri else NAN,
        "zero_claim": (1.0 if min(tri) < 1 else 0.0) if tri else NAN,
        "n_claims": float(len(claims)),
        "tuple_head_min": _log(min(heads)) if heads else NAN,
    }
