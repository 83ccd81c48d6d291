"""``quco calibrate``: refit the combined risk scorer on a user's labelled answers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from quco.errors import BadInputError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "calibrate",
        help="fit the combined risk scorer on labelled answers (JSONL: question, answer, label)",
        description="Fit quco's combined risk scorer (logistic regression over data-side and confidence-side "
        "features, optionally isotonic-calibrated) on your own labelled answers and save it as JSON. "
        "Each row needs question, answer and label (1 = hallucinated, 0 = correct).",
    )
    p.add_argument("labeled", metavar="LABELED.jsonl", help="rows with question, answer, label")
    p.add_argument("--out", required=True, help="where to write the model JSON")
    p.add_argument("--features", default="all",
                   help="all, data, confidence, ngram, all+ngram, data+ngram (with the n-gram novelty features), "
                   "or comma-separated feature names")
    p.add_argument("--calibration", choices=("none", "isotonic"), default="none")
    p.add_argument("--index", default=None, help="corpus index folder or URL (default: the demo index)")
    p.add_argument("--model", default=None, help="model that scores the answers (default SmolLM2-135M)")
    p.add_argument("--no-model", action="store_true", help="no confidence scoring: data-side features only")
    p.add_argument("--window", type=int, default=1000, help="co-occurrence window in tokens")
    p.add_argument("--fit-thresholds", action="store_true",
                   help="also fit τ_entity and τ_cooc for this index (Youden's J; saved in the model JSON with "
                   "the index's manifest hash, and as rates --tau-entity/--tau-cooc accept)")
    p.add_argument("--target-flag-rate", type=float, default=None, metavar="R",
                   help="with --fit-thresholds: choose each threshold to flag the share R of the answers instead")
    p.set_defaults(func=run)


def calibrate_file(
    labeled: str | Path,
    out: str | Path,
    *,
    features: str = "all",
    calibration: str = "none",
    index: str | None = None,
    model: str | None = None,
    use_model: bool = True,
    window: int = 1000,
    components: Any = None,
    fit_thresholds: bool = False,
    target_flag_rate: float | None = None,
) -> Any:
    """Fit and save a :class:`~quco.risk.combined.RiskScorer` from a labelled JSONL file.

    Args:
        labeled: JSONL rows with ``question``, ``answer``, ``label`` (1 = hallucinated).
        out: model JSON path.
        features: ``all``, ``data``, ``confidence``, ``ngram``, ``all+ngram``, ``data+ngram`` or comma-separated names.
        calibration: ``none`` or ``isotonic``.
        index: corpus index folder or URL (default: the demo index).
        model: the scoring model (confidence under ``qa_prompt(question)``).
        use_model: False for data-side features only.
        window: co-occurrence window.
        components: :class:`quco.evaluation.run.Components` (tests pass fakes).
        fit_thresholds: also fit τ_entity and τ_cooc (:mod:`quco.risk.fit_thresholds`)
            on the same rows; the answers' claims are extracted for τ_cooc.
        target_flag_rate: fit them to flag this share instead of by Youden's J.

    Returns:
        The fitted scorer.
    """
    from quco.analyze import Analyzer
    from quco.demo import DemoPaths, default_base
    from quco.evaluation.collect import collect_user, read_labeled_jsonl
    from quco.evaluation.detectors import analyze_items
    from quco.evaluation.run import Components, manifest_sha256
    from quco.models import canonical
    from quco.prompts import qa_prompt
    from quco.risk.combined import RiskScorer, resolve_features
    from quco.risk.features import NGRAM_FEATURES

    groups = ("all", "data", "confidence", "ngram", "all+ngram", "data+ngram")
    spec: str | list[str] = features if features in groups else [
        f.strip() for f in features.split(",") if f.strip()]
    names = resolve_features(spec)
    if not use_model and any(n in ("mean_logprob", "min_prob", "max_entropy", "seq_logprob", "length") for n in names):
        if features in ("all", "all+ngram"):
            spec = "data" if features == "all" else "data+ngram"
            names = resolve_features(spec)
        else:
            raise BadInputError("--no-model leaves no confidence features: use --features data")
    if target_flag_rate is not None and not fit_thresholds:
        raise BadInputError("--target-flag-rate goes with --fit-thresholds")
    if target_flag_rate is not None and not 0.0 <= target_flag_rate <= 1.0:
        raise BadInputError(f"--target-flag-rate must be in [0, 1], not {target_flag_rate}")
    rows = read_labeled_jsonl(labeled)  # bad rows fail before any model or index is loaded
    if len({r[3] for r in rows}) < 2:
        raise BadInputError(f"{labeled}: fitting needs both labels (0 and 1) among the rows")
    comp = components or Components()
    idx = index or str(DemoPaths(default_base()).index)
    stats = comp.stats(idx)
    scorer = comp.scorer(model) if use_model else None
    items = collect_user(labeled, scorer, lambda q, ev: qa_prompt(q, ev), progress=True)
    # the claims are needed for τ_cooc only (the fitted features "all"/"data" do not use them)
    analyzer = Analyzer(comp.extractor(), stats, window=window, per_sentence=False,
                        claim_extractor=comp.claim_extractor() if fit_thresholds else None,
                        ngrams=any(n in NGRAM_FEATURES for n in names))
    feats = analyze_items(items, analyzer)
    rs = RiskScorer(features=spec, calibration=calibration)
    rs.fit(
        feats,
        [it.label for it in items],
        provenance={
            "data": str(labeled),
            "index": idx,
            "index_manifest_sha256": manifest_sha256(idx),
            "model": canonical(model) if use_model else None,
            "prompt": "quco.prompts.qa_prompt(question), closed-book",
            "window": window,
        },
    )
    if fit_thresholds:
        from quco.corpus.size import corpus_tokens
        from quco.risk.fit_thresholds import fit_thresholds as fit

        rs.thresholds_ = fit(
            feats,
            [it.label for it in items],
            claims="triplets",
            target_flag_rate=target_flag_rate,
            index_tokens=corpus_tokens(stats),
            index_manifest_sha256=rs.provenance_.get("index_manifest_sha256"),
        )
    rs.save(out)
    return rs


def run(args: argparse.Namespace) -> int:
    rs = calibrate_file(
        args.labeled,
        args.out,
        features=args.features,
        calibration=args.calibration,
        index=args.index,
        model=args.model,
        use_model=not args.no_model,
        window=args.window,
        fit_thresholds=args.fit_thresholds,
        target_flag_rate=args.target_flag_rate,
    )
    sys.stdout.write(
        f"fitted on {rs.n_train_} rows ({len(rs.feature_names_)} features, calibration {rs.calibration}); "
        f"wrote {args.out}\n"
    )
    th = rs.thresholds_
    if th:
        e, c = th["tau_entity"], th["tau_cooc"]
        sys.stdout.write(
            f"fitted ({th['method']}): τ_entity {e['value']:g} (J {e['j']:.3f}, flags {e['flag_rate']:.1%}; "
            f"--tau-entity {e['spec']}), τ_cooc {c['value']:g} (J {c['j']:.3f}, flags {c['flag_rate']:.1%}; "
            f"--tau-cooc {c['spec']})\n"
        )
    return 0
