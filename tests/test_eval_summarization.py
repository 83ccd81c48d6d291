"""The ``summarization`` protocol of ``quco eval detectors``, its coverage figures and the no-news index."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from quco.datasets import SummaryRow, halueval_path, load_halueval_summarization
from quco.errors import BadInputError
from quco.evaluation.collect import EvalItem, collect_summarization, summary_question
from quco.evaluation.coverage_figs import ENTITY_COVERAGE, coverage_figures, coverage_markdown
from quco.types import Confidence, TokenConfidence

# -- the loader, on the packaged data set ---------------------------------------------


def test_loader_reads_the_real_rows() -> None:
    rows = load_halueval_summarization(range(2000, 2003))
    assert [r.row for r in rows] == [2000, 2001, 2002]
    with open(halueval_path("summarization"), encoding="utf-8") as f:
        lines = [json.loads(line) for _, line in zip(range(2002), f, strict=False)]
    assert rows[1].document == lines[2001]["document"]
    assert rows[1].right_summary == lines[2001]["right_summary"]
    assert rows[1].hallucinated_summary == lines[2001]["hallucinated_summary"]
    assert all(r.right_summary.strip() and r.right_summary != r.hallucinated_summary for r in rows)


def test_loader_refuses_rows_past_the_end() -> None:
    with pytest.raises(BadInputError, match="has rows 0-9999 only"):
        load_halueval_summarization(range(9998, 10002))


# -- collection --------------------------------------------------------------------------


def _rows(n: int) -> list[SummaryRow]:
    return [
        SummaryRow(10 + i, " ".join(f"w{k}" for k in range(500)) + f" Paris{i}.", f"Right {i}.", f"Wrong {i} here.")
        for i in range(n)
    ]


class _Scorer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def score(self, prompt: str, continuation: str) -> Confidence:
        self.calls.append((prompt, continuation))
        return Confidence((TokenConfidence(continuation, 0, -0.5, 1.0),))


def test_summary_question_keeps_the_first_words() -> None:
    q = summary_question("a  b\nc d", max_words=3)
    assert q == "Summarize this article: a b c ..."
    assert summary_question("a b", max_words=3) == "Summarize this article: a b"


def test_collect_summarization_labels_groups_and_prompts() -> None:
    scorer = _Scorer()
    items = collect_summarization(_rows(3), scorer, lambda q, ev: "P:" + q, max_words=10, progress=False)
    assert [it.label for it in items] == [0, 1] * 3
    assert [it.answer for it in items[:2]] == ["Right 0.", "Wrong 0 here."]
    assert [it.group for it in items] == ["s10", "s10", "s11", "s11", "s12", "s12"]
    assert all(it.condition == "paired" and it.gold == "" and not it.comparison for it in items)
    assert items[0].question == "Summarize this article: w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 ..."
    assert items[0].prompt == "P:" + items[0].question
    assert scorer.calls[1] == (items[1].prompt, "Wrong 0 here.") and len(scorer.calls) == 6
    assert items[3].confidence is not None and items[3].confidence.tokens[0].token == "Wrong 1 here."
    bare = collect_summarization(_rows(2), None, lambda q, ev: q, progress=False)
    assert all(it.confidence is None for it in bare) and len(bare) == 4


# -- coverage figures --------------------------------------------------------------------

_SAFE_Q = math.log10(1 + 1e6)  # question entities frequent: stage 1 quiet


def _feat(pair_cooc: float, cov: float | None, q: float = _SAFE_Q) -> dict[str, float]:
    f = {"q_ent_freq_mean": q, "pair_cooc_min": pair_cooc}
    if cov is not None:
        f[ENTITY_COVERAGE] = cov
    return f


def test_coverage_figures_by_hand() -> None:
    items = [EvalItem(i, f"s{i}", "paired", "q", "a", lab) for i, lab in enumerate([0, 0, 1, 1])]
    # item 0 right, clean, covered; 1 right, flagged, uncovered; 2 wrong, flagged, no entities; 3 wrong, clean
    feats = [_feat(math.log10(6), 1.0), _feat(0.0, 0.2), _feat(0.0, math.nan), _feat(math.log10(6), 0.8)]
    fig = coverage_figures(items, feats, claims="pairs")
    assert (fig.n, fig.true_rate, fig.rule_flag_rate, fig.rule_fpr, fig.rule_tpr) == (4, 0.5, 0.5, 0.5, 0.5)
    assert fig.verdicts == {"risky": 0.25, "safe": 0.5, "out_of_coverage": 0.25}
    assert (fig.verdict_fpr, fig.verdict_tpr) == (0.0, 0.5)
    assert (fig.out_of_coverage_share, fig.no_entities_share) == (0.25, 0.25)
    # a higher floor puts item 3 (80% known) out of coverage too
    assert coverage_figures(items, feats, claims="pairs", floor=0.9).out_of_coverage_share == 0.5
    assert (fig.stage2_flag_rate, fig.stage2_fpr, fig.stage2_tpr) == (0.5, 0.5, 0.5)
    # a rare question entity (stage 1) flags item 3 too; stage 2 alone is unchanged
    feats[3] = _feat(math.log10(6), 0.8, q=math.log10(1 + 5))
    fig1 = coverage_figures(items, feats, claims="pairs")
    assert (fig1.rule_flag_rate, fig1.rule_tpr, fig1.stage2_tpr) == (0.75, 1.0, 0.5)
    assert fig1.verdicts == {"risky": 0.5, "safe": 0.25, "out_of_coverage": 0.25}
    md = coverage_markdown(fig.to_dict())
    assert "| QuCo rule flag rate | 0.500 |" in md and "0.250 / 0.500 / 0.250" in md
    assert coverage_markdown(None) == ""


def test_coverage_figures_without_coverage_and_bad_input() -> None:
    items = [EvalItem(i, f"s{i}", "paired", "q", "a", i % 2) for i in range(2)]
    fig = coverage_figures(items, [_feat(0.0, None), _feat(0.0, None)], claims="pairs")
    assert fig.rule_flag_rate == 1.0 and fig.verdicts == {} and fig.out_of_coverage_share is None
    with pytest.raises(ValueError, match="2 items but 1"):
        coverage_figures(items, [_feat(0.0, 1.0)])
    with pytest.raises(BadInputError):
        coverage_figures(items, [_feat(0.0, 1.0)] * 2, floor=1.5)


# -- the no-news index --------------------------------------------------------------------


def test_nonews_index_is_built_beside_a_demo_index(tmp_path: Path) -> None:
    from quco.corpus.manifest import Manifest
    from quco.demo import KNOWLEDGE, NEWS, WIKI, DemoPaths
    from quco.evaluation.ablations import nonews_index_for

    paths = DemoPaths(tmp_path)
    assert paths.index_nonews == tmp_path / "index-nonews"
    assert [p.name for p in paths.corpus_files(news=False)] == [KNOWLEDGE, WIKI]
    assert [p.name for p in paths.corpus_files(knowledge=False, news=False)] == [WIKI]
    assert nonews_index_for(str(tmp_path / "other")) is None  # not a demo "index" folder
    assert nonews_index_for(str(tmp_path / "index")) is None  # no corpus files
    paths.corpus.mkdir()
    for name, text in ((KNOWLEDGE, "Paris is in France."), (NEWS, "Ronaldo scored five goals."),
                       (WIKI, "Rome is in Italy.")):
        (paths.corpus / name).write_text(json.dumps({"text": text}) + "\n")
    got = nonews_index_for(str(tmp_path / "index"))
    assert got == str(paths.index_nonews)
    sources = [Path(s.path).name for s in Manifest.load(paths.index_nonews).sources]
    assert sources == [KNOWLEDGE, WIKI]
    mtime = (paths.index_nonews / "quco-index.json").stat().st_mtime_ns
    assert nonews_index_for(str(tmp_path / "index")) == got  # once: not built again
    assert (paths.index_nonews / "quco-index.json").stat().st_mtime_ns == mtime


# -- the CLI, end to end on real rows, a real tiny index and the real extractor --------------


@pytest.fixture(scope="module")
def news_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real index of the three articles rated below (so their entities are known)."""
    from quco.corpus.build import build_index

    base = tmp_path_factory.mktemp("news")
    src = base / "news.jsonl"
    src.write_text("".join(json.dumps({"text": r.document}) + "\n"
                           for r in load_halueval_summarization(range(2000, 2003))))
    build_index([src], base / "index", progress=False)
    return base / "index"


def _run_cli(index: Path, out: Path) -> dict:
    from quco.cli import main

    rc = main(["eval", "detectors", "--protocol", "summarization", "--rows", "2000-2002", "--no-model",
               "--index", str(index), "--n-boot", "20", "--folds", "3", "--out", str(out)])
    assert rc == 0
    return json.loads((out / "detectors.json").read_text())


def test_cli_summarization_no_model_seen_and_unseen(tmp_path: Path, news_index: Path, small_index: Path) -> None:
    seen = _run_cli(news_index, tmp_path / "seen")
    assert seen["protocol"] == "summarization" and seen["rows"] == "2000-2002"
    assert seen["n"] == 6 and "summarization" in seen["source"]
    d = seen["detectors"]
    for name in ("data", "quco_rule", "length", "random"):
        assert name in d and d[name]["length_baseline_roc_auc"] == d["length"]["roc_auc"]
    assert d["confidence"]["coverage"] == 0.0  # --no-model: nothing on the confidence side
    items = [json.loads(line) for line in (tmp_path / "seen" / "items.jsonl").read_text().splitlines()]
    assert [it["label"] for it in items] == [0, 1] * 3
    assert items[0]["question"].startswith("Summarize this article: ")
    cf = seen["coverage_figures"]
    assert cf["n"] == 6 and cf["true_rate"] == 0.5
    assert sum(cf["verdicts"].values()) == pytest.approx(1.0, abs=1e-3)
    # the articles are in this index: their entities are known
    assert cf["out_of_coverage_share"] == 0.0
    assert "Data-side flags and coverage" in (tmp_path / "seen" / "detectors.md").read_text()
    # the tiny city corpus knows nothing of these articles: out of coverage
    unseen = _run_cli(small_index, tmp_path / "unseen")
    assert unseen["coverage_figures"]["out_of_coverage_share"] > 0.5


def test_cli_summarization_bad_rows(tmp_path: Path, small_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from quco.cli import main

    rc = main(["eval", "detectors", "--protocol", "summarization", "--rows", "9999-10001", "--no-model",
               "--index", str(small_index), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "has rows 0-9999 only" in err
    assert main(["eval", "detectors", "--protocol", "summarise", "--out", str(tmp_path)]) == 1
    assert "summarization" in capsys.readouterr().err
