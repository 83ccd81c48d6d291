"""Fitting τ_entity and τ_cooc on labelled answers: Youden's J and a target flag rate, by hand on small
data, then through ``quco calibrate --fit-thresholds`` (fakes), saved with the index's identity."""

from __future__ import annotations

import json
import math

import pytest

from quco.errors import BadInputError
from quco.risk.fit_thresholds import fit_threshold, fit_thresholds


def test_youden_and_target_rate_by_hand() -> None:
    counts = [30.0] * 4 + [5.0] * 4 + [0.0] * 4 + [math.nan] * 2
    labels = [0] * 4 + [1] * 4 + [1] * 4 + [0, 1]
    t = fit_threshold(counts, labels)
    # flag below 30: the 8 hallucinated with a count (TPR 8/9), no correct one (FPR 0/5)
    assert t.value == 30.0 and t.tpr == pytest.approx(8 / 9) and t.fpr == 0.0 and t.j == pytest.approx(8 / 9)
    assert t.judged == 12 and t.flag_rate == pytest.approx(8 / 14)
    r = fit_threshold(counts, labels, target_flag_rate=0.3)  # 4/14 = 0.286 is the closest reachable rate
    assert r.value == 5.0 and r.flag_rate == pytest.approx(4 / 14)
    assert fit_threshold(counts, labels, target_flag_rate=0.0).flag_rate == 0.0
    with pytest.raises(BadInputError):
        fit_threshold([1.0, 2.0], [1, 1])
    with pytest.raises(BadInputError):
        fit_threshold([1.0, 2.0], [0, 1], target_flag_rate=2.0)


def test_fit_thresholds_from_features_gives_rate_specs() -> None:
    feats = [{"q_ent_freq_mean": math.log10(1 + c), "claim_cooc_min": math.log10(1 + k)}
             for c, k in [(100, 3), (100, 2), (0, 0), (2, 0)]]
    rec = fit_thresholds(feats, [0, 0, 1, 1], index_tokens=1_000_000, index_manifest_sha256="abc")
    assert rec["tau_entity"]["value"] == pytest.approx(100.0) and rec["tau_entity"]["spec"] == "100@1000000"
    assert rec["tau_cooc"]["value"] == pytest.approx(2.0) and rec["tau_cooc"]["j"] == 1.0
    assert rec["index_manifest_sha256"] == "abc" and rec["method"] == "youden"
    from quco.risk.thresholds import Threshold

    assert Threshold.parse(rec["tau_entity"]["spec"]).effective(2_000_000) == pytest.approx(200.0)


def _rows(tmp_path):  # type: ignore[no-untyped-def]
    rows = [{"question": "Where was Paris founded?", "answer": "By the river.", "label": 0}] * 10
    rows += [{"question": "Where was Rome founded?", "answer": "By the river.", "label": 1}] * 10
    rows += [{"question": "Where was Atlantis founded?", "answer": "By the river.", "label": 1}] * 10
    p = tmp_path / "dev.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_calibrate_fits_thresholds_and_saves_them_with_the_index(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from quco.cli.calibrate_cmd import calibrate_file
    from quco.evaluation.run import Components
    from quco.risk.combined import RiskScorer
    from quco.testing import FakeCorpus, FakeExtractor

    corpus = FakeCorpus(["Paris is old."] * 30 + ["Rome is old."] * 5)
    comp = Components(make_extractor=FakeExtractor, make_stats=lambda i: corpus)
    monkeypatch.setattr("quco.evaluation.run.manifest_sha256", lambda idx: "sha-of-manifest")
    out = tmp_path / "m.json"
    rs = calibrate_file(_rows(tmp_path), out, use_model=False, index="fake", components=comp, fit_thresholds=True)
    th = RiskScorer.load(out).thresholds_
    assert th is not None and th == rs.thresholds_
    assert th["tau_entity"]["value"] == 30.0 and th["tau_entity"]["j"] == 1.0  # Paris (30) passes, Rome and Atlantis not
    assert th["index_manifest_sha256"] == "sha-of-manifest" and th["index_tokens"] == corpus.tokens
    assert th["tau_entity"]["spec"] == f"30@{corpus.tokens}"
    rate = calibrate_file(_rows(tmp_path), out, use_model=False, index="fake", components=comp, fit_thresholds=True,
                          target_flag_rate=1 / 3)
    assert rate.thresholds_["tau_entity"]["value"] == 5.0  # flags Atlantis only: 10 of 30
    with pytest.raises(BadInputError, match="--fit-thresholds"):
        calibrate_file(_rows(tmp_path), out, use_model=False, index="fake", components=comp, target_flag_rate=0.2)


def test_calibrate_with_the_ngram_group(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from quco.cli.calibrate_cmd import calibrate_file
    from quco.evaluation.run import Components
    from quco.risk.features import NGRAM_FEATURES
    from quco.testing import FakeCorpus, FakeExtractor

    corpus = FakeCorpus(["Paris is old and by the river."] * 30 + ["Rome is old."] * 5)
    comp = Components(make_extractor=FakeExtractor, make_stats=lambda i: corpus)
    rs = calibrate_file(_rows(tmp_path), tmp_path / "n.json", features="all+ngram", use_model=False, index="fake",
                        components=comp)
    assert set(NGRAM_FEATURES) <= set(rs.feature_names_)  # --no-model: data+ngram
    assert "ngram_novel_share" not in rs.indicators_  # computed for every row, never missing
