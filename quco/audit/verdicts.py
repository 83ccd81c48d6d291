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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any, Protocol

from quco.errors import QucoError
from quco.risk.features import DATA_FEATURES, Signals
from quco.risk.policies import FlarePolicy, QucoPolicy
from quco.types import Risk

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
    """

    def __init__(
        self, policies: Sequence[Policy], *, headline_order: Sequence[str] = ("combined", "quco")
    ) -> None:
        self.policies = tuple(policies)
        names = [p.name for p in self.policies]
        self.headline = next((n for n in headline_order if n in names), names[0])

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.policies)

    def judge(self, signals: Signals) -> dict[str, Risk]:
        """``{policy name: Risk}`` with the policy's continuous score as the probability."""
        out = {}
        for p in self.policies:
            r = p.assess(signals)
            score = getattr(p, "score", None)
            prob = float(score(signals)) if callable(score) else float(r.probability)
            out[p.name] = Risk(prob, r.flagged, p.name, r.reasons)
        return out


def is_data_only(scorer: Any) -> bool:
    """Whether a fitted scorer uses data-side features alone (usable without a model)."""
    names = getattr(scorer, "feature_names_", None) or ()
    return bool(names) and all(n in DATA_FEATURES for n in names)


def load_combined(*, model: bool) -> Any | None:
    """The packaged fitted scorer, or ``None`` when there is none for this mode.

    Args:
        model: ``True``: the default scorer (``quco.risk.load_default_scorer``,
            both sides). ``False``: a packaged scorer fitted on data-side
            features alone (any ``quco/data/combined*.json`` whose features
            are all in ``DATA_FEATURES``), else ``None``: a scorer that expects
            confidence features would see them missing on every row.
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


def default_judge(*, model: bool, combined: Any | None = None, claims: str = "triplets") -> Judge:
    """The audit's policies: ``quco`` (in ``claims`` mode), plus ``flare`` with a model, plus ``combined`` when a scorer is given."""
    pols: list[Policy] = [QucoPolicy(claims=claims)]
    if model:
        pols.append(FlarePolicy())
    if combined is not None:
        pols.append(combined)
    return Judge(pols)
