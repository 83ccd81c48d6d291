"""Coverage in an audit: how much of the audited answers the index knows, and what that does to the flags.

Every audit record carries ``coverage`` (:class:`quco.risk.coverage.Coverage`:
the share of the question's and the answer's named entities with a non-zero
count). :class:`CoverageAcc` streams the records into a distribution of those
shares and the headline flag rate per coverage band; :func:`coverage_section`
renders it for the HTML report (:mod:`quco.audit.report`): a histogram, a
table of bands, and a warning when most of the file is out of coverage (the
data side then judges the index, not the answers: build or point to an index
that covers the domain, or set ``--on-out-of-coverage``).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: coverage bands of the report: (label, low, high) with low <= share < high (the last includes 1)
BANDS: tuple[tuple[str, float, float], ...] = (
    ("0–25%", 0.0, 0.25),
    ("25–50%", 0.25, 0.5),
    ("50–75%", 0.5, 0.75),
    ("75–100%", 0.75, 1.0000001),
)
#: the report warns when more than this share of the answers is out of coverage
WARN_SHARE = 0.5


@dataclass
class CoverageAcc:
    """Coverage figures of an audit output, accumulated record by record.

    Attributes:
        n: records seen.
        out_of_coverage: records whose verdict is ``out_of_coverage``.
        no_entities: records without a named entity (coverage cannot be judged).
        shares: the coverage share of each record that has one.
        band_n: records per band (labels of :data:`BANDS`, then ``"no entities"``).
        band_flagged: of them, flagged by the headline verdict.
        floor: the floor the audit used (the last record's).
    """

    n: int = 0
    out_of_coverage: int = 0
    no_entities: int = 0
    shares: list[float] = field(default_factory=list)
    band_n: dict[str, int] = field(default_factory=dict)
    band_flagged: dict[str, int] = field(default_factory=dict)
    floor: float | None = None

    def add(self, rec: Mapping[str, Any]) -> None:
        cov = rec.get("coverage")
        if not isinstance(cov, Mapping):
            return  # an audit written before coverage existed
        self.n += 1
        verdict = cov.get("verdict")
        share = cov.get("share")
        if isinstance(cov.get("floor"), (int, float)):
            self.floor = float(cov["floor"])
        self.out_of_coverage += verdict == "out_of_coverage"
        if not isinstance(share, (int, float)) or isinstance(share, bool) or math.isnan(share):
            self.no_entities += 1
            band = "no entities"
        else:
            self.shares.append(float(share))
            band = next(lbl for lbl, lo, hi in BANDS if lo <= share < hi)
        self.band_n[band] = self.band_n.get(band, 0) + 1
        self.band_flagged[band] = self.band_flagged.get(band, 0) + bool(rec.get("flagged"))

    @property
    def share_out(self) -> float:
        """Share of the records out of coverage (NaN without records)."""
        return self.out_of_coverage / self.n if self.n else math.nan

    @property
    def warn(self) -> bool:
        """Whether most of the file is out of coverage."""
        return bool(self.n) and self.share_out > WARN_SHARE


def coverage_summary(out_path: str | Path) -> CoverageAcc:
    """Stream an audit output file into a :class:`CoverageAcc` (unreadable lines are skipped)."""
    acc = CoverageAcc()
    with open(out_path, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(rec, dict):
                acc.add(rec)
    return acc


def _hist(acc: CoverageAcc) -> str:
    from quco.audit.report import _figure, _png

    fig = _figure(5.2, 3.2)
    ax = fig.add_subplot(111)
    ax.hist(acc.shares, bins=[i / 10 for i in range(11)], color="#4c78a8", edgecolor="white")
    if acc.floor is not None:
        ax.axvline(acc.floor, color="#e45756", linestyle="--", label=f"floor {acc.floor:g}")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("coverage: share of named entities known to the index")
    ax.set_ylabel("answers")
    return _png(fig)


def coverage_section(acc: CoverageAcc, headline: str) -> str:
    """The report's coverage section (empty for an audit written before coverage existed)."""
    if not acc.n:
        return ""
    e = html.escape
    b = ['<h2 id="coverage">Coverage</h2>']
    if acc.warn:
        b.append(
            f'<p class="warn"><b>Most of this file is out of coverage:</b> for {acc.share_out:.0%} of the answers '
            "the index knows fewer named entities than the floor. The data side then measures the index, not "
            "the answers: use an index that covers this domain, or choose what to do with "
            "<code>--on-out-of-coverage</code>.</p>"
        )
    b.append(
        f'<p class="small">{acc.out_of_coverage:,} of {acc.n:,} answers ({acc.share_out:.1%}) are out of coverage'
        + (f" (floor {acc.floor:g})" if acc.floor is not None else "")
        + f"; {acc.no_entities:,} have no named entity. Flag rate: share flagged by the "
        f"<b>{e(headline)}</b> verdict in each band.</p>"
    )
    if acc.shares:
        b.append(
            f'<div class="figs"><figure><img alt="coverage histogram" src="data:image/png;base64,{_hist(acc)}">'
            "<figcaption>Distribution of coverage.</figcaption></figure></div>"
        )
    rows = []
    for lbl in [*(x[0] for x in BANDS), "no entities"]:
        n = acc.band_n.get(lbl, 0)
        rate = f"{acc.band_flagged.get(lbl, 0) / n:.1%}" if n else "—"
        rows.append(f'<tr><td>{e(lbl)}</td><td class="num">{n:,}</td><td class="num">{rate}</td></tr>')
    b.append(
        '<table class="coverage"><thead><tr><th>coverage</th><th>answers</th><th>flag rate</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return "\n".join(b)
