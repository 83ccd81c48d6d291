"""Markdown tables of a detector evaluation (``detectors.md``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quco.evaluation.coverage_figs import coverage_markdown

ORDER = ("combined", "data", "confidence", "combined_dev", "data_dev", "confidence_dev", "shipped", "quco_rule",
         "quco_stage1", "quco_stage2", "flare", "length", "random")
#: detectors shown per ablation kind (claims: the detectors the claims mode changes)
ABLATION_COLUMNS = {"claims": ("data", "combined", "quco_rule", "quco_stage2"), "ngram": ("data", "combined")}


def _f(x: Any, nd: int = 3) -> str:
    return "–" if x is None else f"{x:.{nd}f}"


def _ci(m: Mapping[str, Any], key: str) -> str:
    ci = (m.get("ci") or {}).get(key)
    if not ci or ci[0] is None:
        return _f(m.get(key))
    return f"{_f(m.get(key))} [{_f(ci[0], 2)}, {_f(ci[1], 2)}]"


def detector_table(detectors: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per detector: ROC-AUC (headline) with CI, PR-AUC, ECE, Brier, recall@FPR, coverage."""
    head = (
        "| detector | kind | ROC-AUC [95% CI] | PR-AUC | ECE | Brier | recall@5%FPR | recall@10%FPR | coverage |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
    )
    names = [n for n in ORDER if n in detectors] + sorted(n for n in detectors if n not in ORDER)
    lines = []
    for n in names:
        m = detectors[n]
        extra = f" (cv {_f(m['cv_roc_auc'])})" if m.get("cv_roc_auc") is not None else ""
        lines.append(
            f"| {n} | {m.get('kind', '')} | {_ci(m, 'roc_auc')}{extra} | {_f(m.get('pr_auc'))} | {_f(m.get('ece'))} "
            f"| {_f(m.get('brier'))} | {_f(m.get('recall_at_fpr05'), 2)} | {_f(m.get('recall_at_fpr10'), 2)} "
            f"| {_f(m.get('coverage'), 2)} |"
        )
    return head + "\n".join(lines) + "\n"


def _ablation_table(title: str, variants: Mapping[str, Any], names: tuple[str, ...] = ()) -> str:
    names = names or ("combined", "data", "confidence", "quco_rule", "length")
    out = [f"### {title}\n", "| variant | n | accuracy | " + " | ".join(names) + " |",
           "| --- | --- | --- | " + " | ".join("---" for _ in names) + " |"]
    for v, r in variants.items():
        if "skipped" in r:
            out.append(f"| {v} | – | – | " + " | ".join("–" for _ in names) + f" |  ({r['skipped']})")
            continue
        d = r.get("detectors", {})
        out.append(f"| {v} | {r.get('n')} | {_f(r.get('accuracy'))} | "
                   + " | ".join(_ci(d[n], "roc_auc") if n in d else "–" for n in names) + " |")
    return "\n".join(out) + "\n"


def thresholds_table(variants: Mapping[str, Any]) -> str:
    """The ``thresholds`` ablation: the QuCo rule with absolute, index-relative and fitted thresholds."""
    out = ["### QuCo rule: absolute vs index-relative vs dev-fitted thresholds\n",
           "| thresholds | τ_entity, τ_cooc, τ_tuple (effective) | specs | ROC-AUC [95% CI] | flag rate "
           "| true rate | TPR | FPR |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for v, r in variants.items():
        if "skipped" in r:
            out.append(f"| {v} | – | – | – | – | – | – | – |  ({r['skipped']})")
            continue
        th = r.get("thresholds", {})
        eff = ", ".join(f"{th.get(k, float('nan')):.4g}" for k in ("tau_entity", "tau_cooc", "tau_tuple"))
        out.append(f"| {v} | {eff} | {' '.join(f'`{x}`' for x in r.get('specs', []))} | {_ci(r, 'roc_auc')} "
                   f"| {_f(r.get('flag_rate'))} | {_f(r.get('true_rate'))} | {_f(r.get('tpr'))} | {_f(r.get('fpr'))} |")
    return "\n".join(out) + "\n"


def dev_fit_text(info: Mapping[str, Any]) -> str:
    """What ``--fit-rows`` fitted: rows, size, the C chosen per model."""
    if "skipped" in info:
        return f"Development fit (rows {info.get('rows')}): skipped, {info['skipped']}.\n"
    parts = [f"{k}: C {m['C']:g}" if "C" in m else f"{k}: skipped ({m.get('skipped')})"
             for k, m in info.get("models", {}).items()]
    return (f"`*_dev` detectors: fitted once on development rows {info.get('rows')} (n = {info.get('n')}, "
            f"{info.get('positives')} hallucinated), C chosen by grouped CV there over {info.get('C_grid')}; "
            + "; ".join(parts) + ". They are rated on the evaluation rows as they are (no refit).\n")


def markdown_report(doc: Mapping[str, Any]) -> str:
    """The whole ``detectors.md``: headline table, per-slice tables, ablations."""
    st = doc.get("settings", {})
    parts = [
        f"# Detector evaluation — protocol `{doc['protocol']}`\n",
        f"Rows {doc.get('rows')}, model `{st.get('model')}`, index `{st.get('index')}`, window {st.get('window')}, "
        f"claims `{st.get('claims', 'pairs')}`. "
        f"Higher score = riskier; label 1 = hallucinated. Headline: ROC-AUC of the `{doc.get('headline_slice')}` "
        f"slice (n = {doc['n']}, accuracy {_f(doc.get('accuracy'))}). Fitted detectors: {st.get('cv')}; "
        f"95% bootstrap intervals ({st.get('n_boot')} resamples). ECE: 10 equal-width bins. "
        "Single features and `length` are ranked by the raw value with its a-priori sign; `cv` = ROC-AUC "
        "of the cross-validated one-feature model that gives their probabilities (ECE, Brier).\n",
    ]
    if "accuracy_by_condition" in doc:
        acc = doc["accuracy_by_condition"]
        parts.append(
            "Accuracy by condition (all questions): "
            + ", ".join(f"{k} {_f(v)}" for k, v in acc.items())
            + f"; comparison questions: {_f(doc.get('comparison_share'))} of rows.\n"
        )
    if doc.get("dev_fit"):
        parts.append(dev_fit_text(doc["dev_fit"]))
    for name, s in doc.get("slices", {}).items():
        parts.append(f"## {name} — {s.get('note', '')} (n = {s['n']}, accuracy {_f(s.get('accuracy'))})\n")
        if s.get("detectors"):
            parts.append(detector_table(s["detectors"]))
        else:
            parts.append(f"skipped: {s.get('skipped', '')}\n")
    parts.append(coverage_markdown(doc.get("coverage_figures")))
    ab = doc.get("ablations")
    if ab:
        parts.append("## Ablations (headline slice; ROC-AUC [95% CI])\n")
        titles = {"corpus": "Corpus coverage", "window": "Co-occurrence window", "model": "Model",
                  "claims": "Claims: triplets and tuples vs entity pairs (same rows, same features)",
                  "ngram": "N-gram novelty: the data side without and with it"}
        for k, v in ab.items():
            if k == "thresholds":
                parts.append(thresholds_table(v))
                continue
            parts.append(_ablation_table(titles.get(k, k), v, ABLATION_COLUMNS.get(k, ())))
    t = doc.get("timing")
    if t:
        parts.append("Timing (s): " + ", ".join(f"{k} {v}" for k, v in t.items()) + "\n")
    return "\n".join(parts)
