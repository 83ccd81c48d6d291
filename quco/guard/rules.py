"""Trigger rules and retrieval queries of the guard's policies.

Each rule turns evidence into a :class:`~quco.types.Risk` (higher probability =
riskier; rule policies give 1.0 when they fire and 0.0 otherwise) with the
reasons behind it:

- QuCo stage 1: the question entities' mean corpus frequency is below
  ``entity_threshold`` (paper default 10^3);
- QuCo stage 2: some (head, relation, tail) triplet of a sentence has a head
  and tail that never co-occur within the window (paper default 1000
  tokens), or some (head, relation) tuple's head occurs fewer than 20 times;
  in entity-pair mode (``claims="pairs"``), some head/tail pair never
  co-occurs;
- FLARE: some token of the draft sentence has probability below ``theta``;
- combined: a fitted risk model's probability is over ``risk_threshold``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from quco.errors import QucoError
from quco.risk.coverage import mask_data, neutral_features
from quco.risk.features import ClaimCount, EntityCount, PairCount, Signals, feature_vector
from quco.risk.policies import COOC_THRESHOLD, TUPLE_THRESHOLD, FlarePolicy, QucoPolicy
from quco.types import Confidence, Reason, Risk

POLICIES: tuple[str, ...] = ("none", "single", "flare", "quco", "combined")


def quco_stage1(entities: Sequence[EntityCount], threshold: float) -> Risk:
    """Fires when the mean count of the question entities is below ``threshold``.

    A question without entities cannot be checked: the rule does not fire and
    says so (reason ``no_entities``).
    """
    return QucoPolicy(entity_threshold=threshold).stage1(entities)


def quco_stage2(
    pairs: Sequence[PairCount],
    window: int | None,
    entities: Sequence[EntityCount] = (),
    *,
    claims: Sequence[ClaimCount] | None = None,
    tuple_threshold: float = TUPLE_THRESHOLD,
    cooc_threshold: float = COOC_THRESHOLD,
) -> Risk:
    """Fires when a triplet's head and tail co-occur fewer than ``cooc_threshold`` times (default: never) or a tuple's head is rare (``claims`` given), else when some pair does."""
    mode = "triplets" if claims is not None else "pairs"
    policy = QucoPolicy(cooc_threshold=cooc_threshold, tuple_threshold=tuple_threshold, claims=mode)
    return policy.stage2(
        Signals(
            answer_entities=tuple(entities),
            pairs=tuple(pairs),
            window=window,
            claims=tuple(claims) if claims is not None else None,
        )
    )


def flare_rule(confidence: Confidence | None, theta: float) -> Risk:
    """FLARE: fires when any token of the draft has probability below ``theta``."""
    return FlarePolicy(theta=theta).assess(Signals(confidence=confidence))


def combined_rule(model: Any, signals: Signals, threshold: float, *, data_neutral: bool = False) -> Risk:
    """Fires when the risk model's probability is over ``threshold``.

    ``model`` is a fitted :class:`quco.risk.combined.RiskScorer` (its
    ``assess`` gives the reasons) or any object with sklearn-style
    ``predict_proba`` over feature dicts. ``data_neutral`` (an
    ``out_of_coverage`` check under ``confidence-only``): the data features
    are read as neither risky nor safe (a RiskScorer sets them to the
    training mean; another model sees them missing, NaN).
    """
    if hasattr(model, "assess"):
        if data_neutral:
            names = getattr(model, "feature_names_", ())
            r = model.assess(signals, neutral=neutral_features(names))
        else:
            r = model.assess(signals)
        p, reasons = float(r.probability), tuple(r.reasons)
    elif hasattr(model, "predict_proba"):
        feats = feature_vector(signals)
        row = model.predict_proba([mask_data(feats) if data_neutral else feats])[0]
        p, reasons = float(row[-1] if hasattr(row, "__len__") else row), ()
    else:
        raise QucoError(f"risk model {type(model).__name__} has neither assess() nor predict_proba()")
    if math.isnan(p):
        return Risk(p, False, "combined", (*reasons, Reason("no_score", "the risk model returned NaN")))
    flagged = p > threshold
    head = Reason("risk_probability", f"p(hallucination) = {p:.3f} {'>' if flagged else '<='} {threshold:g}", "", p)
    return Risk(p, flagged, "combined", (head, *reasons))


_SPACES = re.compile(r"\s+")


def flare_query(sentence: str, confidence: Confidence | None, theta: float, fallback: str) -> str:
    """FLARE's masked query: the draft with its low-confidence tokens removed.

    The tokens' texts must concatenate to the draft; otherwise the draft is
    used as is. ``fallback`` (the question) is used when nothing is left.
    """
    if confidence is not None and len(confidence) and "".join(t.token for t in confidence.tokens).strip() == sentence.strip():
        kept = "".join(t.token for t in confidence.tokens if t.prob >= theta)
    else:
        kept = sentence
    kept = _SPACES.sub(" ", kept).strip()
    return kept if re.search(r"\w", kept) else fallback


def claim_queries(claims: Sequence[ClaimCount], risk: Risk, *, max_queries: int = 3) -> list[str]:
    """QuCo's stage-2 queries: ``head ⊕ relation`` of each flagged claim, never the tail.

    The flagged claims are those the risk's reasons name, in the reasons'
    order; when none is named (a ``combined`` verdict) the least supported
    claim is used. Duplicates are dropped; at most ``max_queries`` are kept.
    """
    named = {r.subject for r in risk.reasons}
    picked = [cc.claim for cc in claims if cc.claim.describe() in named]
    if not picked and claims:
        picked = [min(claims, key=lambda cc: (not cc.claim.is_triplet, cc.count.value)).claim]
    order: dict[str, int] = {}
    for i, r in enumerate(risk.reasons):
        order.setdefault(r.subject, i)
    picked.sort(key=lambda c: order.get(c.describe(), len(order)))
    return list(dict.fromkeys(c.query for c in picked))[:max_queries]


def pair_query(pairs: Sequence[PairCount], sentence: str) -> str:
    """Entity-pair mode's stage-2 query: the failing pair's entities followed by the sentence.

    It holds the suspect tail, which can fetch documents about the wrong
    entity; triplet mode queries ``head ⊕ relation`` instead (:func:`claim_queries`).

    The least co-occurring pair is used (a zero one when the rule fired).
    """
    if not pairs:
        return sentence.strip()
    worst = min(pairs, key=lambda p: p.count.value)
    return f"{worst.pair.head.text} {worst.pair.tail.text} {sentence.strip()}"
