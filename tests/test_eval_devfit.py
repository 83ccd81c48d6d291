"""Models and thresholds fitted on development rows (``--fit-rows``) and the ``thresholds`` ablation."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from quco.evaluation.collect import EvalItem
from quco.evaluation.devfit import C_GRID, choose_C, fit_dev_models, thresholds_ablation


def _dev(n: int, seed: int = 0, noise: float = 1.0) -> tuple[list[EvalItem], list[dict[str, float]]]:
    """Two answers per question; ``q_ent_freq_mean`` separates the labels, ``n_entities`` is noise."""
    rng = np.random.default_rng(seed)
    items, feats = [], []
    for i in range(n):
        for k in range(2):
            lab = int(rng.integers(0, 2))
            items.append(EvalItem(i, f"q{i}", "closed_book", f"Who is Q{i}?", f"A{k}", lab))
            feats.append({"q_ent_freq_mean": max(0.3, 2.0 - 1.5 * lab + rng.normal(0, noise)),
                          "n_entities": float(rng.integers(0, 3)),
                          "claim_cooc_min": 0.0 if lab and rng.random() < 0.7 else 1.0 + rng.random(),
                          "mean_logprob": math.nan})
    return items, feats


def test_choose_C_takes_the_best_of_the_grid_and_the_smaller_on_ties() -> None:
    items, feats = _dev(60)
    C, scores = choose_C(feats, [it.label for it in items], [it.group for it in items],
                         ["q_ent_freq_mean", "n_entities"], folds=5, seed=0)
    assert C in C_GRID and set(scores) == {f"{c:g}" for c in C_GRID}
    best = max(scores.values())
    assert scores[f"{C:g}"] == best
    assert C == min(c for c in C_GRID if scores[f"{c:g}"] >= best - 1e-9)  # ties: the smaller C
    assert best > 0.7  # the feature separates the labels


def test_fit_dev_models_names_skips_and_provenance() -> None:
    items, feats = _dev(40)
    models, info = fit_dev_models(items, feats, "paired",
                                  {"data": ("q_ent_freq_mean", "claim_cooc_min"), "confidence": ("mean_logprob",)},
                                  provenance={"fit_rows": "0-39"})
    assert set(models) == {"data_dev"}  # no confidence feature on any row: not fitted
    assert "skipped" in info["models"]["confidence"] and info["n"] == 80
    m = models["data_dev"]
    assert m.provenance_["fit_rows"] == "0-39" and m.provenance_["C"] == info["models"]["data"]["C"]
    # train on development, test on other rows: it ranks fresh rows from the same process well
    ev_items, ev_feats = _dev(40, seed=7)
    p = m.predict_proba(ev_feats)[:, 1]
    from quco.evaluation.metrics import roc_auc

    assert roc_auc(np.array([it.label for it in ev_items]), p) > 0.75
    one, why = fit_dev_models(items[:2], feats[:2], "paired", {"data": ("q_ent_freq_mean",)})
    assert one == {} and "skipped" in why


def test_thresholds_ablation_variants_differ() -> None:
    items, feats = _dev(50, noise=0.3)
    dev = _dev(50, seed=3, noise=0.3)
    for f in feats + dev[1]:  # stage 2 never fires: the rule is stage 1 (τ_entity) alone here
        f["claim_cooc_min"] = 3.0
    ab = thresholds_ablation(items, feats, claims="triplets", tokens=10_000_000, dev=dev, protocol="paired",
                             n_boot=20)
    assert set(ab) == {"absolute", "relative", "default", "fitted"}
    a, r, f, d = ab["absolute"], ab["relative"], ab["fitted"], ab["default"]
    assert a["thresholds"]["tau_entity"] == 1000 and a["specs"][0] == "1000"
    assert r["thresholds"]["tau_entity"] == pytest.approx(1e3 * 1e7 / 4e12)
    # today's default: τ_entity scaled like the relative row, τ_tuple absolute like the absolute one
    assert d["thresholds"]["tau_entity"] == r["thresholds"]["tau_entity"] and d["thresholds"]["tau_tuple"] == 20
    assert r["thresholds"]["tau_tuple"] == pytest.approx(20 * 1e7 / 4e12)
    # every count here is between 1 and 10^3: the absolute τ flags nearly all, the relative one (0.0025) none
    assert a["flag_rate"] > 0.9 and r["flag_rate"] == 0.0
    # fitted on the development rows, τ_entity lands between the labels' counts
    assert 0.0 < f["flag_rate"] < 0.9 and f["dev_n"] == 100
    assert f["tpr"] > f["fpr"] and f["fit"]["tau_entity"]["feature"] == "q_ent_freq_mean"
    for v in (a, r, f):
        assert 0.0 <= v["true_rate"] <= 1.0 and v["roc_auc"] is not None
    json.dumps(ab, allow_nan=False)  # what detectors.json holds
    no_dev = thresholds_ablation(items, feats, claims="triplets", tokens=None, dev=None, protocol="paired")
    assert "skipped" in no_dev["relative"] and "skipped" in no_dev["fitted"]


def test_fit_rows_end_to_end_with_fakes(tmp_path) -> None:
    from quco.evaluation.run import DetectorEvalConfig, run_detectors_eval
    from tests.test_eval_detectors import _fake_components

    comp, gen = _fake_components(range(0, 60))
    cfg = DetectorEvalConfig(out=tmp_path, rows=range(2000, 2030), fit_rows=range(0, 30), index="fake",
                             ablations=True, ablation_kinds=("thresholds",), n_boot=0, n_boot_ablation=20,
                             progress=False)
    doc = run_detectors_eval(cfg, comp)
    assert doc["dev_fit"]["rows"] == "0-29" and doc["dev_fit"]["n"] > 0
    d = doc["detectors"]
    for name in ("data_dev", "confidence_dev", "combined_dev"):
        assert d[name]["kind"] == "dev-fitted" and 0.0 <= d[name]["roc_auc"] <= 1.0
    assert len(gen.calls) == 120  # 30 evaluation + 30 development rows, two conditions each
    th = doc["ablations"]["thresholds"]
    assert {"absolute", "relative", "fitted"} <= set(th) and "skipped" not in th["fitted"]
    md = (tmp_path / "detectors.md").read_text()
    assert "absolute vs index-relative vs dev-fitted" in md and "fitted once on development rows 0-29" in md


def test_fit_rows_cli_refuses_evaluation_rows(tmp_path, capsys) -> None:
    from quco.cli import main

    assert main(["eval", "detectors", "--fit-rows", "1990-2010", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "reserved for testing" in err and err.count("\n") == 1
    p = tmp_path / "u.jsonl"
    p.write_text(json.dumps({"question": "q?", "answer": "a", "label": 0}) + "\n")
    assert main(["eval", "detectors", "--protocol", str(p), "--fit-rows", "0-9", "--out", str(tmp_path)]) == 1
    assert "--fit-rows applies" in capsys.readouterr().err


def test_shipped_data_only_model_is_used_without_a_model() -> None:
    from quco.audit.verdicts import is_data_only, load_combined
    from quco.evaluation.run import DetectorEvalConfig, shipped_model
    from quco.risk.combined import load_default_scorer

    sc = load_combined(model=False)
    assert sc is not None and is_data_only(sc) and "claim_cooc_min" in sc.feature_names_
    assert sc.provenance_["rows"] == "0-1999" and sc.provenance_["C"] in C_GRID
    assert not is_data_only(load_default_scorer())  # the default one needs the model's confidences
    cfg = DetectorEvalConfig(out=Path("x"), protocol="paired", rows=range(2000, 2010), use_model=False)
    assert shipped_model(cfg)["shipped"].feature_names_ == sc.feature_names_
    assert shipped_model(DetectorEvalConfig(out=Path("x"), protocol="paired", rows=range(0, 10), use_model=False)) == {}


def test_rule_with_a_zero_threshold_never_flags() -> None:
    from quco.risk.policies import QucoPolicy

    pol = QucoPolicy(0.0, 0.0, tuple_threshold=0.0)  # a fitted "never flag" (Youden chose no cut)
    for count in (0.0, 0.5, 3.0):
        s = pol.score_features({"q_ent_freq_mean": count, "claim_cooc_min": count})
        assert 0.0 <= s <= 0.5
    assert pol.score_features({"q_ent_freq_mean": 0.0}) > pol.score_features({"q_ent_freq_mean": 2.0})


def test_fit_generations_caches_the_development_answers_elsewhere(tmp_path, capsys) -> None:
    from quco.cli import main
    from quco.evaluation.run import DetectorEvalConfig, run_detectors_eval
    from tests.test_eval_detectors import _fake_components

    comp, gen = _fake_components(range(0, 60))
    dev_dir = tmp_path / "dev"
    cfg = DetectorEvalConfig(out=tmp_path / "ev", rows=range(2000, 2030), fit_rows=range(0, 30),
                             fit_generations=dev_dir, index="fake", n_boot=0, progress=False)
    run_detectors_eval(cfg, comp)
    (dev_cache,) = (dev_dir / "generations").iterdir()
    (ev_cache,) = (tmp_path / "ev" / "generations").iterdir()
    rows = {json.loads(line)["row"] for line in dev_cache.read_text().splitlines()}
    assert rows == set(range(0, 30))  # the development answers went to --fit-generations
    assert all(json.loads(line)["row"] >= 2000 for line in ev_cache.read_text().splitlines())
    assert main(["eval", "detectors", "--fit-generations", str(dev_dir), "--out", str(tmp_path / "x")]) == 1
    assert "--fit-generations needs --fit-rows" in capsys.readouterr().err
