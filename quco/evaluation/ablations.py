"""The ablations of ``quco eval detectors`` and its development fit (``--fit-rows``).

Each ablation reruns part of the evaluation with one thing changed and rates the
headline slice with a smaller bootstrap: the corpus (an index without the
HaluEval knowledge passages), the co-occurrence window, the model, the claims
mode, the n-gram novelty features, and the QuCo rule's thresholds (absolute,
index-relative, fitted on the development rows). The demo's leave-one-out
indexes (``index-noknowledge``, ``index-nonews``) are built here once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from quco.evaluation.collect import EvalItem
from quco.evaluation.detectors import evaluate_slices, slices_for
from quco.evaluation.run import (
    Components,
    DetectorEvalConfig,
    _features,
    _model_slug,
    _protocol_name,
    accuracy_by_condition,
    collect,
    manifest_sha256,
    rule_thresholds,
    window_mode,
)
from quco.risk.policies import QucoPolicy
from quco.risk.thresholds import Thresholds

log = logging.getLogger(__name__)

#: co-occurrence settings compared by the window ablation: (label, window, mode)
WINDOWS: tuple[tuple[str, int | None, str], ...] = (("doc", None, "doc"), ("1000", 1000, "window"), ("100", 100, "window"))
#: detectors shown in ablation tables
ABLATION_DETECTORS = ("data", "confidence", "combined", "quco_rule", "quco_stage2", "length")

def _headline(items: Sequence[EvalItem], feats: Sequence[dict[str, float]], cfg: DetectorEvalConfig,
              n_boot: int, th: Thresholds, claims: str | None = None, ngrams: bool = False) -> dict[str, Any]:
    """The headline slice's ablation detectors; ``th``: the QuCo rule's thresholds for the index rated."""
    mode = claims or cfg.claims
    slices, _ = evaluate_slices(items, feats, _protocol_name(cfg), n_boot=n_boot, seed=cfg.seed,
                                n_splits=cfg.folds, singles=(), claims=mode, ngrams=ngrams, rule=QucoPolicy.from_thresholds(th, claims=mode))
    first = next(iter(slices.values()))
    return {
        "n": first["n"],
        "accuracy": first["accuracy"],
        "detectors": {k: {m: v.get(m) for m in ("roc_auc", "pr_auc", "ece", "brier", "coverage", "ci")}
                      for k, v in first["detectors"].items() if k in ABLATION_DETECTORS},
    }



def dev_fit(cfg: DetectorEvalConfig, comp: Components) -> tuple[DevSet, dict[str, Any], dict[str, Any]]:
    """The development rows' items and features, and the models fitted on them (``<name>_dev``)."""
    from quco.evaluation.detectors import fitted_features
    from quco.evaluation.devfit import fit_dev_models

    assert cfg.fit_rows is not None
    dcfg = replace(cfg, rows=cfg.fit_rows, out=cfg.fit_generations or cfg.out)
    d_items = collect(dcfg, comp, cfg.model)  # self: cached under fit_generations (default: as the evaluation rows)
    d_feats = _features(dcfg, comp, d_items, cfg.index, cfg.window, window_mode(cfg.window))
    rows = f"{cfg.fit_rows.start}-{cfg.fit_rows.stop - 1}"
    models, info = fit_dev_models(d_items, d_feats, _protocol_name(cfg), fitted_features(cfg.claims),
                                  folds=cfg.folds, seed=cfg.seed,
                                  provenance={"fit_rows": rows, "protocol": cfg.protocol, "claims": cfg.claims,
                                              "index_manifest_sha256": manifest_sha256(cfg.index)})
    return (d_items, d_feats), models, {"rows": rows, **info}


DevSet = tuple[list[EvalItem], list[dict[str, float]]]


def run_ablations(cfg: DetectorEvalConfig, comp: Components, items: list[EvalItem],
                  feats: list[dict[str, float]], th: Thresholds, *, dev: DevSet | None = None) -> dict[str, Any]:
    """Corpus coverage, co-occurrence window, model, claims, n-gram and threshold ablations (headline slice, smaller
    bootstrap); ``th``: the QuCo rule's thresholds for ``cfg.index`` (:func:`~quco.evaluation.run.rule_thresholds`)."""
    nb = cfg.n_boot_ablation
    out: dict[str, Any] = {}
    kinds = cfg.ablation_kinds
    if "thresholds" in kinds:  # the QuCo rule with absolute, index-relative and dev-fitted thresholds
        from quco.evaluation.devfit import thresholds_ablation

        head = next(iter(slices_for(_protocol_name(cfg)).values()))
        keep = [i for i, it in enumerate(items) if head(it)]
        out["thresholds"] = thresholds_ablation(
            [items[i] for i in keep], [feats[i] for i in keep], claims=cfg.claims,
            tokens=th.tokens, dev=dev, protocol=_protocol_name(cfg), n_boot=nb,
            seed=cfg.seed)
    if "claims" in kinds:  # the same rows and features, read as claims or as entity pairs
        out["claims"] = {mode: {"claims": mode, **_headline(items, feats, cfg, nb, th, claims=mode)} for mode in ("triplets", "pairs")}
    if "ngram" in kinds:  # the data side (and combined) fitted without and with the n-gram novelty features
        f_ng = _features(cfg, comp, items, cfg.index, cfg.window, window_mode(cfg.window), ngrams=True)
        out["ngram"] = {
            "without": {"ngrams": False, **_headline(items, feats, cfg, nb, th)},
            "with": {"ngrams": True, **_headline(items, f_ng, cfg, nb, th, ngrams=True)},
        }
    # corpus coverage: the index with and without the domain's own corpus (QA: the knowledge passages;
    # summarization: the news articles)
    if cfg.protocol == "summarization":
        dom, what = "news", "the news articles"
        nk = nonews_index_for(cfg.index) if "corpus" in kinds else None
    else:
        dom, what = "knowledge", "the knowledge passages"
        nk = (cfg.noknowledge_index or noknowledge_index_for(cfg.index)) if "corpus" in kinds else None
    corpus: dict[str, Any] = {f"with_{dom}": {"index": cfg.index, **_headline(items, feats, cfg, nb, th)}}
    if nk:
        f_nk = _features(cfg, comp, items, nk, cfg.window, window_mode(cfg.window))
        corpus[f"without_{dom}"] = {"index": nk, **_headline(items, f_nk, cfg, nb, rule_thresholds(cfg, comp, nk))}
    else:
        corpus[f"without_{dom}"] = {"skipped": f"no index without {what} for this --index"}
    if "corpus" in kinds:
        out["corpus"] = corpus
    # window
    win: dict[str, Any] = {}
    for label, w, mode in WINDOWS if "window" in kinds else ():
        f_w = feats if (w == cfg.window and mode == window_mode(cfg.window)) else _features(
            cfg, comp, items, cfg.index, w, mode)
        win[label] = _headline(items, f_w, cfg, nb, th)
    if "window" in kinds:
        out["window"] = win
    # model
    if "model" in kinds and (cfg.protocol in ("self", "paired") or cfg.use_model):
        from quco.models import DEFAULT_LM, GEMMA_LM, canonical

        other = cfg.second_model or (GEMMA_LM if canonical(cfg.model) == DEFAULT_LM else DEFAULT_LM)
        models: dict[str, Any] = {_model_slug(cfg.model): _headline(items, feats, cfg, nb, th)}
        cfg2 = replace(cfg, model=other)
        items2 = collect(cfg2, comp, other)
        f2 = _features(cfg2, comp, items2, cfg.index, cfg.window, window_mode(cfg.window))
        h2 = _headline(items2, f2, cfg2, nb, th)
        if cfg.protocol == "self":
            h2["accuracy_by_condition"] = accuracy_by_condition(items2)
        models[_model_slug(other)] = h2
        out["model"] = models
    return out


def noknowledge_index_for(index: str) -> str | None:
    """The demo's index without knowledge passages beside a demo ``index`` folder, built if missing.

    Returns None when ``index`` is not a demo index folder (a URL or another index).
    """
    return _ablation_index_for(index, "knowledge")


def nonews_index_for(index: str) -> str | None:
    """The demo's index without the HaluEval news articles beside a demo ``index`` folder, built if missing.

    Against it the ``summarization`` protocol is an unseen-domain evaluation:
    the articles the summaries are about are not in the corpus. Returns None
    when ``index`` is not a demo index folder (a URL or another index).
    """
    return _ablation_index_for(index, "news")


def _ablation_index_for(index: str, leave_out: str) -> str | None:
    """The demo index without one corpus (``"knowledge"`` or ``"news"``) beside ``index``, built once."""
    from quco.demo import DemoPaths

    p = Path(index)
    if index.startswith(("http://", "https://")) or p.name != "index":
        return None
    paths = DemoPaths(p.parent)
    target = paths.index_noknowledge if leave_out == "knowledge" else paths.index_nonews
    if (target / "quco-index.json").exists():
        return str(target)
    files = paths.corpus_files(knowledge=leave_out != "knowledge", news=leave_out != "news")
    if not all(f.exists() for f in files):
        return None
    from quco.corpus.build import build_index

    log.info("building %s (ablation index without the %s corpus, once)", target, leave_out)
    build_index([str(f) for f in files], target)
    return str(target)
