"""A self-contained HTML report of an audit, built by streaming its output file.

:func:`build_report` reads ``OUT.jsonl`` once, line by line, keeping only the
score and label arrays and the ``top`` riskiest records, so it works on audits
of any size. The page (no network: inline CSS and JS, figures as base64 PNGs
drawn with matplotlib's Agg canvas) shows:

- a summary: answers, bad rows, labels, share flagged per policy;
- coverage (:mod:`quco.audit.coverage_report`): its distribution, the flag
  rate per coverage band, and a warning when most answers are out of coverage;
- the risk distribution (histogram, split by label when labels are present);
- with labels of both classes: ROC curves per policy, a reliability diagram,
  and the metrics of ``quco eval detectors``
  (:func:`quco.evaluation.metrics.evaluate_detector`);
- the riskiest answers, with their entities highlighted and the counts behind
  each verdict;
- a sortable table of the riskiest answers (click a header).

Every text from the audited rows is HTML-escaped.
"""

from __future__ import annotations

import base64
import heapq
import html
import io
import json
import math
import string
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from quco.audit.coverage_report import CoverageAcc, coverage_section
from quco.audit.runner import side_paths
from quco.errors import BadInputError

#: riskiest answers shown as full cards (the table lists ``top``)
CARDS = 20
_POLICY_ORDER = ("quco", "flare", "combined")


def _f(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


@dataclass
class _Acc:
    """What the report keeps while streaming the audit output."""

    top: int
    n: int = 0
    risk: array = field(default_factory=lambda: array("d"))
    label: array = field(default_factory=lambda: array("b"))  # -1 = no label
    probs: dict[str, array] = field(default_factory=dict)
    flagged: dict[str, int] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    headline: str = "quco"
    heap: list[tuple[float, int, dict[str, Any]]] = field(default_factory=list)
    bad_json: int = 0
    coverage: CoverageAcc = field(default_factory=CoverageAcc)

    def add(self, rec: Mapping[str, Any]) -> None:
        self.coverage.add(rec)
        i = self.n
        self.n += 1
        r = _f(rec.get("risk"))
        self.risk.append(r)
        lab = rec.get("label")
        self.label.append(int(lab) if lab in (0, 1) else -1)
        self.headline = str(rec.get("risk_policy") or self.headline)
        verdicts = rec.get("verdicts") or {}
        for name, v in verdicts.items():
            if name not in self.probs:
                self.probs[name] = array("d", [math.nan] * i)
                self.flagged[name] = 0
                self.seen[name] = 0
            self.probs[name].append(_f(v.get("probability")))
            self.flagged[name] += bool(v.get("flagged"))
            self.seen[name] += 1
        for name, arr in self.probs.items():
            if name not in verdicts:
                arr.append(math.nan)
        key = -1.0 if math.isnan(r) else r
        item = (key, -i, _slim(rec))
        if len(self.heap) < self.top:
            heapq.heappush(self.heap, item)
        elif item[:2] > self.heap[0][:2]:
            heapq.heapreplace(self.heap, item)

    def riskiest(self) -> list[dict[str, Any]]:
        return [rec for _, _, rec in sorted(self.heap, key=lambda t: (t[0], t[1]), reverse=True)]


def _slim(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the report shows (drops pass-through fields and long token lists)."""
    keep = ("id", "line", "question", "answer", "label", "risk", "flagged", "risk_policy", "verdicts",
            "question_entities", "answer_entities", "pairs", "sentences", "confidence", "context")  # fmt: skip
    return {k: rec[k] for k in keep if k in rec}


def _iter_records(path: Path) -> Iterator[dict[str, Any] | None]:
    with open(path, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError):
                yield None
                continue
            yield rec if isinstance(rec, dict) else None


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


# -------------------------------------------------------------------- figures


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(w: float = 5.2, h: float = 3.6) -> Any:
    from quco._deps import require

    require("matplotlib")
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def _hist(risk: Any, label: Any, headline: str) -> str:
    import numpy as np

    fig = _figure()
    ax = fig.add_subplot()
    ok = np.isfinite(risk)
    bins = np.linspace(0.0, 1.0, 21)
    has = label >= 0
    if has.any() and (label[has] == 1).any() and (label[has] == 0).any():
        ax.hist(risk[ok & (label == 0)], bins=bins, alpha=0.6, label="faithful (label 0)", color="#1e8449")
        ax.hist(
            risk[ok & (label == 1)], bins=bins, alpha=0.6, label="hallucinated (label 1)", color="#c0392b"
        )
        if (ok & ~has).any():
            ax.hist(risk[ok & ~has], bins=bins, alpha=0.5, label="unlabelled", color="#7f8c8d")
        ax.legend(fontsize=8)
    else:
        ax.hist(risk[ok], bins=bins, color="#2e86c1")
    ax.axvline(0.5, color="#555", lw=0.8, ls="--")
    ax.set_xlabel(f"risk ({headline}); higher = riskier")
    ax.set_ylabel("answers")
    ax.set_title("Risk distribution")
    return _png(fig)


def _roc(y: Any, scores: Mapping[str, Any]) -> str:
    from quco._deps import require
    from quco.evaluation.metrics import fill_missing

    roc_curve = require("sklearn.metrics").roc_curve
    fig = _figure(4.6, 4.2)
    ax = fig.add_subplot()
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(y, fill_missing(s))
        ax.plot(fpr, tpr, label=name, lw=1.6)
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--", label="chance")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (recall)")
    ax.set_title("ROC curves (label 1 = hallucinated)")
    ax.legend(fontsize=8, loc="lower right")
    return _png(fig)


def _reliability(y: Any, probs: Mapping[str, Any]) -> str:
    import numpy as np

    from quco.evaluation.metrics import ECE_BINS, fill_missing

    fig = _figure(4.6, 4.2)
    ax = fig.add_subplot()
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    for name, p in probs.items():
        pf = np.clip(fill_missing(p), 0.0, 1.0)
        ids = np.clip(np.digitize(pf, edges[1:-1]), 0, ECE_BINS - 1)
        xs, ys = [], []
        for b in range(ECE_BINS):
            m = ids == b
            if m.any():
                xs.append(float(pf[m].mean()))
                ys.append(float(y[m].mean()))
        ax.plot(xs, ys, marker="o", lw=1.4, label=name)
    ax.plot([0, 1], [0, 1], color="#999", lw=0.8, ls="--", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted risk (bin mean)")
    ax.set_ylabel("observed share hallucinated")
    ax.set_title("Reliability diagram")
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


# ----------------------------------------------------------------------- html

_e = html.escape


def _fmt(x: Any, nd: int = 3) -> str:
    v = _f(x)
    return "—" if math.isnan(v) else f"{v:.{nd}f}"


def _highlight(text: str, ents: Sequence[Mapping[str, Any]], bad: set[str], rare: set[str]) -> str:
    """``text`` HTML-escaped with its entities wrapped in ``<mark>`` (tooltip: corpus count)."""
    spans = sorted(
        (int(e.get("start", 0)), int(e.get("end", 0)), e)
        for e in ents
        if isinstance(e.get("start"), int) and isinstance(e.get("end"), int)
    )
    out: list[str] = []
    pos = 0
    for a, b, e in spans:
        if a < pos or b <= a or b > len(text):
            continue
        out.append(_e(text[pos:a]))
        key = str(e.get("text", "")).casefold()
        cls = "ent bad" if key in bad else ("ent rare" if key in rare else "ent")
        tip = f"{e.get('text')} · {e.get('label')} · count {e.get('count')}{' (approx.)' if e.get('approx') else ''}"
        out.append(f'<mark class="{cls}" title="{_e(tip)}">{_e(text[a:b])}</mark>')
        pos = b
    out.append(_e(text[pos:]))
    return "".join(out)


def _badge(v: Mapping[str, Any] | None, name: str) -> str:
    if not v:
        return f'<span class="badge n">{_e(name)}: —</span>'
    cls = "f" if v.get("flagged") else "p"
    word = "flagged" if v.get("flagged") else "pass"
    return f'<span class="badge {cls}">{_e(name)}: {word} {_fmt(v.get("probability"), 2)}</span>'


def _card(rec: Mapping[str, Any], rank: int) -> str:
    verdicts: Mapping[str, Any] = rec.get("verdicts") or {}
    pairs = rec.get("pairs") or []
    bad = {str(p.get(k, "")).casefold() for p in pairs if _f(p.get("count")) < 1 for k in ("head", "tail")}
    rare = {
        str(e.get("text", "")).casefold()
        for e in rec.get("question_entities") or []
        if _f(e.get("count")) < 1000
    }
    flagged = bool(rec.get("flagged"))
    lab = rec.get("label")
    lab_s = "" if lab is None else f" · label {'1 (hallucinated)' if lab == 1 else '0 (faithful)'}"
    parts = [
        f'<div class="answer{"" if flagged else " ok"}">',
        f'<div class="meta">#{rank} · id {_e(str(rec.get("id")))} · line {_e(str(rec.get("line")))}'
        f" · risk {_fmt(rec.get('risk'))} ({_e(str(rec.get('risk_policy', '')))}){_e(lab_s)}</div>",
        "<div>" + "".join(_badge(verdicts.get(n), n) for n in _ordered(verdicts)) + "</div>",
        f'<div class="q">Q: {_highlight(str(rec.get("question", "")), rec.get("question_entities") or [], bad, rare)}</div>',
        f'<div class="a">A: {_highlight(str(rec.get("answer", "")), rec.get("answer_entities") or [], bad, rare)}</div>',
    ]
    reasons = []
    for n in _ordered(verdicts):
        v = verdicts[n]
        for r in v.get("reasons") or []:
            reasons.append(
                f"<li><b>{_e(n)}</b> · {_e(str(r.get('kind', '')))}: {_e(str(r.get('message', '')))}</li>"
            )
    reasons = list(dict.fromkeys(reasons))
    if reasons:
        shown, more = (reasons, []) if len(reasons) <= 4 else (reasons[:3], reasons[3:])
        parts.append('<ul class="reasons">' + "".join(shown) + "</ul>")
        if more:
            parts.append(
                f"<details><summary>{len(more)} more reasons</summary>"
                f'<ul class="reasons">{"".join(more)}</ul></details>'
            )
    rows = []
    for e in (rec.get("question_entities") or []) + (rec.get("answer_entities") or []):
        rows.append(
            f"<tr><td>entity</td><td>{_e(str(e.get('text', '')))}</td><td>{_e(str(e.get('label', '')))}</td>"
            f'<td class="num">{_e(str(e.get("count")))}{"~" if e.get("approx") else ""}</td></tr>'
        )
    for p in pairs:
        rows.append(
            f"<tr><td>pair</td><td>{_e(str(p.get('head', '')))} | {_e(str(p.get('tail', '')))}</td><td>co-occurrence</td>"
            f'<td class="num">{_e(str(p.get("count")))}{"~" if p.get("approx") else ""}</td></tr>'
        )
    if rows:
        parts.append(
            "<details><summary>counts behind the verdicts</summary><table><thead><tr><th>what</th><th>text</th>"
            '<th>kind</th><th class="num">count</th></tr></thead><tbody>'
            + "".join(rows)
            + "</tbody></table></details>"
        )
    sents = rec.get("sentences") or []
    if len(sents) > 1:
        srows = "".join(
            f'<tr><td class="num">{_fmt(s.get("risk"))}</td><td>{"⚠" if s.get("flagged") else ""}</td>'
            f"<td>{_e(str(s.get('text', '')))}</td></tr>"
            for s in sents
        )
        parts.append(
            '<details><summary>per-sentence risk</summary><table><thead><tr><th class="num">risk</th><th></th>'
            f"<th>sentence</th></tr></thead><tbody>{srows}</tbody></table></details>"
        )
    ctx = rec.get("context")
    if isinstance(ctx, Mapping):
        ents = ", ".join(
            f"{_e(str(x.get('text', '')))} {'✓' if x.get('supported') else '✗'}"
            for x in ctx.get("entities") or []
        )
        parts.append(
            f'<div class="small">context supports {_fmt(ctx.get("supported_share"), 2)} of the answer entities: {ents}</div>'
        )
    parts.append("</div>")
    return "\n".join(parts)


def _ordered(names: Mapping[str, Any] | Sequence[str]) -> list[str]:
    keys = list(names)
    return [n for n in _POLICY_ORDER if n in keys] + [n for n in keys if n not in _POLICY_ORDER]


def _table(recs: Sequence[Mapping[str, Any]], policies: Sequence[str], labels: bool) -> str:
    head = ['<th class="num">rank</th>', "<th>id</th>", '<th class="num">risk</th>']
    head += [f'<th class="num">{_e(p)}</th>' for p in policies]
    if labels:
        head.append('<th class="num">label</th>')
    head += [
        '<th class="num">entities</th>',
        '<th class="num">min pair count</th>',
        "<th>question</th>",
        "<th>answer</th>",
    ]
    body = []
    for i, r in enumerate(recs, 1):
        v = r.get("verdicts") or {}
        cells = [f'<td class="num">{i}</td>', f"<td>{_e(str(r.get('id')))}</td>", _numcell(r.get("risk"))]
        cells += [_numcell((v.get(p) or {}).get("probability")) for p in policies]
        if labels:
            lab = r.get("label")
            cells.append(
                f'<td class="num" data-v="{"" if lab is None else lab}">{"" if lab is None else lab}</td>'
            )
        pc = [_f(p.get("count")) for p in r.get("pairs") or []]
        cells.append(f'<td class="num">{len(r.get("answer_entities") or [])}</td>')
        cells.append(_numcell(min(pc) if pc else None, nd=0))
        cells.append(f"<td>{_e(_clip(str(r.get('question', ''))))}</td>")
        cells.append(f"<td>{_e(_clip(str(r.get('answer', ''))))}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<div class="tablewrap"><table class="sortable" id="answers"><thead><tr>'
        + "".join(head)
        + "</tr></thead><tbody>"
        + "\n".join(body)
        + "</tbody></table></div>"
    )


def _numcell(x: Any, nd: int = 3) -> str:
    v = _f(x)
    if math.isnan(v):
        return '<td class="num" data-v="">—</td>'
    return f'<td class="num" data-v="{v!r}">{v:.{nd}f}</td>'


def _clip(s: str, n: int = 160) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def _metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    cols = [("roc_auc", "ROC-AUC ↑"), ("pr_auc", "PR-AUC ↑"), ("ece", "ECE ↓"), ("brier", "Brier ↓"),
            ("recall_at_fpr10", "recall@10%FPR ↑"), ("coverage", "coverage")]  # fmt: skip
    head = "<th>policy</th>" + "".join(f'<th class="num">{_e(t)}</th>' for _, t in cols)
    rows = []
    for name, m in metrics.items():
        cells = []
        for k, _ in cols:
            ci = (m.get("ci") or {}).get(k)
            tip = f' title="95% CI {_fmt(ci[0])}–{_fmt(ci[1])}"' if ci and None not in ci else ""
            cells.append(f'<td class="num"{tip}>{_fmt(m.get(k))}</td>')
        rows.append(f"<tr><td>{_e(name)}</td>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


# ---------------------------------------------------------------------- build


def report_data(out_path: str | Path, *, top: int = 200) -> _Acc:
    """Stream an audit output file into the arrays and top records the report needs."""
    path = Path(out_path)
    if not path.is_file():
        raise BadInputError(f"audit output not found: {path}")
    acc = _Acc(top=max(int(top), 1))
    for rec in _iter_records(path):
        if rec is None:
            acc.bad_json += 1
        else:
            acc.add(rec)
    return acc


def build_report(
    out_path: str | Path, report_path: str | Path, *, top: int = 200, title: str | None = None
) -> Path:
    """Write the HTML report of an audit.

    Args:
        out_path: the audit output (``quco audit --out``).
        report_path: the HTML file to write (replaced atomically).
        top: riskiest answers listed in the table (the first :data:`CARDS`
            also as cards).
        title: page title (default: "quco audit — <file name>").

    Returns:
        The report's path.

    Raises:
        BadInputError: the audit output does not exist.
    """
    import numpy as np

    src = Path(out_path)
    acc = report_data(src, top=top)
    bad_path, _ = side_paths(src)
    n_bad = _count_lines(bad_path)
    title = title or f"quco audit — {src.name}"
    risk = np.frombuffer(acc.risk, dtype=float) if acc.n else np.zeros(0)
    label = np.frombuffer(acc.label, dtype=np.int8).astype(int) if acc.n else np.zeros(0, dtype=int)
    policies = _ordered(acc.probs)
    has = label >= 0
    y = label[has]
    two = bool(y.size) and bool((y == 1).any()) and bool((y == 0).any())

    b: list[str] = [f"<h1>{_e(title)}</h1>"]
    b.append(
        f'<p class="sub">From <code>{_e(str(src))}</code>. Risk is the probability of hallucination '
        f"given by the <b>{_e(acc.headline)}</b> verdict (higher = riskier; 0.5 is the decision line).</p>"
    )
    # summary
    cards = [("answers audited", f"{acc.n:,}"), ("bad rows skipped", f"{n_bad:,}")]
    if has.any():
        cards.append(("labelled", f"{int(has.sum()):,}"))
        cards.append(("share hallucinated (labels)", f"{float((y == 1).mean()):.1%}"))
    finite = risk[np.isfinite(risk)] if acc.n else risk
    cards.append(("mean risk", f"{float(finite.mean()):.3f}" if finite.size else "—"))
    if finite.size < acc.n:
        cards.append(("without a risk (nothing to check)", f"{acc.n - finite.size:,}"))
    for p in policies:
        seen = acc.seen.get(p, 0)
        cards.append((f"flagged by {p}", f"{acc.flagged.get(p, 0) / seen:.1%}" if seen else "—"))
    b.append('<h2 id="summary">Summary</h2><div class="cards">')
    b += [
        f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>' for k, v in cards
    ]
    b.append("</div>")
    if acc.bad_json:
        b.append(f'<p class="small">{acc.bad_json} unreadable line(s) in the audit output were ignored.</p>')
    b.append(coverage_section(acc.coverage, acc.headline))
    # figures
    b.append('<h2 id="figures">Figures</h2><div class="figs">')
    if acc.n:
        b.append(
            f'<figure><img alt="risk histogram" src="data:image/png;base64,{_hist(risk, label, acc.headline)}">'
            "<figcaption>Distribution of the headline risk.</figcaption></figure>"
        )
    metrics: dict[str, dict[str, Any]] = {}
    if two:
        from quco.evaluation.metrics import evaluate_detector

        scores = {p: np.frombuffer(acc.probs[p], dtype=float)[has] for p in policies}
        scores = {p: s for p, s in scores.items() if np.isfinite(s).any()}
        n_boot = 200 if y.size <= 20_000 else 0
        for p, s in scores.items():
            metrics[p] = evaluate_detector(y, s, n_boot=n_boot)
        if scores:
            b.append(
                f'<figure><img alt="ROC curves" src="data:image/png;base64,{_roc(y, scores)}">'
                "<figcaption>ROC curves of each policy's score against the labels.</figcaption></figure>"
            )
            b.append(
                f'<figure><img alt="reliability diagram" src="data:image/png;base64,{_reliability(y, scores)}">'
                "<figcaption>Reliability: predicted risk against the observed share hallucinated "
                "(10 equal-width bins). Only a fitted verdict (combined) claims to be a probability; "
                "the rule scores (quco, flare) rank but are not calibrated.</figcaption></figure>"
            )
    b.append("</div>")
    if metrics:
        b.append('<h2 id="metrics">Detector metrics</h2>')
        b.append(
            '<p class="small">As in <code>quco eval detectors</code>: label 1 = hallucinated; ROC-AUC is the '
            "headline (0.5 = chance); hover a number for its bootstrap 95% interval.</p>"
        )
        b.append(_metrics_table(metrics))
    elif has.any():
        b.append('<p class="small">Labels hold a single class: no ROC curve or metric.</p>')
    # riskiest
    recs = acc.riskiest()
    b.append(f'<h2 id="riskiest">Riskiest answers</h2><p class="small">The {min(CARDS, len(recs))} riskiest of '
             f"{acc.n:,}; entities highlighted (red: in a pair that never co-occurs; amber: rare question entity; "
             "hover for the corpus count).</p>")  # fmt: skip
    b += [_card(r, i) for i, r in enumerate(recs[:CARDS], 1)]
    b.append(
        f'<h2 id="table">Answers</h2><p class="small">The {len(recs):,} riskiest answers; click a header to sort.</p>'
    )
    b.append(_table(recs, policies, bool(has.any())))

    tpl = string.Template(resources.files("quco.audit").joinpath("report_template.html").read_text("utf-8"))
    page = tpl.safe_substitute(title=_e(title), body="\n".join(b))
    dest = Path(report_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(dest)
    return dest
