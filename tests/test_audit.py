"""Audits: input parsing, output records, bad rows, resume after a crash, CLI, report HTML."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from quco.analyze import Analyzer
from quco.audit.report import build_report
from quco.audit.rows import AuditRow, BadRow, parse_line, parse_raw, read_lines
from quco.audit.runner import Auditor, MemoExtractor, context_support, run_audit, side_paths
from quco.audit.verdicts import default_judge
from quco.cli import main
from quco.errors import BadInputError
from quco.testing import FakeCorpus, FakeExtractor
from quco.types import Confidence, Entity, TokenConfidence

DOCS = [
    "Paris is the capital of France.",
    "Jane Austen wrote Emma in England.",
    "The Eiffel Tower is in Paris.",
    "Berlin is the capital of Germany.",
]

GOOD = [
    {
        "question": "Who wrote Emma?",
        "answer": "Jane Austen wrote Emma.",
        "label": 0,
        "context": "Emma is by Jane Austen.",
        "src": "log-1",
    },
    {
        "question": "Where is the Eiffel Tower?",
        "answer": "The Eiffel Tower is in Berlin.",
        "label": 1,
        "id": "abc",
    },
    {
        "question": "What is the capital of France?",
        "answer": "Paris is the capital. Berlin is not.",
        "label": 0,
    },
]


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
    return path


def _mixed_input(tmp: Path) -> Path:
    """Good rows on lines 1, 3, 6; bad ones on 2 (malformed), 4 (no answer), 5 (not UTF-8); 7 blank."""
    return _write(
        tmp / "in.jsonl",
        [
            json.dumps(GOOD[0]).encode(),
            b'{"question": "Who?", "answer": ',
            json.dumps(GOOD[1]).encode(),
            b'{"question": "Where is Paris?"}',
            b'{"question": "Caf\xe9?", "answer": "Paris"}',
            json.dumps(GOOD[2]).encode(),
            b"   ",
        ],
    )


@pytest.fixture()
def fake_auditor() -> Auditor:
    return Auditor(Analyzer(MemoExtractor(FakeExtractor()), FakeCorpus(DOCS)), default_judge(model=False))


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ------------------------------------------------------------------- parsing


def test_parse_line_accepts_and_rejects() -> None:
    row = parse_line(
        b'{"question": "Q?", "answer": "A.", "context": ["d1", "d2"], "label": true, "x": 1}\n', 7
    )
    assert isinstance(row, AuditRow)
    assert (row.id, row.context, row.label, row.extra) == (7, ("d1", "d2"), 1, {"x": 1})
    row2 = parse_line(b'{"question": "Q?", "answer": "A.", "id": "r1", "context": "doc"}', 1)
    assert isinstance(row2, AuditRow) and row2.context == ("doc",) and row2.id == "r1"
    assert parse_line(b"  \n", 3) is None
    cases = {
        b"[1, 2]": "must be a JSON object",
        b'{"question": "Q?"}': "missing field 'answer'",
        b'{"question": 3, "answer": "A"}': "'question' must be a string",
        b'{"question": "Q?", "answer": "A", "label": 2}': "'label' must be 0 or 1",
        b'{"question": "Q?", "answer": "A", "context": [1]}': "'context' must be",
        b'{"question": "Q?", "answer": "A", "id": [1]}': "'id' must be",
        b'{"question": "\xff", "answer": "A"}': "not valid UTF-8",
        b'{"question": ': "malformed JSON",
        b'{"question": "Q?", "answer": "A", "score": NaN}': "NaN is not valid JSON",
    }
    for raw, reason in cases.items():
        bad = parse_line(raw, 5)
        assert isinstance(bad, BadRow) and bad.line == 5 and reason in bad.reason, (raw, bad)


def test_read_lines_skips_an_overlong_line_in_chunks(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "x.jsonl",
        [b'{"question": "Q", "answer": "' + b"a" * 5000 + b'"}', b'{"question": "Q2", "answer": "A"}'],
    )
    with open(p, "rb") as f:
        raws = list(read_lines(f, max_bytes=100))
    assert [r.line for r in raws] == [1, 2]
    assert raws[0].too_long and len(raws[0].data) <= 101 and raws[1].end == p.stat().st_size
    assert "too long" in parse_raw(raws[0]).reason  # type: ignore[union-attr]
    assert isinstance(parse_raw(raws[1]), AuditRow)


def test_context_support_is_casefolded_and_whole_word() -> None:
    ents = [Entity("Paris", "Paris", "GPE"), Entity("Emma", "Emma", "WORK"), Entity("Ulm", "Ulm", "GPE")]
    got = context_support(ents, ["He lived in PARIS.", "Gemma is a model; Ulm."])
    assert [e["supported"] for e in got["entities"]] == [True, False, True]
    assert got["supported_share"] == pytest.approx(2 / 3, abs=1e-6)
    assert context_support([], ["x"])["supported_share"] is None


# --------------------------------------------------------------- audit (fakes)


def test_audit_good_rows_bad_rows_and_side_file(tmp_path: Path, fake_auditor: Auditor) -> None:
    out = tmp_path / "out.jsonl"
    s = run_audit(_mixed_input(tmp_path), out, fake_auditor, batch_size=2, progress=False)
    assert (s.audited, s.bad, s.lines) == (3, 3, 7)
    recs = _read_jsonl(out)
    assert [r["id"] for r in recs] == [1, "abc", 6]  # given id, else the line number; input order
    assert [r["line"] for r in recs] == [1, 3, 6]
    assert [r["answer"] for r in recs] == [g["answer"] for g in GOOD]
    r0, r1, r2 = recs
    assert r0["src"] == "log-1" and r0["label"] == 0 and "src" not in r1
    # counts behind the verdicts are the corpus's (FakeCorpus counts by brute force)
    assert {e["text"]: e["count"] for e in r0["answer_entities"]} == {"Jane Austen": 1, "Emma": 1}
    assert r0["pairs"] == [{"head": "Jane Austen", "tail": "Emma", "count": 1, "approx": False}]
    assert r0["context"] == {
        "entities": [{"text": "Jane Austen", "supported": True}, {"text": "Emma", "supported": True}],
        "supported_share": 1.0,
    }
    # the hallucinated pair never co-occurs: quco flags it and says why
    assert r1["verdicts"]["quco"]["flagged"] and r1["flagged"] and r1["risk"] == 1.0
    assert any(
        x["kind"] == "zero_cooccurrence" and x["subject"] == "Eiffel Tower | Berlin"
        for x in r1["verdicts"]["quco"]["reasons"]
    )
    assert set(r1["verdicts"]) == {"quco"}  # no model: no flare
    # two sentences, each with its own risk; entity offsets are in the answer
    assert [s_["text"] for s_ in r2["sentences"]] == ["Paris is the capital.", "Berlin is not."]
    berlin = r2["sentences"][1]["entities"][0]
    assert r2["answer"][berlin["start"] : berlin["end"]] == "Berlin"
    bad_path, state_path = side_paths(out)
    bad = _read_jsonl(bad_path)
    assert [b["line"] for b in bad] == [2, 4, 5]
    assert "malformed JSON" in bad[0]["reason"]
    assert bad[1]["reason"] == "missing field 'answer'"
    assert "not valid UTF-8" in bad[2]["reason"]
    state = json.loads(state_path.read_text())
    assert state["done"] and state["lines"] == 7 and state["out_bytes"] == out.stat().st_size


def _big_input(path: Path, n: int) -> Path:
    cities = ["Paris", "Berlin", "London", "Rome"]
    lines = []
    for i in range(n):
        if i % 17 == 9:
            lines.append(b'{"question": oops')
            continue
        c = cities[i % 4]
        lines.append(
            json.dumps(
                {
                    "question": f"Where is the Eiffel Tower? ({i})",
                    "answer": f"It is in {c}.",
                    "label": int(c != "Paris"),
                }
            ).encode()
        )
    return _write(path, lines)


def test_crash_after_a_partial_write_resumes_to_identical_files(
    tmp_path: Path, fake_auditor: Auditor
) -> None:
    src = _big_input(tmp_path / "in.jsonl", 60)
    ref = tmp_path / "ref.jsonl"
    run_audit(src, ref, fake_auditor, batch_size=5, progress=False)

    out = tmp_path / "out.jsonl"

    class Crash(Exception):
        pass

    def crash(lines: int) -> None:
        if lines >= 25:
            raise Crash

    with pytest.raises(Crash):
        run_audit(src, out, fake_auditor, batch_size=5, progress=False, on_batch=crash)
    bad_path, state_path = side_paths(out)
    st = json.loads(state_path.read_text())
    assert st["lines"] == 25 and not st["done"]
    # a batch written but never committed: the resume must drop it
    with open(out, "ab") as f:
        f.write(b'{"id": "half-written')
    with open(bad_path, "ab") as f:
        f.write(b'{"line": 999}\n')
    s = run_audit(src, out, fake_auditor, batch_size=5, progress=False)
    assert s.resumed_at == 25
    assert out.read_bytes() == ref.read_bytes()
    assert bad_path.read_bytes() == side_paths(ref)[0].read_bytes()
    # a finished audit run again changes nothing
    again = run_audit(src, out, fake_auditor, batch_size=5, progress=False)
    assert again.audited_now == 0 and out.read_bytes() == ref.read_bytes()


def test_resume_refuses_other_options_or_a_changed_input(tmp_path: Path, fake_auditor: Auditor) -> None:
    src = _big_input(tmp_path / "in.jsonl", 12)
    out = tmp_path / "out.jsonl"
    run_audit(src, out, fake_auditor, batch_size=4, settings={"window": 1000}, progress=False)
    with pytest.raises(BadInputError, match="other options"):
        run_audit(src, out, fake_auditor, batch_size=4, settings={"window": 50}, progress=False)
    src.write_bytes(src.read_bytes().replace(b"Eiffel", b"Tower!"))
    with pytest.raises(BadInputError, match="input changed"):
        run_audit(src, out, fake_auditor, batch_size=4, settings={"window": 1000}, progress=False)
    s = run_audit(
        src, out, fake_auditor, batch_size=4, settings={"window": 1000}, progress=False, restart=True
    )
    assert s.resumed_at == 0 and "Tower!" in out.read_text()


def test_a_row_the_analysis_rejects_becomes_a_bad_row(tmp_path: Path) -> None:
    class Picky(FakeExtractor):
        def entities_many(self, texts):  # type: ignore[no-untyped-def]
            if any("POISON" in t for t in texts):
                raise BadInputError("poisoned text")
            return super().entities_many(texts)

    auditor = Auditor(Analyzer(Picky(), FakeCorpus(DOCS)), default_judge(model=False))
    src = _write(
        tmp_path / "in.jsonl",
        [
            json.dumps(GOOD[0]).encode(),
            json.dumps({"question": "Q?", "answer": "POISON"}).encode(),
            json.dumps(GOOD[1]).encode(),
        ],
    )
    for batch_size in (10, 1):
        out = tmp_path / f"out{batch_size}.jsonl"
        s = run_audit(src, out, auditor, batch_size=batch_size, progress=False)
        assert (s.audited, s.bad) == (2, 1)
        assert [r["line"] for r in _read_jsonl(out)] == [1, 3]
        bad = _read_jsonl(side_paths(out)[0])
        assert bad[0]["line"] == 2 and "poisoned text" in bad[0]["reason"]


def test_memo_extractor_runs_each_text_once() -> None:
    calls: list[list[str]] = []

    class Counting(FakeExtractor):
        def entities_many(self, texts):  # type: ignore[no-untyped-def]
            calls.append(list(texts))
            return super().entities_many(texts)

    m = MemoExtractor(Counting(), maxsize=2)
    a = m.entities_many(["Paris is big.", "Paris is big.", "Berlin too."])
    assert calls == [["Paris is big.", "Berlin too."]]
    assert [[e.text for e in x] for x in a] == [["Paris"], ["Paris"], ["Berlin"]]
    m.entities_many(["Berlin too.", "Rome."])
    assert calls[-1] == ["Rome."]


# ------------------------------------------------------------------ report


def test_report_is_self_contained_and_escaped(tmp_path: Path, fake_auditor: Auditor) -> None:
    rows = [json.dumps(g).encode() for g in GOOD]
    rows.append(
        json.dumps(
            {"question": "Who is <b>X</b>?", "answer": "<script>alert('x')</script> Paris", "label": 1}
        ).encode()
    )
    src = _write(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    run_audit(src, out, fake_auditor, batch_size=2, progress=False)
    page = build_report(out, tmp_path / "r.html", top=3).read_text(encoding="utf-8")
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "Who is &lt;b&gt;X&lt;/b&gt;?" in page
    assert "http://" not in page and "https://" not in page  # no network
    assert page.count("data:image/png;base64,") == 4  # risk and coverage histograms, ROC, reliability
    assert 'id="coverage"' in page and "flag rate" in page
    assert "Detector metrics" in page and "ROC-AUC" in page
    table = page[page.index('id="answers"') :]
    assert table.count('<tr><td class="num">') == 3  # the table keeps the top 3 of 4
    assert '<mark class="ent bad"' in page  # Eiffel Tower | Berlin never co-occur


def test_report_without_labels_has_no_roc(tmp_path: Path, fake_auditor: Auditor) -> None:
    src = _write(
        tmp_path / "in.jsonl",
        [json.dumps({k: v for k, v in g.items() if k != "label"}).encode() for g in GOOD],
    )
    out = tmp_path / "out.jsonl"
    run_audit(src, out, fake_auditor, batch_size=2, progress=False)
    page = build_report(out, tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2 and "Detector metrics" not in page  # risk, coverage


# ---------------------------------------------------------- CLI, real index


@pytest.mark.slow
def test_cli_real_index_bad_rows_exit_status(
    tmp_path: Path, small_index: Path, small_stats, capsys: pytest.CaptureFixture[str]
) -> None:
    src = _write(
        tmp_path / "in.jsonl",
        [
            json.dumps(
                {
                    "question": "What is the capital of France?",
                    "answer": "Paris is the capital of France.",
                    "label": 0,
                }
            ).encode(),
            b"{broken",
            json.dumps(
                {
                    "question": "Where was Marie Curie born?",
                    "answer": "Marie Curie was born in Reykjavik.",
                    "id": "mc",
                    "label": 1,
                }
            ).encode(),
            b'{"question": "Who?"}',
            b'{"question": "\xe9\xe9", "answer": "x"}',
        ],
    )
    out = tmp_path / "out.jsonl"
    report = tmp_path / "report.html"
    code = main(
        [
            "audit",
            str(src),
            "--out",
            str(out),
            "--index",
            str(small_index),
            "--no-model",
            "--no-progress",
            "--report",
            str(report),
        ]
    )
    err = capsys.readouterr().err
    assert code == 3
    assert err.strip().splitlines()[-1] == f"quco: 3 bad rows, see {side_paths(out)[0]}"
    recs = _read_jsonl(out)
    assert [r["id"] for r in recs] == [1, "mc"]
    # counts are the real index's
    for r in recs:
        for e in r["answer_entities"]:
            assert e["count"] == small_stats.count(e["text"]).value
    paris, curie = recs
    # the tiny corpus makes every question entity rare (stage 1), but only the wrong answer has an unseen pair
    assert paris["pairs"] and all(p["count"] > 0 for p in paris["pairs"])
    assert not any(x["kind"] == "zero_cooccurrence" for x in paris["verdicts"]["quco"]["reasons"])
    # the headline is the shipped data-only model (quco/data/combined-data.json); the rule itself is certain
    assert set(paris["verdicts"]) == {"quco", "combined"} and curie["risk"] == curie["verdicts"]["combined"]["probability"]
    assert curie["risk"] > paris["risk"] and curie["verdicts"]["quco"]["probability"] == 1.0
    assert (
        curie["flagged"]
        and any(
            x["kind"] == "zero_cooccurrence" and "Reykjavik" in x["subject"]
            for x in curie["verdicts"]["quco"]["reasons"]
        )
    )
    assert [b["line"] for b in _read_jsonl(side_paths(out)[0])] == [2, 4, 5]
    assert report.stat().st_size > 10_000
    # claims (the default mode) are in the records, answer-level and per sentence, with spans in the answer
    (claim,) = curie["sentences"][0]["claims"]
    assert (claim["head"], claim["relation"], claim["tail"], claim["kind"], claim["count"]) == (
        "Marie Curie", "born in", "Reykjavik", "triplet", 0
    )
    assert curie["answer"][claim["tail_span"][0] : claim["tail_span"][1]] == "Reykjavik"
    assert curie["claims"] == curie["sentences"][0]["claims"]
    reason = next(x for x in curie["verdicts"]["quco"]["reasons"] if x["kind"] == "zero_cooccurrence")
    assert reason["message"].startswith("'Marie Curie' \u2014born in\u2192 'Reykjavik' never co-occur")
    assert all(c["count"] > 0 for c in paris["claims"]) and paris["claims"]
    # --claims pairs: the verdict reads entity pairs again, and no claims are extracted
    out2 = tmp_path / "out2.jsonl"
    assert main(["audit", str(src), "--out", str(out2), "--index", str(small_index), "--no-model", "--no-progress",
                 "--claims", "pairs"]) == 3
    curie2 = _read_jsonl(out2)[1]
    assert "claims" not in curie2 and any(
        x["kind"] == "zero_cooccurrence" and x["subject"] == "Marie Curie | Reykjavik" for x in curie2["verdicts"]["quco"]["reasons"]
    )


def test_cli_missing_input_or_index_is_one_line_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["audit", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl"), "--no-model"]) == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "input file not found" in err
    src = _write(tmp_path / "in.jsonl", [json.dumps(GOOD[0]).encode()])
    assert (
        main(
            [
                "audit",
                str(src),
                "--out",
                str(tmp_path / "o.jsonl"),
                "--no-model",
                "--index",
                str(tmp_path / "noidx"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no index" in err


@pytest.mark.slow
def test_cli_killed_mid_run_resumes_to_identical_output(
    tmp_path: Path, small_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cities = ["Paris", "Berlin", "Rome", "Madrid", "Vienna", "Tokyo", "Warsaw", "London"]
    countries = ["France", "Germany", "Italy", "Spain", "Austria", "Japan", "Poland"]
    lines = []
    for i in range(240):
        if i % 50 == 7:
            lines.append(b'{"question": "bad row"')
        c, k = cities[i % 8], countries[i % 7]
        lines.append(
            json.dumps(
                {
                    "question": f"What is the capital of {k}?",
                    "answer": f"{c} is the capital of {k}.",
                    "id": f"r{i}",
                }
            ).encode()
        )
    src = _write(tmp_path / "in.jsonl", lines)
    args = [
        "audit",
        str(src),
        "--index",
        str(small_index),
        "--no-model",
        "--batch-size",
        "4",
        "--no-progress",
    ]
    ref = tmp_path / "ref.jsonl"
    assert main([*args, "--out", str(ref)]) == 5
    capsys.readouterr()

    out = tmp_path / "out.jsonl"
    _, state_path = side_paths(out)
    cmd = [sys.executable, "-m", "quco", *args, "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed_at = None
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            st = json.loads(state_path.read_text())
        except (OSError, ValueError):
            st = {}
        if st.get("lines", 0) >= 40:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = st["lines"]
            break
        time.sleep(0.005)
    proc.wait()
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, (
        "the audit finished before it could be killed"
    )
    st = json.loads(state_path.read_text())
    assert not st["done"] and st["lines"] < len(lines)
    assert out.read_bytes() != ref.read_bytes()

    assert main([*args, "--out", str(out)]) == 5  # the same command again, resumed
    assert "resumed after line" in capsys.readouterr().err
    assert out.read_bytes() == ref.read_bytes()
    assert side_paths(out)[0].read_bytes() == side_paths(ref)[0].read_bytes()


@pytest.mark.slow
def test_cli_through_quco_serve_matches_the_local_index(
    tmp_path: Path, small_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from quco.corpus.server import serve_in_thread

    rows = [
        {
            "question": "Where was Marie Curie born?",
            "answer": "Marie Curie was born in Reykjavik.",
            "label": 1,
        },
        {
            "question": "What is the capital of France?",
            "answer": "Paris is the capital of France. Lyon is not.",
        },
    ]
    src = _write(tmp_path / "in.jsonl", [json.dumps(r).encode() for r in rows])
    server, url = serve_in_thread([small_index])
    try:
        remote, local = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
        assert (
            main(["audit", str(src), "--out", str(remote), "--index", url, "--no-model", "--no-progress"])
            == 0
        )
    finally:
        server.close()
    assert (
        main(
            [
                "audit",
                str(src),
                "--out",
                str(local),
                "--index",
                str(small_index),
                "--no-model",
                "--no-progress",
            ]
        )
        == 0
    )
    assert remote.read_bytes() == local.read_bytes()
    assert _read_jsonl(remote)[0]["flagged"]


class _WordScorer:
    """Fake confidence: one token per word; a word in ``unsure`` gets probability 0.1, others 0.9."""

    def __init__(self, unsure: set[str]) -> None:
        self.unsure = unsure
        self.prompts: list[str] = []

    def score(self, prompt: str, continuation: str) -> Confidence:
        import math
        import re

        self.prompts.append(prompt)
        toks = re.findall(r"\s*\S+", continuation)
        return Confidence(
            tuple(
                TokenConfidence(t, i, math.log(0.1 if t.strip(" .") in self.unsure else 0.9), 0.5)
                for i, t in enumerate(toks)
            )
        )


def test_model_side_adds_flare_verdicts_and_confidence(tmp_path: Path) -> None:
    scorer = _WordScorer({"Berlin"})
    auditor = Auditor(
        Analyzer(MemoExtractor(FakeExtractor()), FakeCorpus(DOCS)), default_judge(model=True), scorer=scorer
    )
    src = _write(tmp_path / "in.jsonl", [json.dumps(GOOD[0]).encode(), json.dumps(GOOD[2]).encode()])
    out = tmp_path / "out.jsonl"
    run_audit(src, out, auditor, batch_size=8, progress=False)
    emma, paris = _read_jsonl(out)
    assert "Question: Who wrote Emma?" in scorer.prompts[0]  # scored under the short-answer QA prompt
    assert set(emma["verdicts"]) >= {"quco", "flare"}
    assert not emma["verdicts"]["flare"]["flagged"] and emma["confidence"]["n_tokens"] == 4
    assert paris["verdicts"]["flare"]["flagged"]
    assert paris["verdicts"]["flare"]["probability"] == pytest.approx(0.9)  # 1 - min token probability
    # per sentence: only the sentence holding the unsure token is flagged by flare
    flags = [s["verdicts"]["flare"]["flagged"] for s in paris["sentences"]]
    assert flags == [False, True]


@pytest.mark.slow
def test_real_scorer_confidence_reaches_the_record(tmp_path: Path, scorer: Any) -> None:
    auditor = Auditor(Analyzer(FakeExtractor(), FakeCorpus(DOCS)), default_judge(model=True), scorer=scorer)
    src = _write(tmp_path / "in.jsonl", [json.dumps(GOOD[1]).encode()])
    out = tmp_path / "out.jsonl"
    run_audit(src, out, auditor, batch_size=8, progress=False)
    (rec,) = _read_jsonl(out)
    conf = rec["confidence"]
    assert conf["n_tokens"] >= 5 and conf["mean_logprob"] < 0 and 0 < conf["min_prob"] < 1
    assert rec["verdicts"]["flare"]["probability"] == pytest.approx(1 - conf["min_prob"], abs=1e-5)


def _fitted(path: Path, features: str, *, flip: bool = False) -> Path:
    """A RiskScorer fitted on synthetic rows where rare entities and unseen pairs mean risk; saved as JSON."""
    import math
    import random

    from quco.risk.combined import RiskScorer
    from quco.risk.features import ALL_FEATURES

    rng = random.Random(7)
    rows, labels = [], []
    for i in range(200):
        lab = i % 2
        f = {k: rng.gauss(0, 1) for k in ALL_FEATURES}
        f["pair_cooc_min"] = rng.gauss(0.3 if lab else 2.0, 0.7)
        f["q_ent_freq_min"] = rng.gauss(1.0 if lab else 3.0, 1.0)
        if rng.random() < 0.2:
            f["pair_cooc_min"] = math.nan
        rows.append(f)
        labels.append(1 - lab if flip else lab)
    return RiskScorer(features=features).fit(rows, labels).save(path)


def test_cli_risk_model_from_calibrate_gives_the_combined_verdict(
    tmp_path: Path, small_index: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        {"question": "What is the capital of France?", "answer": "Paris is the capital of France."},
        {"question": "Where was Marie Curie born?", "answer": "Marie Curie was born in Reykjavik."},
        {"question": "Who wrote Emma?", "answer": "Jane Austen wrote Emma in England."},
    ]
    src = _write(tmp_path / "in.jsonl", [json.dumps(r).encode() for r in rows])
    base = ["audit", str(src), "--index", str(small_index), "--no-model", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "plain.jsonl")]) == 0
    # without --risk-model, --no-model uses the shipped data-only model (quco/data/combined-data.json)
    plain = [r["verdicts"]["combined"]["probability"] for r in _read_jsonl(tmp_path / "plain.jsonl")]

    probs = []
    for name, flip in (("a", False), ("b", True)):
        model = _fitted(tmp_path / f"{name}.json", "data", flip=flip)
        out = tmp_path / f"{name}.jsonl"
        assert main([*base, "--out", str(out), "--risk-model", str(model)]) == 0
        recs = _read_jsonl(out)
        assert all(r["risk"] == r["verdicts"]["combined"]["probability"] for r in recs)
        probs.append([r["risk"] for r in recs])
    # the model with the labels flipped gives the complementary probabilities: the file's model is the one used
    assert len(set(probs[0])) > 1 and probs[0] != pytest.approx(plain, abs=1e-3)
    assert probs[0] != pytest.approx(probs[1], abs=0.05)
    assert [a + b for a, b in zip(*probs)] == pytest.approx([1.0] * len(rows), abs=1e-3)
    capsys.readouterr()

    # resuming an output with another scorer is refused
    assert main([*base, "--out", str(tmp_path / "a.jsonl"), "--risk-model", str(tmp_path / "b.json")]) == 1
    assert "other options" in capsys.readouterr().err
    # a scorer that needs the model's confidence cannot run with --no-model: one line, exit 1
    both = _fitted(tmp_path / "both.json", "all")
    assert main([*base, "--out", str(tmp_path / "c.jsonl"), "--risk-model", str(both)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "confidence features" in err
    assert not (tmp_path / "c.jsonl").exists()
    assert main([*base, "--out", str(tmp_path / "d.jsonl"), "--risk-model", str(tmp_path / "nope.json")]) == 1
    assert "no risk-scorer file" in capsys.readouterr().err
