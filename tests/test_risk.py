"""Rule policies and the fitted RiskScorer (fit, predict, JSON round trip, reasons)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from quco.errors import BadInputError
from quco.risk import (
    ALL_FEATURES,
    DATA_FEATURES,
    EntityCount,
    FlarePolicy,
    PairCount,
    QucoPolicy,
    RiskScorer,
    Signals,
    feature_vector,
    load_default_scorer,
)
from quco.risk.features import ClaimCount, claim_features, data_features
from quco.types import Claim, Confidence, Count, Entity, Pair, TokenConfidence


def ent(text: str, n: int) -> EntityCount:
    return EntityCount(Entity(text, text, "PERSON"), Count(n))


def pair(a: str, b: str, n: int) -> PairCount:
    return PairCount(Pair(Entity(a, a, "X"), Entity(b, b, "X")), Count(n))


def conf(*probs: float) -> Confidence:
    return Confidence(tuple(TokenConfidence(f" t{i}", i, math.log(p), 0.3) for i, p in enumerate(probs)))


def test_quco_stage1_threshold_and_reasons() -> None:
    pol = QucoPolicy()
    r = pol.stage1([ent("Zorblax", 3), ent("Paris", 1500)])  # mean 751.5 < 1000
    assert r.flagged and r.probability == 1.0
    assert [x.subject for x in r.reasons] == ["Zorblax"] and r.reasons[0].value == 3
    assert not pol.stage1([ent("Paris", 1500), ent("France", 900)]).flagged  # mean 1200
    none = pol.stage1([])
    assert not none.flagged and none.reasons[0].kind == "no_entities"


def test_quco_stage1_averages_named_entities_only() -> None:
    pol = QucoPolicy()
    year = EntityCount(Entity("1991", "March 2, 1991", "DATE"), Count(90_000))
    r = pol.stage1([ent("Zorblax", 3), year])  # with the year the mean would be 45,001
    assert r.flagged and [x.subject for x in r.reasons] == ["Zorblax"]
    only = pol.stage1([year])
    assert not only.flagged and only.reasons[0].kind == "no_entities" and "dates and numbers" in only.reasons[0].message
    f = feature_vector(Signals((ent("Zorblax", 3), year)))
    assert f["q_ent_freq_mean"] == pytest.approx(math.log10(4)) and f["q_ent_freq_min"] == pytest.approx(math.log10(4))
    assert (pol.score(Signals((ent("Zorblax", 3), year))) > 0.5) == r.flagged


def _claim(head: str, rel: str, tail: str | None, n: int) -> ClaimCount:
    t = Entity(tail, tail, "GPE") if tail is not None else None
    return ClaimCount(Claim(Entity(head, head, "PERSON"), rel, t), Count(n))


def test_claim_features_and_triplet_stage2() -> None:
    assert all(math.isnan(v) for v in claim_features(None).values())
    none = claim_features(())
    assert none["n_claims"] == 0.0 and math.isnan(none["claim_cooc_min"]) and math.isnan(none["zero_claim"])
    cs = (_claim("Vienna", "is capital of", "France", 0), _claim("Vienna", "painted by", "Klimt", 40), _claim("Blorp", "was released", None, 7))
    f = claim_features(cs)
    assert f == {"claim_cooc_min": 0.0, "zero_claim": 1.0, "n_claims": 3.0, "tuple_head_min": pytest.approx(math.log10(8))}
    pol = QucoPolicy()
    s = Signals(pairs=(pair("Vienna", "France", 5),), claims=cs)
    r = pol.stage2(s)
    assert [x.kind for x in r.reasons] == ["rare_head", "zero_cooccurrence"] and r.flagged
    assert r.reasons[1].subject == "'Vienna' \u2014is capital of\u2192 'France'"
    assert not QucoPolicy(claims="pairs").stage2(s).flagged  # the pair co-occurs 5 times
    assert pol.score(s) == 1.0 and QucoPolicy(claims="pairs").score(s) < 0.5
    # a rule whose score is above 0.5 exactly when it fires, for tuples too
    for n in (0, 19, 20, 200):
        t = Signals(claims=(_claim("Blorp", "was released", None, n),))
        assert (pol.score(t) > 0.5) == pol.stage2(t).flagged == (n < 20)
    # claims not extracted (None): triplet mode falls back to the pairs
    assert pol.stage2(Signals(pairs=(pair("A", "B", 0),))).flagged
    quiet = pol.stage2(Signals(pairs=(pair("A", "B", 0),), claims=()))
    assert not quiet.flagged and quiet.reasons[0].kind == "no_claims"
    assert data_features("triplets") != data_features("pairs") and "claim_cooc_min" in data_features("triplets")
    with pytest.raises(ValueError):
        QucoPolicy(claims="both")


def test_quco_stage2_zero_cooccurrence() -> None:
    pol = QucoPolicy()
    s = Signals((ent("Paris", 5000),), (ent("Berlin", 4000),), (ent("Berlin", 4000),),
                (pair("Berlin", "Paris", 0), pair("Berlin", "Germany", 7)))
    r = pol.stage2(s)
    assert r.flagged and len(r.reasons) == 1
    assert r.reasons[0].kind == "zero_cooccurrence" and r.reasons[0].subject == "Berlin | Paris"
    ok = Signals((ent("Paris", 5000),), (), (), (pair("Paris", "France", 3),))
    assert not pol.stage2(ok).flagged
    assert not pol.assess(ok).flagged


def test_quco_score_is_monotone_and_matches_the_rule() -> None:
    pol = QucoPolicy()
    scores = []
    for c in (0, 1, 5, 50):
        s = Signals((ent("Paris", 5000),), (), (), (pair("A", "B", c),))
        scores.append(pol.score(s))
        assert (pol.score(s) > 0.5) == pol.assess(s).flagged
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0
    # stage 1 alone: mean count exactly at the threshold is not flagged, and scores 0.5
    assert pol.score(Signals((ent("X", 1000),))) == pytest.approx(0.5)
    assert pol.score(Signals((ent("X", 999),))) > 0.5
    assert math.isnan(pol.score(Signals()))


def test_flare_policy() -> None:
    pol = FlarePolicy(theta=0.4)
    r = pol.assess(Signals(confidence=conf(0.9, 0.2, 0.35)))
    assert r.flagged
    assert [x.value for x in r.reasons] == [pytest.approx(0.2), pytest.approx(0.35)]
    assert not pol.assess(Signals(confidence=conf(0.9, 0.5))).flagged
    assert pol.score(Signals(confidence=conf(0.9, 0.2))) == pytest.approx(0.8)
    assert pol.assess(Signals()).reasons[0].kind == "no_confidence"


def synthetic(n: int = 400, seed: int = 0) -> tuple[list[dict[str, float]], np.ndarray]:
    """Features where low co-occurrence and low min_prob mean hallucination; some NaNs."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    rows = []
    for lab in y:
        f = {k: float(rng.normal()) for k in ALL_FEATURES}
        f["pair_cooc_min"] = float(rng.normal(0.5 if lab else 2.0, 0.7))
        f["min_prob"] = float(np.clip(rng.normal(0.3 if lab else 0.6, 0.2), 0.01, 1))
        if rng.random() < 0.3:
            f["pair_cooc_min"] = math.nan
        rows.append(f)
    return rows, y


def test_risk_scorer_fits_and_ranks() -> None:
    X, y = synthetic()
    rs = RiskScorer().fit(X[:300], y[:300])
    p = rs.predict_proba(X[300:])
    assert p.shape == (100, 2) and np.allclose(p.sum(axis=1), 1.0)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y[300:], p[:, 1]) > 0.8
    assert "missing:pair_cooc_min" in rs.columns_
    coef = dict(zip(rs.columns_, rs.coef_, strict=True))
    assert coef["pair_cooc_min"] < 0 and coef["min_prob"] < 0  # more support / confidence = less risk
    assert set(rs.predict(X[300:]).tolist()) <= {0, 1}


def test_feature_sets_and_array_input() -> None:
    X, y = synthetic()
    data = RiskScorer(features="data").fit(X, y)
    assert data.feature_names_ == DATA_FEATURES
    arr = np.array([[r[k] for k in DATA_FEATURES] for r in X])
    assert np.allclose(data.predict_proba(arr), data.predict_proba(X))
    one = RiskScorer(features=["min_prob"]).fit(X, y)
    assert one.columns_ == ("min_prob",)
    with pytest.raises(BadInputError):
        RiskScorer(features=["nope"]).fit(X, y)
    with pytest.raises(BadInputError):
        RiskScorer().fit(X, np.zeros(len(X)))  # one class
    with pytest.raises(BadInputError):
        RiskScorer().predict_proba(X)  # not fitted


def test_isotonic_calibration_and_json_round_trip(tmp_path) -> None:
    X, y = synthetic()
    rs = RiskScorer(calibration="isotonic", threshold=0.4).fit(X, y, provenance={"rows": "synthetic"})
    path = rs.save(tmp_path / "m.json")
    d = json.loads(path.read_text())
    assert d["isotonic"] and d["provenance"]["rows"] == "synthetic" and d["feature_names"] == list(ALL_FEATURES)
    back = RiskScorer.load(path)
    assert np.allclose(back.predict_proba(X), rs.predict_proba(X))
    assert back.threshold == 0.4
    p = rs.predict_proba(X)[:, 1]
    assert p.min() >= 0.0 and p.max() <= 1.0
    (tmp_path / "bad.json").write_text('{"format": "other"}')
    with pytest.raises(BadInputError):
        RiskScorer.load(tmp_path / "bad.json")
    d["coef"] = d["coef"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(d))
    with pytest.raises(BadInputError):
        RiskScorer.load(tmp_path / "short.json")


def test_assess_gives_feature_and_rule_reasons() -> None:
    X, y = synthetic()
    rs = RiskScorer().fit(X, y)
    s = Signals((ent("Paris", 5000),), (ent("Zorblax", 0),), (ent("Zorblax", 0),),
                (pair("Zorblax", "Paris", 0),), conf(0.9, 0.05))
    r = rs.assess(s)
    assert r.policy == "combined" and 0 <= r.probability <= 1
    kinds = [x.kind for x in r.reasons]
    assert "feature" in kinds and "zero_cooccurrence" in kinds and "low_prob_token" in kinds
    feats = [x.subject for x in r.reasons if x.kind == "feature"]
    contrib = rs.contributions(feature_vector(s))
    assert feats[0] == max(contrib, key=contrib.__getitem__)
    assert r.flagged == (r.probability >= rs.threshold)


def test_default_scorer_loads_with_provenance() -> None:
    rs = load_default_scorer()
    prov = rs.provenance_
    for k in ("rows", "index_manifest_sha256", "model", "protocol", "quco_version", "fitted_at"):
        assert prov.get(k), k
    assert max(int(r) for r in str(prov["rows"]).split("-")) <= 1999
    s = Signals((ent("Paris", 5000),), (), (), (), conf(0.9, 0.8))
    assert 0.0 <= rs.probability(s) <= 1.0


def test_newton_logistic_matches_sklearn() -> None:
    from sklearn.linear_model import LogisticRegression

    from quco.risk.combined import fit_logistic

    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 4))
    y = (X @ [1.0, -2.0, 0.0, 0.5] + rng.normal(size=300) > 0.3).astype(float)
    for C in (0.1, 1.0):
        w, b = fit_logistic(X, y, C)
        ref = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(X, y)
        assert np.allclose(w, ref.coef_.ravel(), atol=1e-4) and b == pytest.approx(ref.intercept_[0], abs=1e-4)


# -- quco calibrate ----------------------------------------------------------------


def _labeled(tmp_path, n: int = 40):
    rows = []
    for i in range(n):
        good = i % 2 == 0
        city = "Paris" if good else "Atlantis"
        rows.append({"question": f"Where was Person{i} Smith born?", "answer": f"{city}", "label": 0 if good else 1})
    p = tmp_path / "labeled.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return p


def test_calibrate_fits_and_saves(tmp_path) -> None:
    from quco.cli.calibrate_cmd import calibrate_file
    from quco.evaluation.run import Components
    from quco.testing import FakeCorpus, FakeExtractor

    comp = Components(make_extractor=FakeExtractor, make_stats=lambda i: FakeCorpus(["Paris is in France."] * 3))
    out = tmp_path / "m.json"
    rs = calibrate_file(_labeled(tmp_path), out, use_model=False, index="fake", components=comp)
    assert rs.feature_names_ == DATA_FEATURES  # --no-model: data side only
    back = RiskScorer.load(out)
    assert back.provenance_["n_rows"] == 40 and back.provenance_["model"] is None
    paris = {"a_ent_freq_min": math.log10(4), "a_ent_freq_mean": math.log10(4), "n_entities": 1.0}
    atlantis = {"a_ent_freq_min": 0.0, "a_ent_freq_mean": 0.0, "n_entities": 1.0}
    assert back.probability(atlantis) > back.probability(paris)


def test_calibrate_bad_rows_give_one_line(tmp_path, capsys) -> None:
    from quco.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "Q?", "answer": "A", "label": "yes"}\n')
    assert main(["calibrate", str(bad), "--out", str(tmp_path / "m.json"), "--no-model", "--index", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("quco: error:") and "label must be 0" in err and "\n" not in err
    assert main(["calibrate", str(tmp_path / "none.jsonl"), "--out", str(tmp_path / "m.json")]) == 1
    assert "no such file" in capsys.readouterr().err
