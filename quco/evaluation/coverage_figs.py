"""How often the data side's rule fires, on which rows, and how much of it coverage would set aside.

ROC-AUC rates a ranking; a guard acts on a decision. For the QuCo rule
(:class:`~quco.risk.policies.QucoPolicy`, the ``quco_rule`` detector: flagged
when its score is above 0.5) :func:`coverage_figures` gives, over a rated set:

- ``rule_flag_rate``: the share of items the rule flags, beside ``true_rate``
  (the share labelled hallucinated): a rule that flags far more than the true
  rate retrieves on nearly everything;
- ``rule_fpr`` / ``rule_tpr``: the flagged share of the right (label 0) and of
  the hallucinated (label 1) items;
- ``stage2_flag_rate`` / ``stage2_fpr`` / ``stage2_tpr``: the same for stage 2
  alone (the answer's claims or pairs). Stage 1 judges the question only, so
  where a right and a hallucinated answer share their question (``paired``,
  ``summarization``) it flags both or neither and cannot tell them apart;
- ``verdicts``: the data side's three-state verdict (:mod:`quco.risk.coverage`):
  ``out_of_coverage`` when fewer than ``floor`` of the item's named entities
  (question and answer) are known to the corpus, else ``risky`` (the rule
  flags it) or ``safe``; shares of all items (they add up to 1). Items
  without a named entity (``no_entities_share``) keep the rule's verdict, as
  an audit does;
- ``verdict_fpr`` / ``verdict_tpr``: the ``risky`` share of the right and of the
  hallucinated items (an ``out_of_coverage`` item is neither flagged nor cleared);
- ``out_of_coverage_share``: the ``out_of_coverage`` share of all items.

Each item's coverage share comes from the analysis (:data:`ENTITY_COVERAGE`
in its feature dict, written by :func:`quco.evaluation.detectors.analyze_items`);
without it the coverage figures are None.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from quco.evaluation.collect import EvalItem
from quco.risk.coverage import DEFAULT_FLOOR, check_floor
from quco.risk.policies import QucoPolicy

#: feature-dict key of an item's entity coverage share (known / named entities; NaN without any)
ENTITY_COVERAGE = "entity_coverage"
#: the three verdicts, in report order
VERDICTS = ("risky", "safe", "out_of_coverage")


@dataclass(frozen=True)
class CoverageFigures:
    """Flag rates and coverage of the QuCo rule on one rated set (module docs; shares in [0, 1], None = undefined)."""

    n: int
    floor: float
    claims: str
    true_rate: float | None
    rule_flag_rate: float | None
    rule_fpr: float | None
    rule_tpr: float | None
    stage2_flag_rate: float | None = None
    stage2_fpr: float | None = None
    stage2_tpr: float | None = None
    verdicts: dict[str, float | None] = field(default_factory=dict)
    verdict_fpr: float | None = None
    verdict_tpr: float | None = None
    out_of_coverage_share: float | None = None
    no_entities_share: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _share(flags: Sequence[bool]) -> float | None:
    return round(sum(flags) / len(flags), 4) if flags else None


def flag_shares(labels: Sequence[int], flagged: Sequence[bool]) -> dict[str, float | None]:
    """``flag_rate``, ``true_rate``, ``tpr`` (flagged among label 1) and ``fpr`` (among label 0); None when empty."""
    return {
        "flag_rate": _share(flagged),
        "true_rate": _share([y == 1 for y in labels]),
        "tpr": _share([f for f, y in zip(flagged, labels, strict=True) if y == 1]),
        "fpr": _share([f for f, y in zip(flagged, labels, strict=True) if y == 0]),
    }


def coverage_figures(
    items: Sequence[EvalItem],
    feats: Sequence[Mapping[str, float]],
    *,
    claims: str = "triplets",
    floor: float = DEFAULT_FLOOR,
    rule: QucoPolicy | None = None,
) -> CoverageFigures:
    """The QuCo rule's flag rates and the verdicts' coverage over ``items`` (module docs).

    Args:
        items: rated items (their labels).
        feats: their feature dicts, in the same order (:func:`~quco.risk.features.feature_vector`
            plus :data:`ENTITY_COVERAGE`).
        claims: the rule's claims mode (``"triplets"`` or ``"pairs"``).
        floor: coverage share below which a verdict is ``out_of_coverage``.
        rule: the QuCo rule with the thresholds in force (None: the policy's absolute defaults).

    Raises:
        ValueError: ``items`` and ``feats`` differ in length.
    """
    if len(items) != len(feats):
        raise ValueError(f"{len(items)} items but {len(feats)} feature dicts")
    floor = check_floor(floor)
    rule = rule if rule is not None else QucoPolicy(claims=claims)
    labels = [it.label for it in items]
    flagged = [bool(rule.score_features(f) > 0.5) for f in feats]  # NaN compares False: not flagged
    stage2 = [bool(rule.stage_scores(f)[1] > 0.5) for f in feats]
    shares = [f.get(ENTITY_COVERAGE) for f in feats]
    r, s2 = flag_shares(labels, flagged), flag_shares(labels, stage2)
    base = CoverageFigures(
        n=len(items),
        floor=floor,
        claims=claims,
        true_rate=r["true_rate"],
        rule_flag_rate=r["flag_rate"],
        rule_fpr=r["fpr"],
        rule_tpr=r["tpr"],
        stage2_flag_rate=s2["flag_rate"],
        stage2_fpr=s2["fpr"],
        stage2_tpr=s2["tpr"],
    )
    known = [s for s in shares if s is not None]
    if not items or len(known) < len(shares):
        return base
    out = [not math.isnan(s) and s < floor for s in known]
    verdict = ["out_of_coverage" if o else ("risky" if fl else "safe") for o, fl in zip(out, flagged, strict=True)]
    risky = flag_shares(labels, [x == "risky" for x in verdict])
    return replace(
        base,
        verdicts={v: _share([x == v for x in verdict]) for v in VERDICTS},
        verdict_fpr=risky["fpr"],
        verdict_tpr=risky["tpr"],
        out_of_coverage_share=_share(out),
        no_entities_share=_share([math.isnan(s) for s in known]),
    )


def coverage_markdown(block: Mapping[str, Any] | None) -> str:
    """The ``coverage_figures`` block of ``detectors.json`` as a short Markdown section ("" without one)."""
    if not block:
        return ""

    def f(x: Any) -> str:
        return "–" if x is None else f"{x:.3f}"

    v = block.get("verdicts") or {}
    lines = [
        f"## Data-side flags and coverage (all {block['n']} items; QuCo rule, claims `{block['claims']}`)\n",
        "| figure | value |",
        "| --- | --- |",
        f"| true hallucination rate | {f(block.get('true_rate'))} |",
        f"| QuCo rule flag rate | {f(block.get('rule_flag_rate'))} |",
        f"| rule FPR (flagged among right) | {f(block.get('rule_fpr'))} |",
        f"| rule TPR (flagged among hallucinated) | {f(block.get('rule_tpr'))} |",
        f"| stage 2 alone: flag rate / FPR / TPR | {f(block.get('stage2_flag_rate'))} / "
        f"{f(block.get('stage2_fpr'))} / {f(block.get('stage2_tpr'))} |",
        f"| verdicts risky / safe / out of coverage (floor {block.get('floor')}) | "
        + " / ".join(f(v.get(k)) for k in VERDICTS) + " |",
        f"| risky-verdict FPR / TPR | {f(block.get('verdict_fpr'))} / {f(block.get('verdict_tpr'))} |",
        f"| out-of-coverage share | {f(block.get('out_of_coverage_share'))} |",
        f"| no named entity | {f(block.get('no_entities_share'))} |",
    ]
    return "\n".join(lines) + "\n"
