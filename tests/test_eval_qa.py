"""Reasoning answers and their scoring: the CoT prompt, final-answer extraction, the guard's cot mode,
``quco eval qa``'s summary (final answers, paired differences, time ratios). Fakes only (no model)."""

from __future__ import annotations

import json

import pytest

from quco.datasets import QARow
from quco.errors import BadInputError
from quco.evaluation.labels import normalize_answer
from quco.guard import Guard
from quco.prompts import COT_FEW_SHOT, FEW_SHOT, PROMPTS, cot_prompt, final_answer, make_prompt, qa_prompt
from quco.testing import FakeCorpus, FakeExtractor, FakeGenerator, FakeRetriever


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Paris", "Paris"),
        ("Paris.", "Paris"),
        ("The capital of France is Paris. So the answer is Paris.", "Paris"),
        ("So the answer is the U.S. Army. Then more text.", "the U.S. Army"),
        ("The answer is: 1997", "1997"),
        ("The answer to your question is: Team Halfords Bikehut", "Team Halfords Bikehut"),
        ("The answer: Paris.", "Paris"),
        ("The answers were good.", "The answers were good"),
        ("A is B. The answer is C. Actually, the answer is D.", "D"),
        ("Jane Austen was born in 1775. Charles Dickens was born in 1812.", "Charles Dickens was born in 1812"),
        ("", ""),
    ],
)
def test_final_answer(text: str, answer: str) -> None:
    assert final_answer(text) == answer


def test_cot_prompt_format_and_examples() -> None:
    p = cot_prompt("Who built the tower?")
    assert "one fact per sentence" in p and "So the answer is" in p and p.endswith("Question: Who built the tower?\nAnswer:")
    for _, q, a in COT_FEW_SHOT:  # every example: one fact per sentence, names not pronouns, "So the answer is X."
        assert q in p and a.split(". ")[-1].startswith("So the answer is ")
        assert not {" he ", " she ", " it ", " his ", " her ", " its "} & {f" {w} " for w in a.lower().replace(".", " ").split()}
    with_ev = cot_prompt("Who built the tower?", ["Gustave Eiffel built it."])
    assert "Evidence [1]: Gustave Eiffel built it." in with_ev and with_ev.count("Evidence: ") == len(COT_FEW_SHOT)
    assert make_prompt("short", "Q?") == qa_prompt("Q?") and make_prompt("cot", "Q?") == cot_prompt("Q?")
    assert PROMPTS == ("short", "cot")
    with pytest.raises(BadInputError, match="unknown prompt"):
        make_prompt("long", "Q?")


def test_few_shot_questions_are_not_halueval_questions() -> None:
    from quco.datasets import iter_halueval_qa

    mine = {normalize_answer(q) for _, q, _ in (*COT_FEW_SHOT, *FEW_SHOT)}
    hits = [r.row for r in iter_halueval_qa() if normalize_answer(r.question) in mine]
    assert hits == []


def _cot_guard(policy: str, responses: list[str], **kw: object) -> tuple[Guard, FakeGenerator, FakeRetriever]:
    gen = FakeGenerator(responses)
    ret = FakeRetriever(["Paris is the capital of France.", "France is in Europe."])
    docs = ["Paris is the capital of France."] * 50
    g = Guard(gen, FakeExtractor(), FakeCorpus(docs), ret if policy != "none" else None, policy=policy, prompt="cot", **kw)  # type: ignore[arg-type]
    return g, gen, ret


def test_guard_cot_stops_at_the_conclusion_and_continues_from_accepted_text() -> None:
    g, gen, _ = _cot_guard("none", ["Paris is the capital of France. So the answer is Paris. Extra sentence here."])
    r = g.answer("What is the capital of France?")
    assert r.answer == "Paris is the capital of France. So the answer is Paris."
    assert r.final_answer == "Paris" and r.prompt == "cot" and r.to_dict()["final_answer"] == "Paris"
    assert len(gen.calls) == 2 and "step by step" in gen.calls[0][0]
    assert gen.calls[1][1] == "Paris is the capital of France."  # the second sentence continues the accepted text


def test_guard_rejects_an_unknown_prompt() -> None:
    with pytest.raises(BadInputError, match="unknown prompt"):
        Guard(FakeGenerator(["x"]), policy="none", prompt="essay")


class _Timed:
    """A guard stand-in whose answers and costs are preset per policy."""

    def __init__(self, answers: dict[int, str], retrievals: int, seconds: float) -> None:
        self.answers, self.retrievals, self.seconds = answers, retrievals, seconds
        self.row = 0

    def answer(self, question: str):  # type: ignore[no-untyped-def]
        from quco.guard.trace import GuardResult, Stage1Record, Timings

        row = 2000 + int(question.split()[-1].rstrip("?"))
        return GuardResult(question, self.answers[row], "x", Stage1Record(), (), self.retrievals, 1, 5, Timings(generation=self.seconds),
                           self.seconds, "end")


def test_eval_qa_scores_the_final_answer_with_paired_headline_differences(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from quco.evaluation.qa import run_qa

    rows = [QARow(2000 + i, f"Question number {i}?", "", "Paris", "Lyon") for i in range(6)]
    right = "The capital of France is Paris. So the answer is Paris."
    wrong = "The capital of France is Lyon. So the answer is Lyon."
    guards = {
        "none": _Timed({2000 + i: wrong for i in range(6)}, 0, 1.0),
        "single": _Timed({2000 + i: right if i < 3 else wrong for i in range(6)}, 1, 1.5),
        "flare": _Timed({2000 + i: right if i < 2 else wrong for i in range(6)}, 1, 2.0),
        "quco": _Timed({2000 + i: right if i < 5 else wrong for i in range(6)}, 2, 1.5),
    }
    s = run_qa(rows, guards, tmp_path, config={"model": "fake", "prompt": "cot", "claims": "triplets"}, progress=False)
    q = s["policies"]["quco"]
    # scored on the final answer: a whole reasoning answer would never be an exact match
    assert q["em"] == pytest.approx(5 / 6) and s["policies"]["none"]["em"] == 0.0
    assert q["em_ci"][0] <= q["em"] <= q["em_ci"][1] and "f1_ci" in q
    h = s["headline"]
    assert set(h) == {"quco - single", "quco - flare"}
    assert h["quco - single"]["em"] == pytest.approx(2 / 6) and h["quco - flare"]["em"] == pytest.approx(3 / 6)
    assert h["quco - flare"]["em_ci"][0] > 0  # flare is never right where quco is wrong
    assert s["seconds_ratio_to_none"] == {"none": 1.0, "single": 1.5, "flare": 2.0, "quco": 1.5}
    rec = json.loads((tmp_path / "qa_rows.jsonl").read_text().splitlines()[0])
    assert rec["final_answer"] in ("Paris", "Lyon") and rec["answer"].startswith("The capital")
    md = (tmp_path / "qa.md").read_text()
    assert "| quco - flare |" in md and "prompt cot" in md and "s/q ÷ none" in md


def test_eval_qa_cli_checks_prompt_and_claims(capsys) -> None:  # type: ignore[no-untyped-def]
    from quco.cli import main

    for bad in (["--prompt", "essay"], ["--claims", "both"]):
        with pytest.raises(SystemExit) as exc:  # argparse refuses the choice, one usage line
            main(["eval", "qa", *bad, "--out", "/tmp/x"])
        assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err
