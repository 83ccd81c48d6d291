"""Labels, grouped cross-validation (no leak), and an end-to-end `eval detectors` run on fakes."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from quco.datasets import QARow
from quco.errors import BadInputError
from quco.evaluation.collect import EvalItem, GenerationCache, clean_answer, read_labeled_jsonl
from quco.evaluation.cv import cross_val_proba, group_folds
from quco.evaluation.detectors import score_detectors
from quco.evaluation.labels import is_comparison, normalize_answer, self_label, token_f1
from quco.risk import RiskScorer
from quco.testing import FakeCorpus, FakeExtractor, FakeGenerator
from quco.types import Confidence, Generation, TokenConfidence

# -- labels -------------------------------------------------------------------


def test_normalization_and_f1() -> None:
    assert normalize_answer("The  Eiffel-Tower!") == "eiffel tower"
    assert token_f1("the Eiffel Tower", "Eiffel Tower in Paris") == pytest.approx(2 * 1 * 0.5 / 1.5)
    assert token_f1("", "x") == 0.0


@pytest.mark.parametrize(
    ("answer", "gold", "label"),
    [
        ("Paris", "Paris", 0),
        ("Paris, France", "Paris", 0),  # gold contained
        ("John Smith Jr.", "John Smith", 0),
        ("John", "John Fitzgerald Kennedy Jr", 1),  # reverse containment alone is not enough (F1 0.4)
        ("Kennedy", "John Kennedy", 0),  # F1 = 0.67
        ("no", "yes", 1),
        ("Parisian", "Paris", 1),  # whole tokens only
        ("", "Paris", 1),
        ("the", "Paris", 1),
    ],
)
def test_self_label_rule(answer: str, gold: str, label: int) -> None:
    assert self_label(answer, gold) == label


def test_comparison_detection() -> None:
    assert is_comparison("Which was released first, Toy Story or Cars?", "Toy Story")
    assert not is_comparison("Are both Paris and Rome capitals?", "yes")
    assert not is_comparison("Who wrote Emma?", "Jane Austen")
    assert is_comparison("Who was born first, Francis Nethersole or Elizabeth Stuart?", "Sir Francis Nethersole")
    assert not is_comparison("Is it Paris or Rome where Jane Austen lived?", "Bath")


# -- cross-validation cannot score a row with a model fitted on it ----------------


def _leak_data(n_groups: int = 40) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(1)
    groups = [f"q{i // 2}" for i in range(2 * n_groups)]  # two answers per question
    y = rng.integers(0, 2, 2 * n_groups)
    X = np.column_stack([y + rng.normal(0, 1.0, y.size), rng.normal(size=y.size)])
    return X, y, groups


class _Spy:
    """A model that records which rows it was fitted on (via an id column)."""

    fitted: list[set[int]] = []

    def fit(self, X: np.ndarray, y: np.ndarray) -> _Spy:
        self.ids = set(X[:, 0].astype(int).tolist())
        _Spy.fitted.append(self.ids)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        ids = X[:, 0].astype(int)
        assert not (set(ids.tolist()) & self.ids), "a scored row was in the training folds"
        return np.column_stack([np.full(len(X), 0.5), np.full(len(X), 0.5)])


def test_folds_are_disjoint_and_grouped() -> None:
    _, y, groups = _leak_data()
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    ids = np.arange(y.size, dtype=float)[:, None]
    _Spy.fitted = []
    cross_val_proba(ids, y, groups, _Spy, on_split=lambda k, tr, te: seen.append((tr, te)))
    assert len(seen) == 5 and len(_Spy.fitted) == 5
    tested = np.concatenate([te for _, te in seen])
    assert sorted(tested.tolist()) == list(range(y.size))  # every row scored exactly once
    g = np.asarray(groups)
    for (tr, te), fitted_ids in zip(seen, _Spy.fitted, strict=True):
        assert not set(tr.tolist()) & set(te.tolist())
        assert not set(g[tr].tolist()) & set(g[te].tolist())  # both answers of a question on one side
        assert fitted_ids == set(tr.tolist())
    assert [len(x) for x in group_folds(groups)] == [2] * 5


def test_scored_rows_labels_never_reach_their_model() -> None:
    X, y, groups = _leak_data()
    def make() -> RiskScorer:
        return RiskScorer(features=["mean_logprob", "min_prob"])

    folds = group_folds(groups, 5, y)  # the split is fixed first (stratified on the true labels)
    base = cross_val_proba(X, y, groups, make, folds=folds)
    rng = np.random.default_rng(7)
    for _, te in folds:
        y2 = y.copy()
        y2[te] = rng.permutation(1 - y2[te])  # scramble (and flip) the scored rows' labels
        again = cross_val_proba(X, y2, groups, make, folds=folds)
        assert np.allclose(again[te], base[te])  # their predictions cannot change
    # ... while a model fitted on everything (a leak) would change them
    leak = make().fit(X, y).predict_proba(X)[:, 1]
    assert not np.allclose(leak, base)


def test_cv_fits_each_fold_on_other_rows_in_score_detectors() -> None:
    items, feats = _items(30)
    calls: list[tuple[np.ndarray, np.ndarray]] = []
    score_detectors(items, feats, on_split=lambda k, tr, te: calls.append((tr, te)), singles=())
    groups = np.asarray([it.group for it in items])
    assert calls and all(not set(groups[tr]) & set(groups[te]) for tr, te in calls)


# -- collection helpers ---------------------------------------------------------------


def _items(n: int) -> tuple[list[EvalItem], list[dict[str, float]]]:
    rng = np.random.default_rng(0)
    items, feats = [], []
    for i in range(n):
        for cond in ("closed_book", "with_passage"):
            lab = int(rng.integers(0, 2))
            items.append(EvalItem(i, f"q{i}", cond, f"Who is Q{i}?", "A" if lab else "B", lab))
            f = {"mean_logprob": -1.0 - lab + rng.normal(0, 0.5), "min_prob": 0.5 - 0.2 * lab,
                 "pair_cooc_min": math.nan if i % 3 == 0 else 1.0 - lab, "q_ent_freq_mean": 2.0}
            feats.append(f)
    return items, feats


def test_generation_cache_and_clean_answer(tmp_path) -> None:
    toks = tuple(TokenConfidence(t, i, -0.1 * (i + 1), 0.2) for i, t in enumerate([" Paris", ",", "\n", "Q"]))
    gen = Generation(" Paris,\nQ", Confidence(toks), "stop")
    ans, conf = clean_answer(gen)
    assert ans == "Paris," and len(conf) == 2
    cache = GenerationCache(tmp_path / "g.jsonl")
    cache.put(5, "closed_book", gen)
    with open(tmp_path / "g.jsonl", "a") as f:
        f.write('{"row": 6, "cond')  # torn line from an interrupted run
    back = GenerationCache(tmp_path / "g.jsonl").get(5, "closed_book")
    assert back is not None and back.text == gen.text and back.confidence.tokens[1].logprob == pytest.approx(-0.2)


def test_labeled_jsonl_errors(tmp_path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"question": "Q?", "answer": "A", "label": 1}\n{"question": "Q2?", "answer": "B"}\n')
    with pytest.raises(BadInputError, match=":2: missing field 'label'"):
        read_labeled_jsonl(p)
    p.write_text('{"question": "Q?", "answer": "A", "label": 2}\n')
    with pytest.raises(BadInputError, match="label must be 0"):
        read_labeled_jsonl(p)
    p.write_text("not json\n")
    with pytest.raises(BadInputError, match="not valid JSON"):
        read_labeled_jsonl(p)


# -- end to end on fakes, through the CLI function ----------------------------------

CITIES = ["Paris", "Rome", "Berlin", "Madrid", "Vienna", "Lisbon", "Prague", "Dublin", "Oslo", "Athens"]
PEOPLE = ["Alice Moor", "Bob Vance", "Carl Jung", "Dina Shore", "Eve Arden", "Finn Wolf"]


def _fake_rows(rows: range) -> list[QARow]:
    out = []
    for r in rows:
        p, c = PEOPLE[r % len(PEOPLE)], CITIES[r % len(CITIES)]
        q = f"Where was {p} born?" if r % 5 else f"Was {p} born in {c} or Nowhere?"
        out.append(QARow(r, q, f"{p} was born in {c}.", c, f"{p} was born in Atlantis."))
    return out


def _fake_components(rows: range):
    from quco.evaluation.run import Components

    responses, probs = [], []
    for r in _fake_rows(rows):
        for cond in ("closed", "passage"):
            right = (r.row + (cond == "passage")) % 3 != 0
            ans = r.right_answer if right else CITIES[(r.row + 3) % len(CITIES)]
            responses.append(f" {ans}\nQuestion: next")
            probs.append([0.9 if right else 0.3, 0.5, 0.5])
    docs = [f"{p} was born in {c}." for p, c in zip(PEOPLE, CITIES, strict=False)] + ["Paris and Rome are cities."]
    gen = FakeGenerator(responses, probs)
    return Components(
        make_extractor=FakeExtractor,
        make_stats=lambda index: FakeCorpus(docs),
        make_generator=lambda model: gen,
        load_rows=_fake_rows,
    ), gen


def test_eval_detectors_end_to_end_with_fakes(tmp_path, monkeypatch) -> None:
    from quco.cli import eval_detectors_cmd, main
    from quco.evaluation import run as run_mod

    comp, gen = _fake_components(range(0, 40))
    real = run_mod.run_detectors_eval
    monkeypatch.setattr(run_mod, "run_detectors_eval", lambda cfg, c=None: real(cfg, comp))
    out = tmp_path / "out"
    rc = main(["eval", "detectors", "--rows", "0-39", "--index", "fake", "--n-boot", "50", "--out", str(out)])
    assert rc == 0 and eval_detectors_cmd.register
    doc = json.loads((out / "detectors.json").read_text())
    assert doc["protocol"] == "self" and isinstance(doc["n"], int) and doc["n"] > 0
    for name in ("data", "confidence", "combined", "length", "random", "quco_rule", "flare", "min_prob"):
        m = doc["detectors"][name]
        for k in ("roc_auc", "pr_auc", "ece", "brier"):
            assert m[k] is not None and 0.0 <= m[k] <= 1.0, (name, k)
        assert 0.0 <= m["coverage"] <= 1.0 and m["n"] == doc["n"]
    # the fake's wrong answers have low token probability: the confidence side must see it
    assert doc["detectors"]["confidence"]["roc_auc"] > 0.9
    assert doc["slices"]["comparison"]["n"] == 16  # rows 0, 5, ... (8 questions x 2 conditions)
    assert len(gen.calls) == 80
    for f in ("detectors.md", "roc.png", "roc.svg", "reliability.png", "reliability.svg", "items.jsonl"):
        assert (out / f).stat().st_size > 0, f
    assert "| combined |" in (out / "detectors.md").read_text()
    # a re-run reuses the cached generations: the fake generator is not called again
    comp2, gen2 = _fake_components(range(0, 40))
    monkeypatch.setattr(run_mod, "run_detectors_eval", lambda cfg, c=None: real(cfg, comp2))
    assert main(["eval", "detectors", "--rows", "0-39", "--index", "fake", "--n-boot", "0", "--out", str(out)]) == 0
    assert gen2.calls == []
    assert json.loads((out / "detectors.json").read_text())["n"] == doc["n"]


def test_eval_detectors_bad_input(tmp_path, capsys) -> None:
    from quco.cli import main

    assert main(["eval", "detectors", "--rows", "9-3", "--out", str(tmp_path)]) == 1
    assert "before the start" in capsys.readouterr().err
    assert main(["eval", "detectors", "--protocol", "nofile.jsonl", "--out", str(tmp_path)]) == 1
    assert "--protocol" in capsys.readouterr().err


def test_eval_detectors_ablations_with_fakes(tmp_path) -> None:
    from quco.evaluation.run import DetectorEvalConfig, run_detectors_eval

    comp, _ = _fake_components(range(0, 30))
    second, _ = _fake_components(range(0, 30))
    models: list[str | None] = []

    def make_generator(model: str | None):
        models.append(model)
        return (comp if len(models) == 1 else second)._cache.setdefault("g", _fake_components(range(0, 30))[1])

    comp.make_generator = make_generator
    cfg = DetectorEvalConfig(out=tmp_path, rows=range(0, 30), index="fake", ablations=True, n_boot=0,
                             n_boot_ablation=20, progress=False)
    doc = run_detectors_eval(cfg, comp)
    ab = doc["ablations"]
    assert set(ab) == {"corpus", "window", "model", "claims"}
    assert set(ab["window"]) == {"doc", "1000", "100"}
    # claims: the same rows read as claims (the fake makes none of bare answer spans) and as pairs
    cl = ab["claims"]
    assert set(cl) == {"triplets", "pairs"} and cl["triplets"]["n"] == cl["pairs"]["n"]
    assert cl["pairs"]["detectors"]["quco_stage2"]["coverage"] > 0.5
    assert cl["triplets"]["detectors"]["quco_stage2"]["coverage"] == 0.0
    assert cl["triplets"]["detectors"]["data"]["roc_auc"] != cl["pairs"]["detectors"]["data"]["roc_auc"]
    assert "skipped" in ab["corpus"]["without_knowledge"]  # "fake" is no demo index folder
    assert models == [None, "gemma3-270m"]  # the model ablation generates with the second model
    for variant in ab["window"].values():
        assert 0.0 <= variant["detectors"]["combined"]["roc_auc"] <= 1.0
    md = (tmp_path / "detectors.md").read_text()
    assert "## Ablations" in md and "Claims: triplets and tuples vs entity pairs" in md


def test_paired_protocol_rows_and_length_beside() -> None:
    from quco.evaluation.collect import collect_paired
    from quco.evaluation.detectors import length_beside

    class Scorer:
        def score(self, prompt: str, continuation: str) -> Confidence:
            return Confidence((TokenConfidence(continuation, 0, -0.5, 1.0),))

    items = collect_paired(_fake_rows(range(0, 4)), Scorer(), lambda q, ev: q, progress=False)
    assert [it.label for it in items] == [0, 1] * 4
    assert items[1].answer.endswith("Atlantis.") and items[0].answer == items[0].gold
    assert all(it.confidence is not None and it.group == f"q{it.row}" for it in items)
    dets = {"length": {"roc_auc": 0.97}, "data": {"roc_auc": 0.6}}
    length_beside(dets)
    assert dets["data"]["length_baseline_roc_auc"] == 0.97


def test_eval_detectors_user_jsonl_without_model(tmp_path) -> None:
    from quco.evaluation.run import Components, DetectorEvalConfig, run_detectors_eval

    rows = []
    for i in range(30):
        good = i % 3 != 0
        rows.append({"question": f"Where was {PEOPLE[i % 6]} born?", "answer": CITIES[i % 10] if good else "Atlantis",
                     "label": 0 if good else 1})
    p = tmp_path / "labeled.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    docs = [f"{a} was born in {c}." for a, c in zip(PEOPLE, CITIES, strict=False)] + [" ".join(CITIES)]
    comp = Components(make_extractor=FakeExtractor, make_stats=lambda i: FakeCorpus(docs))
    cfg = DetectorEvalConfig(out=tmp_path / "o", protocol=str(p), index="fake", use_model=False, n_boot=0,
                             window=None, progress=False)
    doc = run_detectors_eval(cfg, comp)
    assert doc["protocol"] == "user" and doc["n"] == 30 and doc["headline_slice"] == "all"
    d = doc["detectors"]
    assert d["confidence"]["coverage"] == 0.0  # no model: the confidence side has nothing to say
    assert d["a_ent_freq_min"]["roc_auc"] == 1.0  # "Atlantis" never occurs in the corpus
    assert doc["settings"]["window"] == "doc"


def test_ablation_selection_is_parsed_and_validated() -> None:
    from quco.cli.eval_detectors_cmd import _ablation_kinds
    from quco.errors import BadInputError

    assert _ablation_kinds("corpus,window") == ("corpus", "window")
    assert _ablation_kinds("claims") == ("claims",)
    assert _ablation_kinds("") == ()
    with pytest.raises(BadInputError):
        _ablation_kinds("corpus,temperature")


def test_ngram_ablation_fits_the_data_side_without_and_with_novelty(tmp_path) -> None:
    from quco.evaluation.run import DetectorEvalConfig, run_detectors_eval

    comp, _ = _fake_components(range(0, 30))
    cfg = DetectorEvalConfig(out=tmp_path, rows=range(0, 30), index="fake", ablations=True, n_boot=0,
                             n_boot_ablation=20, progress=False, ablation_kinds=("ngram",))
    doc = run_detectors_eval(cfg, comp)
    ng = doc["ablations"]["ngram"]
    assert set(ng) == {"without", "with"} and ng["with"]["n"] == ng["without"]["n"]
    assert ng["with"]["ngrams"] and not ng["without"]["ngrams"]
    # the novelty features change the fitted data side (the fake corpus counts word n-grams exactly)
    assert ng["with"]["detectors"]["data"]["roc_auc"] != ng["without"]["detectors"]["data"]["roc_auc"]
    assert "N-gram novelty" in (tmp_path / "detectors.md").read_text()
    from quco.cli.eval_detectors_cmd import _ablation_kinds

    assert _ablation_kinds("ngram,claims") == ("ngram", "claims")


def test_the_quco_rule_is_rated_with_the_thresholds_scaled_to_the_index(tmp_path) -> None:
    """The default τ_entity (the paper's rate) is scaled to the index; --tau-entity 1000 restores the absolute count."""
    from quco.evaluation.run import Components, DetectorEvalConfig, run_detectors_eval

    rows = [{"question": f"Where was {PEOPLE[i % 6]} born?", "answer": CITIES[i % 10] if i % 3 else "Atlantis",
             "label": 0 if i % 3 else 1} for i in range(30)]
    p = tmp_path / "labeled.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    docs = [f"{a} was born in {c}." for a, c in zip(PEOPLE, CITIES, strict=False)] + [" ".join(CITIES)]
    comp = Components(make_extractor=FakeExtractor, make_stats=lambda i: FakeCorpus(docs))
    tokens = FakeCorpus(docs).tokens
    figs = {}
    for spec in ("1e3@4e12", "1000"):
        cfg = DetectorEvalConfig(out=tmp_path / spec.replace("@", "_"), protocol=str(p), index="fake", use_model=False,
                                 n_boot=0, window=None, progress=False, tau_entity=spec)
        doc = run_detectors_eval(cfg, comp)
        th = doc["settings"]["rule_thresholds"]
        figs[spec] = (th["tau_entity"], doc["coverage_figures"]["rule_flag_rate"])
    assert figs["1e3@4e12"][0] == pytest.approx(1e3 * tokens / 4e12) and figs["1000"][0] == 1000
    # every person occurs once: rare against 1000, frequent against the scaled rate (below 1)
    assert figs["1000"][1] == 1.0 and figs["1e3@4e12"][1] < 1.0
    assert DetectorEvalConfig(out=tmp_path).tau_entity == "1e3@4e12"  # the default is the paper's rate
