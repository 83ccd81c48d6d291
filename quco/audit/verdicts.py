"""The verdicts an audit reports: each policy applied to an answer's (or a sentence's) signals.

- ``quco``: :class:`quco.risk.policies.QucoPolicy` (data side: claims whose
  head and tail never co-occur or whose head is rare, or, with
  ``claims="pairs"``, unseen head/tail pairs; rare question entities);
- ``flare``: :class:`quco.risk.policies.FlarePolicy` (a token below
  probability 0.4), only when a model scored the answer;
- ``combined``: the packaged fitted scorer (``quco.risk.load_default_scorer``)
  on both sides; with ``--no-model`` a data-only fitted scorer when one is
  packaged, else no ``combined`` verdict.

A verdict's ``probability`` is the policy's continuous score (higher =
riskier; for the rules above 0.5 exactly when flagged; NaN when the policy has
nothing to look at), and ``flagged``/``reasons`` are its decision.

Coverage (:mod:`quco.risk.coverage`): when too few of an answer's named
entities are known to the corpus, the data-side verdicts (``quco``,
``combined``) are ``out_of_coverage``, and ``flagged`` follows the audit's
``on_out_of_coverage`` action as a guard's retrieval would: ``rule`` (default
for now: the rule's own verdict, as before coverage existed), ``retrieve``
(flagged, as the old rule nearly always was), ``pass`` (not flagged)
or ``confidence-only`` (``quco``: FLARE's verdict when a model scored the
answer, else not flagged and no score; ``combined``: its model with the data
features neutral). The score of ``quco`` under ``retrieve`` and ``pass`` is
the rule's, unchanged, so rankings are comparable across actions.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol

from quco.errors import QucoError
from quco.risk.coverage import (
    DATA_SIDE,
    DEFAULT_ACTION,
    DEFAULT_FLOOR,
    Coverage,
    check_action,
    check_floor,
    neutral_features,
    signals_coverage,
)
from quco.risk.features import Signals
from quco.risk.policies import FlarePolicy, QucoPolicy
from quco.risk.thresholds import Thresholds, resolve
from quco.types import Reason, Risk

#: the verdicts of the data side (those coverage can make ``out_of_coverage``)
DATA_POLICIES = frozenset({"quco", "combined"})

log = logging.getLogger(__name__)


class Policy(Protocol):
    """What a verdict needs from a policy (a ``score(signals) -> float`` method is used when present)."""

    name: str

    def assess(self, signals: Signals) -> Risk: ...


class Judge:
    """Applies a set of policies; the first of ``headline_order`` present gives the headline risk.

    Args:
        policies: the policies, in output order.
        headline_order: policy names, preferred first, for the headline ``risk``.
        coverage_floor: below this share of known named entities an answer is ``out_of_coverage``.
        on_out_of_coverage: ``"rule"`` (default), ``"retrieve"``, ``"pass"`` or ``"confidence-only"`` (module docs).
    """

    def __init__(
        self,
        policies: Sequence[Policy],
        *,
        headline_order: Sequence[str] = ("combined", "quco"),
        coverage_floor: float = DEFAULT_FLOOR,
        on_out_of_coverage: str = DEFAULT_ACTION,
    ) -> None:
        self.coverage_floor = check_floor(coverage_floor)
        self.on_out_of_coverage = check_action(on_out_of_coverage)
        self.policies = tuple(policies)
        names = [p.name for p in self.policies]
        self.headline = next((n for n in headline_order if n in names), names[0])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.policies)

    def coverage(self, signals: Signals) -> Coverage:
        """The coverage of an answer (or sentence) under this judge's floor."""
        return signals_coverage(signals, self.coverage_floor)

    def judge(self, signals: Signals, coverage: Coverage | None = None) -> dict[str, Risk]:
        """``{policy name: Risk}`` with the policy's continuous score as the probability.

        Args:
            signals: the evidence.
            coverage: its coverage (computed when omitted).
        """
        cov = coverage if coverage is not None else self.coverage(signals)
        out = {}
        for p in self.policies:
            if cov.out_of_coverage and p.name in DATA_POLICIES:
                out[p.name] = self._out_of_coverage(p, signals, cov)
                continue
            r = p.assess(signals)
            score = getattr(p, "score", None)
            prob = float(score(signals)) if callable(score) else float(r.probability)
            out[p.name] = Risk(prob, r.flagged, p.name, r.reasons)
        return out

    def _out_of_coverage(self, p: Policy, signals: Signals, cov: Coverage) -> Risk:
        act = self.on_out_of_coverage
        score = getattr(p, "score", None)
        if act == "confidence-only":
            if p.name == "combined":
                names = getattr(p, "feature_names_", ())
                r = p.assess(signals, neutral=neutral_features(names))  # type: ignore[call-arg]
                prob, flagged, reasons = float(r.probability), r.flagged, r.reasons
            elif signals.confidence is not None and len(signals.confidence):
                flare = FlarePolicy()
                r = flare.assess(signals)
                prob, flagged, reasons = flare.score(signals), r.flagged, r.reasons
            else:
                prob, flagged, reasons = math.nan, False, ()
            then = "judged on the model's confidence alone"
        else:
            r = p.assess(signals)
            prob = float(score(signals)) if callable(score) else float(r.probability)
            if act == "rule":  # the rule's own verdict; the record still carries the coverage
                return Risk(prob, r.flagged, p.name, r.reasons)
            if act == "retrieve" and r.flagged:  # the rule fired anyway: its verdict stands
                return Risk(prob, True, p.name, r.reasons)
            flagged, reasons = act == "retrieve", r.reasons
            then = "treated as risky (retrieve)" if flagged else "not flagged on the corpus's account (pass)"
        lead = Reason("out_of_coverage", f"{cov.describe()}: {then}", "", cov.share)
        return Risk(prob, flagged, p.name, (lead, *reasons))


def is_data_only(scorer: Any) -> bool:
    """Whether a fitted scorer uses data-side features alone (usable without a model)."""
    names = getattr(scorer, "feature_names_", None) or ()
    return bool(names) and all(n in DATA_SIDE for n in names)


def load_combined(*, model: bool) -> Any | None:
    """The packaged fitted scorer, or ``None`` when there is none for this mode.

    Args:
        model: ``True``: the default scorer (``quco.risk.load_default_scorer``,
            both sides). ``False``: a packaged scorer fitted on data-side
            features alone (any ``quco/data/combined*.json`` whose features
            are all data-side, :data:`quco.risk.coverage.DATA_SIDE`;
            ``combined-data.json`` is shipped), else
            ``None``: a scorer that expects confidence features would see
            them missing on every row.
    """
    try:
        from quco.risk.combined import RiskScorer, load_default_scorer
    except ImportError:  # pragma: no cover - fitted scorer not available
        return None
    if model:
        try:
            return load_default_scorer()
        except QucoError as exc:
            log.warning("no combined verdict: %s", exc)
            return None
    base = resources.files("quco") / "data"
    if not base.is_dir():
        return None
    for ref in sorted(base.iterdir(), key=lambda r: r.name):
        if not (ref.name.startswith("combined") and ref.name.endswith(".json")):
            continue
        try:
            sc = RiskScorer.from_dict(json.loads(ref.read_text(encoding="utf-8")))
        except (QucoError, ValueError, KeyError, TypeError) as exc:
            log.warning("skipping %s: %s", ref.name, exc)
            continue
        if is_data_only(sc):
            return sc
    return None


def default_judge(
    *,
    model: bool,
    combined: Any | None = None,
    claims: str = "triplets",
    thresholds: Thresholds | None = None,
    coverage_floor: float = DEFAULT_FLOOR,
    on_out_of_coverage: str = DEFAULT_ACTION,
) -> Judge:
    """The audit's policies: ``quco`` (in ``claims`` mode), plus ``flare`` with a model, plus ``combined`` when a scorer is given.

    Args:
        model: a model scored the answers (``flare`` is added).
        combined: the fitted scorer of the ``combined`` verdict, or ``None``.
        claims: ``"triplets"`` or ``"pairs"``.
        thresholds: the effective thresholds of ``quco`` (default: 1000, 1, 20).
        coverage_floor: see :class:`Judge`.
        on_out_of_coverage: see :class:`Judge`.
    """
    th = thresholds or resolve()
    pols: list[Policy] = [QucoPolicy.from_thresholds(th, claims=claims)]
    if model:
        pols.append(FlarePolicy())
    if combined is not None:
        pols.append(combined)
    return Judge(pols, coverage_floor=coverage_floor, on_out_of_coverage=on_out_of_coverage)
