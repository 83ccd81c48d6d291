"""Analyzer logic with fakes: batching, dedupe of corpus queries, per-sentence slices."""

from __future__ import annotations

import math

from quco.analyze import AnalysisItem, Analyzer, slice_confidence
from quco.nlp.sentences import sentence_spans
from quco.risk import feature_vector
from quco.testing import FakeCorpus, FakeExtractor, FakeGenerator

DOCS = ["Paris is the capital of France.", "Berlin is the capital of Germany.", "Paris and Rome are old."]


def test_split_sentences_spans() -> None:
    text = "Paris is big. It is in France!\nRome too? 3.5 m is short."
    spans = sentence_spans(text)
    assert [text[a:b] for a, b in spans] == ["Paris is big.", "It is in France!", "Rome too?", "3.5 m is short."]
    assert sentence_spans("") == [] and sentence_spans("   ") == []


def test_analysis_counts_and_pairs_deduplicated() -> None:
    corpus = FakeCorpus(DOCS)
    an = Analyzer(FakeExtractor(), corpus, window=50)
    items = [AnalysisItem("Where is Paris?", "Paris is in Germany."), AnalysisItem("Where is Paris?", "Paris is in France.")]
    res = an.analyze_many(items)
    # one count per distinct term (Paris, Germany, France) + one cooc per distinct pair (Paris|Germany, Paris|France)
    assert corpus.queries == 3 + 2
    wrong, right = res
    assert [e.text for e in wrong.new_entities] == ["Germany"]
    assert {(p.pair.head.text, p.pair.tail.text): p.count.value for p in wrong.signals.pairs} == {("Paris", "Germany"): 0}
    fw, fr = feature_vector(wrong.signals), feature_vector(right.signals)
    assert fw["zero_cooc"] == 1.0 and fr["zero_cooc"] == 0.0
    assert math.isnan(fw["mean_logprob"])  # no model: explicit NaN, not zero


def test_no_entities_gives_nan_features() -> None:
    an = Analyzer(FakeExtractor(), FakeCorpus(DOCS))
    a = an.analyze("what is it?", "yes.")
    f = feature_vector(a.signals)
    assert math.isnan(f["q_ent_freq_mean"]) and math.isnan(f["pair_cooc_min"]) and f["n_pairs"] == 0.0


def test_confidence_sliced_per_sentence() -> None:
    gen = FakeGenerator(["Paris is big. Rome is old."], probs=[[0.9, 0.9, 0.9, 0.1, 0.9, 0.9]])
    g = gen.generate("q")
    an = Analyzer(FakeExtractor(), FakeCorpus(DOCS))
    a = an.analyze("Where?", g.text, confidence=g.confidence)
    s1, s2 = a.sentences
    assert len(s1.signals.confidence) == 3 and len(s2.signals.confidence) == 3
    assert s2.signals.confidence.min_prob < 0.2 < s1.signals.confidence.min_prob
    assert len(slice_confidence(g.confidence, g.text, 0, 5)) == 1
