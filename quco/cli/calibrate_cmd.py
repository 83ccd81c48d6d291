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
    p.add_argument("--features", default="all", help="all, data, confidence, or comma-separated feature names")
    p.add_argument("--calibration", choices=("none", "isotonic"), default="none")
    p.add_argument("--index", default=None, help="corpus index folder or URL (default: the demo index)")
    p.add_argument("--model", default=None, help="model that scores the answers (default SmolLM2-135M)")
    p.add_argument("--no-model", action="store_true", help="no confidence scoring: data-side features only")
    p.add_argument("--window", type=int, default=1000, help="co-occurrence window in tokens")
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
) -> Any:
    """Fit and save a :class:`~quco.risk.combined.RiskScorer` from a labelled JSONL file.

    Args:
        labeled: JSONL rows with ``question``, ``answer``, ``label`` (1 = hallucinated).
        out: model JSON path.
        features: ``all``, ``data``, ``confidence`` or comma-separated names.
        calibration: ``none`` or ``isotonic``.
        index: corpus index folder or URL (default: the demo index).
        model: the scoring model (confidence under ``qa_prompt(question)``).
        use_model: False for data-side features only.
        window: co-occurrence window.
        components: :class:`quco.evaluation.run.Components` (tests pass fakes).

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

    spec: str | list[str] = features if features in ("all", "data", "confidence") else [
        f.strip() for f in features.split(",") if f.strip()]
    names = resolve_features(spec)
    if not use_model and any(n in ("mean_logprob", "min_prob", "max_entropy", "seq_logprob", "length") for n in names):
        if features == "all":
            spec, names = "data", resolve_features("data")
        else:
            raise BadInputError("--no-model leaves no confidence features: use --features data")
    rows = read_labeled_jsonl(labeled)  # bad rows fail before any model or index is loaded
    if len({r[3] for r in rows}) < 2:
        raise BadInputError(f"{labeled}: fitting needs both labels (0 and 1) among the rows")
    comp = components or Components()
    idx = index or str(DemoPaths(default_base()).index)
    stats = comp.stats(idx)
    scorer = comp.scorer(model) if use_model else None
    items = collect_user(labeled, scorer, lambda q, ev: qa_prompt(q, ev), progress=True)
    analyzer = Analyzer(comp.extractor(), stats, window=window, per_sentence=False)
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
    )
    sys.stdout.write(
        f"fitted on {rs.n_train_} rows ({len(rs.feature_names_)} features, calibration {rs.calibration}); "
        f"wrote {args.out}\n"
    )
    return 0
