"""Rule policies: the paper's QuCo rules (data side) and FLARE's rule (confidence side).

Each policy has ``assess(signals) -> Risk`` (a decision with reasons) and
``score(signals) -> float``, a continuous risk score in [0, 1] for ranking
(**higher = riskier**; NaN when the policy has nothing to look at) whose 0.5
line is the rule's own decision boundary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from quco.risk.features import NON_NAMED_LABELS, ClaimCount, EntityCount, Signals, feature_vector
from quco.types import Reason, Risk

if TYPE_CHECKING:
    from quco.risk.thresholds import Thresholds

#: paper default for stage 1: mean question-entity frequency below this is risky
ENTITY_THRESHOLD = 1000
#: paper default for stage 2: a pair co-occurring fewer times than this is risky
COOC_THRESHOLD = 1
#: paper default for stage 2's tuples: a (head, relation) tuple whose head occurs fewer times is risky
TUPLE_THRESHOLD = 20
#: how stage 2 reads a sentence: its claims (the paper) or every entity pair (quco before claims)
CLAIM_MODES: tuple[str, ...] = ("triplets", "pairs")
#: FLARE default: a token with probability below this is risky
FLARE_THETA = 0.4


def _u(log_count: float, threshold: float) -> float:
    """Map ``log10(1 + c)`` to ``1 / (1 + log10(1 + c) / log10(1 + threshold))``.

    1.0 at c = 0, exactly 0.5 at c = threshold, decreasing in c: above 0.5 iff
    c < threshold. NaN stays NaN. A threshold of 0 (a fitted "never flag")
    gives 0.5 at c = 0 and 0.0 above: never above 0.5.
    """
    if math.isnan(log_count):
        return math.nan
    if threshold <= 0:
        return 0.5 if log_count <= 0 else 0.0
    return 1.0 / (1.0 + max(log_count, 0.0) / math.log10(1.0 + threshold))


class QucoPolicy:
    """The paper's two rules on corpus statistics.

    Stage 1 (before generation): the question is risky when the mean corpus
    frequency of its named entities is below ``entity_threshold`` (τ_entity =
    10^3). Dates and numbers (:data:`~quco.risk.features.NON_NAMED_LABELS`)
    are left out of the mean: years are frequent and pull it up.

    Stage 2 (per generated sentence), ``claims="triplets"`` (the paper): risky
    when some (head, relation, tail) triplet's head and tail co-occur fewer
    than ``cooc_threshold`` times (i.e. never, by default), or some (head,
    relation) tuple's head occurs fewer than ``tuple_threshold`` (20) times.
    ``claims="pairs"``: risky when some head/tail entity pair co-occurs fewer
    than ``cooc_threshold`` times. Triplet mode reads ``Signals.claims``; when
    those were not extracted (``None``) it falls back to the pairs.

    :meth:`assess` judges an answer: flagged when stage 2 fires or stage 1
    fires; the reasons name the rare entities and the unsupported claims (or
    pairs).

    :meth:`score` is ``max(u1, u2)`` with ``u(c, t) = 1 / (1 + log10(1+c) /
    log10(1+t))`` for stage 1 (c = mean named question-entity count, t =
    ``entity_threshold``) and stage 2 (pairs: c = least pair co-occurrence, t
    = ``cooc_threshold``; triplets: the larger of u(least triplet
    co-occurrence, ``cooc_threshold``) and u(rarest tuple head,
    ``tuple_threshold``)); each u is above 0.5 exactly when its rule fires,
    so ``score > 0.5`` iff the answer is flagged. NaN when neither stage has
    anything to judge.

    Args:
        entity_threshold: τ_entity of stage 1.
        cooc_threshold: co-occurrence threshold of stage 2 (triplets and pairs).
        tuple_threshold: head-frequency threshold of stage 2's tuples.
        claims: ``"triplets"`` or ``"pairs"``.
    """

    name = "quco"

    def __init__(
        self,
        entity_threshold: float = ENTITY_THRESHOLD,
        cooc_threshold: float = COOC_THRESHOLD,
        *,
        tuple_threshold: float = TUPLE_THRESHOLD,
        claims: str = "triplets",
    ) -> None:
        if claims not in CLAIM_MODES:
            raise ValueError(f"claims must be 'triplets' or 'pairs', not {claims!r}")
        self.entity_threshold = entity_threshold
        self.cooc_threshold = cooc_threshold
        self.tuple_threshold = tuple_threshold
        self.claims = claims

    @classmethod
    def from_thresholds(cls, th: Thresholds, *, claims: str = "triplets") -> QucoPolicy:
        """The rule with the effective thresholds ``th`` (:func:`quco.risk.thresholds.resolve`)."""
        return cls(th.entity, th.cooc, tuple_threshold=th.tuple_head, claims=claims)

    def stage1(self, question_entity_counts: Sequence[EntityCount]) -> Risk:
        """Stage 1 on the question's named entities (before generation)."""
        named = [ec for ec in question_entity_counts if ec.entity.label not in NON_NAMED_LABELS]
        if not named:
            msg = (
                "only dates and numbers in the question: stage 1 cannot judge it"
                if question_entity_counts
                else "no entities found in the question: stage 1 cannot judge it"
            )
            return Risk(0.0, False, "quco-stage1", (Reason("no_entities", msg),))
        question_entity_counts = named
        counts = [ec.count.value for ec in question_entity_counts]
        mean = sum(counts) / len(counts)
        flagged = mean < self.entity_threshold
        reasons = []
        if flagged:
            rare = sorted(question_entity_counts, key=lambda ec: ec.count.value)
            for ec in rare:
                if ec.count.value < self.entity_threshold:
                    reasons.append(
                        Reason(
                            "rare_entity",
                            f"'{ec.entity.text}' occurs {ec.count.value}"
                            f"{' (approx.)' if ec.count.approx else ''} times in the corpus "
                            f"(mean over question entities {mean:.0f} < {self.entity_threshold:g})",
                            ec.entity.text,
                            float(ec.count.value),
                        )
                    )
        return Risk(1.0 if flagged else 0.0, flagged, "quco-stage1", tuple(reasons))

    def stage2(self, signals: Signals) -> Risk:
        """Stage 2 on the claims (triplet mode) or the pairs of an answer or sentence."""
        if self.claims == "triplets" and signals.claims is not None:
            return self._stage2_claims(signals.claims, signals.window)
        if not signals.pairs:
            msg = (
                "no entities found in the answer: stage 2 cannot judge it"
                if not signals.answer_entities
                else "no head/tail pair to check"
            )
            return Risk(0.0, False, "quco-stage2", (Reason("no_entities", msg),))
        reasons = []
        for pc in sorted(signals.pairs, key=lambda pc: pc.count.value):
            if pc.count.value < self.cooc_threshold:
                subj = f"{pc.pair.head.text} | {pc.pair.tail.text}"
                where = "in the same document" if signals.window is None else f"within {signals.window} tokens"
                reasons.append(
                    Reason(
                        "zero_cooccurrence",
                        f"'{pc.pair.head.text}' and '{pc.pair.tail.text}' co-occur {pc.count.value} times "
                        f"{where} (< {self.cooc_threshold:g})",
                        subj,
                        float(pc.count.value),
                    )
                )
        flagged = bool(reasons)
        return Risk(1.0 if flagged else 0.0, flagged, "quco-stage2", tuple(reasons))

    def _stage2_claims(self, claims: Sequence[ClaimCount], window: int | None) -> Risk:
        if not claims:
            return Risk(
                0.0, False, "quco-stage2", (Reason("no_claims", "no claim (triplet or tuple) to check"),)
            )
        where = "in the same document" if window is None else f"within {window} tokens"
        reasons = []
        for cc in sorted(claims, key=lambda cc: (cc.claim.is_triplet, cc.count.value)):
            c, n = cc.claim, cc.count.value
            approx = " (approx.)" if cc.count.approx else ""
            if c.is_triplet and n < self.cooc_threshold:
                msg = (
                    f"{c.describe()} never co-occur {where}{approx}"
                    if n == 0
                    else f"{c.describe()}: head and tail co-occur {n} times {where}{approx} (< {self.cooc_threshold:g})"
                )
                reasons.append(Reason("zero_cooccurrence", msg, c.describe(), float(n)))
            elif not c.is_triplet and n < self.tuple_threshold:
                msg = f"{c.describe()}: '{c.head.text}' occurs {n}{approx} times in the corpus (< {self.tuple_threshold:g})"
                reasons.append(Reason("rare_head", msg, c.describe(), float(n)))
        flagged = bool(reasons)
        return Risk(1.0 if flagged else 0.0, flagged, "quco-stage2", tuple(reasons))

    def assess(self, signals: Signals) -> Risk:
        """Answer-level verdict: stage 2 on the answer's pairs, stage 1 on the question as a further reason."""
        r2 = self.stage2(signals)
        r1 = self.stage1(signals.question_entities)
        flagged = r2.flagged or r1.flagged
        reasons = tuple(r for r in (*r2.reasons, *r1.reasons) if flagged or r.kind in ("no_entities", "no_claims"))
        return Risk(1.0 if flagged else 0.0, flagged, self.name, reasons)

    def score_features(self, features: Mapping[str, float]) -> float:
        """:meth:`score` from a feature dict (``quco.risk.features.feature_vector``)."""
        vals = [u for u in self.stage_scores(features) if not math.isnan(u)]
        return max(vals) if vals else math.nan

    def stage_scores(self, features: Mapping[str, float]) -> tuple[float, float]:
        """(u1, u2): the stage-1 and stage-2 scores alone (NaN when not computable)."""
        u1 = _u(features.get("q_ent_freq_mean", math.nan), self.entity_threshold)
        if self.claims == "triplets" and not math.isnan(features.get("n_claims", math.nan)):
            parts = [
                _u(features.get("claim_cooc_min", math.nan), self.cooc_threshold),
                _u(features.get("tuple_head_min", math.nan), self.tuple_threshold),
            ]
            known = [u for u in parts if not math.isnan(u)]
            return u1, (max(known) if known else math.nan)
        return u1, _u(features.get("pair_cooc_min", math.nan), self.cooc_threshold)

    def score(self, signals: Signals) -> float:
        """Continuous risk score in [0, 1], higher = riskier, > 0.5 iff flagged (see class doc)."""
        return self.score_features(feature_vector(signals))


class FlarePolicy:
    """FLARE's rule: risky when any token's probability is below ``theta``.

    :meth:`score` is ``1 - min token probability`` (higher = riskier; above
    ``1 - theta`` iff flagged; NaN without token confidences).

    Args:
        theta: the probability threshold (FLARE default 0.4).
    """

    name = "flare"

    def __init__(self, theta: float = FLARE_THETA) -> None:
        self.theta = theta

    def assess(self, signals: Signals) -> Risk:
        conf = signals.confidence
        if conf is None or len(conf) == 0:
            return Risk(
                0.0, False, self.name, (Reason("no_confidence", "no token confidences: FLARE cannot judge it"),)
            )
        low = sorted(conf.low_tokens(self.theta), key=lambda t: t.prob)
        reasons = tuple(
            Reason(
                "low_prob_token",
                f"token {t.token.strip()!r} has probability {t.prob:.3f} (< {self.theta:g})",
                t.token.strip(),
                round(t.prob, 6),
            )
            for t in low
        )
        flagged = bool(low)
        return Risk(1.0 if flagged else 0.0, flagged, self.name, reasons)

    def score_features(self, features: Mapping[str, float]) -> float:
        """:meth:`score` from a feature dict."""
        mp = features.get("min_prob", math.nan)
        return math.nan if math.isnan(mp) else 1.0 - mp

    def score(self, signals: Signals) -> float:
        """``1 - min token probability``; higher = riskier."""
        return self.score_features(feature_vector(signals))
