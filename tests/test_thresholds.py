"""Index-relative thresholds: parsing, scaling arithmetic, the effective values the guard uses,
and one clear error line for a bad spec on the command line."""

from __future__ import annotations

import pytest

from quco.errors import BadInputError
from quco.guard import Guard
from quco.risk.thresholds import PAPER_ENTITY_RATE, Threshold, paper_rate_at, resolve
from quco.testing import FakeCorpus, FakeExtractor, FakeGenerator, FakeRetriever


@pytest.mark.parametrize(
    ("spec", "count", "per"),
    [("1000", 1000.0, None), ("1e3", 1000.0, None), (" 1e3@4e12 ", 1000.0, 4e12), ("2.5@1e6", 2.5, 1e6), ("0", 0.0, None)],
)
def test_parse(spec: str, count: float, per: float | None) -> None:
    t = Threshold.parse(spec)
    assert (t.count, t.per_tokens) == (count, per)
    assert Threshold.parse(t.spec) == t  # spec round-trips


@pytest.mark.parametrize("spec", ["abc", "1e3@0", "-5", "1e3@-4", "", "1e3@", "@4e12", "1e3@4e12@1", "nan", "inf"])
def test_bad_specs(spec: str) -> None:
    with pytest.raises(BadInputError):
        Threshold.parse(spec)


def test_scaling_arithmetic() -> None:
    paper = Threshold.parse(PAPER_ENTITY_RATE)
    assert paper.effective(4_000_000_000_000) == pytest.approx(1000.0)
    assert paper.effective(10_700_000) == pytest.approx(1000 * 10.7e6 / 4e12)  # 0.002675
    assert paper_rate_at(10_700_000) == pytest.approx(0.002675)
    assert Threshold.parse("1e5@4e12").effective(2e12) == pytest.approx(5e4)
    assert Threshold.parse("1000").effective(None) == 1000.0  # absolute: size not needed
    # the paper's rate (the default) at an unknown size is taken at its own 4T tokens; any other rate is refused
    assert paper.effective(None) == 1000.0 and "index size unknown, taken at 4T tokens" in paper.describe(None)
    with pytest.raises(BadInputError, match="token count is unknown"):
        Threshold.parse("1e5@4e12").effective(None)
    with pytest.raises(BadInputError, match="token count is unknown"):
        Threshold.parse("1e3@1e12").effective(None)
    assert "0.002675" in paper.describe(10_700_000) and "per 4T tokens" in paper.describe(10_700_000)
    assert Threshold.parse("1000").describe(123) == "1000 (absolute)"


def test_resolve_reads_the_corpus_size() -> None:
    corpus = FakeCorpus(["Paris is in France"] * 10)  # 40 word tokens
    th = resolve("10@20", "1", "20", stats=corpus)
    assert th.tokens == 40 and th.entity == pytest.approx(20.0) and (th.cooc, th.tuple_head) == (1.0, 20.0)
    assert th.to_dict()["specs"]["tau_entity"] == "10@20"


def test_guard_scales_a_rate_to_the_index_and_the_default_is_the_papers_rate() -> None:
    docs = ["Zorblax Quint was a painter from Vienna."] + ["Paris is in France."] * 99
    corpus = FakeCorpus(docs)
    gen = FakeGenerator(["Vienna."])
    g = Guard(gen, FakeExtractor(), corpus, FakeRetriever(docs), policy="quco")
    assert g.thresholds.entity == pytest.approx(1e3 * corpus.tokens / 4e12)  # the paper's rate, scaled
    assert (g.thresholds.cooc, g.thresholds.tuple_head) == (1.0, 20.0)  # these stay absolute
    assert g.thresholds.specs[0] == Threshold.parse(PAPER_ENTITY_RATE).spec
    assert not g.answer("Where is Paris?").stage1.retrieved  # 99 Paris: frequent at any scale below 1
    g1 = Guard(FakeGenerator(["Vienna."]), FakeExtractor(), corpus, FakeRetriever(docs), policy="quco",
               entity_threshold="1000")  # the paper's count, unscaled: 99 < 1000, rare
    assert g1.thresholds.entity == 1000.0 and g1.answer("Where is Paris?").stage1.retrieved
    # 99 "Paris" in the corpus; a rate of 100 per its size scales to exactly 100: Paris is rare
    g2 = Guard(FakeGenerator(["Vienna."]), FakeExtractor(), corpus, FakeRetriever(docs), policy="quco",
               entity_threshold=f"100@{corpus.tokens}")
    assert g2.thresholds.entity == pytest.approx(100.0)
    r = g2.answer("Where is Paris?")
    assert r.stage1.risk is not None and r.stage1.risk.flagged and r.stage1.retrieved
    assert r.thresholds is not None and r.to_dict()["thresholds"]["tau_entity"] == pytest.approx(100.0)
    # half that rate: 49.5 < 99, not rare
    g3 = Guard(FakeGenerator(["Vienna."]), FakeExtractor(), corpus, FakeRetriever(docs), policy="quco",
               entity_threshold=f"50@{corpus.tokens}")
    assert not g3.answer("Where is Paris?").stage1.retrieved


def test_tau_cooc_is_applied_to_triplets() -> None:
    from quco.testing import FakeClaimExtractor

    docs = ["Paris is in France."] * 3  # Paris/France co-occur 3 times
    table = {"Paris is in France.": [("Paris", "is in", "France")]}
    kw = dict(policy="quco", claim_extractor=FakeClaimExtractor(table=table))
    r1 = Guard(FakeGenerator(["Paris is in France."]), FakeExtractor(), FakeCorpus(docs), FakeRetriever(docs), **kw).answer("Where?")
    assert not r1.sentences[0].risk.flagged  # type: ignore[union-attr]
    r2 = Guard(FakeGenerator(["Paris is in France."]), FakeExtractor(), FakeCorpus(docs), FakeRetriever(docs),
               cooc_threshold="5", **kw).answer("Where?")
    assert r2.sentences[0].risk.flagged  # type: ignore[union-attr]
    assert [x.kind for x in r2.sentences[0].risk.reasons] == ["zero_cooccurrence"]  # type: ignore[union-attr]


def test_rate_on_a_server_of_unknown_size_is_refused_but_the_default_is_taken_at_4t() -> None:
    class Sizeless(FakeCorpus):
        tokens = None  # type: ignore[assignment]

    with pytest.raises(BadInputError, match="token count is unknown"):
        Guard(FakeGenerator(["x"]), FakeExtractor(), Sizeless(["a"]), FakeRetriever(["a"]), entity_threshold="5@1e6")
    g = Guard(FakeGenerator(["x"]), FakeExtractor(), Sizeless(["a"]), FakeRetriever(["a"]), policy="quco")
    assert g.thresholds.tokens is None and g.thresholds.entity == 1000.0  # the public ~4T index: the paper's count
    assert "index size unknown, taken at 4T tokens" in g.thresholds.describe()


@pytest.mark.parametrize("spec", ["abc", "1e3@0", "-5"])
def test_cli_bad_spec_is_one_line(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    from quco.cli import main

    assert main(["ask", "Where is Paris?", "--policy", "none", f"--tau-entity={spec}"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("quco: error: --tau-entity") and spec in err[0]


def test_cli_bad_coverage_options_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from quco.cli import main

    assert main(["ask", "Where?", "--policy", "none", "--coverage-floor", "2"]) == 1
    assert main(["ask", "Where?", "--policy", "none", "--on-out-of-coverage", "maybe"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--coverage-floor" in err[0] and "--on-out-of-coverage" in err[1]


def test_ask_trace_prints_the_effective_values() -> None:
    import io

    from rich.console import Console

    from quco.cli.ask_cmd import render_trace

    docs = ["Paris is in France."] * 100
    corpus = FakeCorpus(docs)
    assert corpus.tokens == 500  # the fake's tokens: words and punctuation
    g = Guard(FakeGenerator(["Paris."]), FakeExtractor(), corpus, FakeRetriever(docs), policy="quco",
              entity_threshold="1e3@4e12", on_out_of_coverage="pass")
    buf = io.StringIO()
    render_trace(g.answer("Where is Zorblax?"), console=Console(file=buf, width=400))
    out = buf.getvalue()
    assert "Thresholds: τ_entity 1.25e-07 (rate 1000 per 4T tokens, at 500 tokens)" in out
    assert "τ_cooc 1 (absolute)" in out and "Out of coverage: pass" in out
    assert "coverage: 0 of 1 entities known" in out


def test_runs_on_the_old_absolute_default_and_on_the_new_rate_never_resume_each_other(tmp_path) -> None:
    """Folders written before issue 11 (τ_entity 1000, not recorded) resume only with --tau-entity 1000."""
    import argparse

    from quco.audit.spec import AuditSpec
    from quco.cli._data_options import add_data_options, data_kwargs, is_unrecorded

    old = AuditSpec(index=str(tmp_path), tau_entity="1000").settings()
    new = AuditSpec(index=str(tmp_path)).settings()
    assert "tau_entity" not in old and new["tau_entity"] == PAPER_ENTITY_RATE and old != new
    p = argparse.ArgumentParser()
    add_data_options(p)
    assert is_unrecorded(data_kwargs(p.parse_args(["--tau-entity", "1000"])))
    assert not is_unrecorded(data_kwargs(p.parse_args([])))  # today's default is recorded (eval qa's config)
