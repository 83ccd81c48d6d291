"""Entity extraction (real spaCy pipeline), pairs, new entities and the sentence splitter."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import time

import pytest

from quco.errors import BadInputError, ModelNotFoundError
from quco.nlp import EntityExtractor, candidate_pairs, normalize_entity_text, same_entity, split_sentences
from quco.nlp.entities import DEFAULT_MAX_PAIRS
from quco.nlp.normalize import QUESTION_WORDS
from quco.protocols import Extractor
from quco.types import Entity, Pair


def _tl(entities: list[Entity]) -> list[tuple[str, str]]:
    return [(e.text, e.label) for e in entities]


def _ent(text: str, label: str = "ENT") -> Entity:
    return Entity(text, text, label)


QUESTIONS = [
    "What is the capital?",
    "Who was Barack Obama's wife?",
    "Which magazine was started first Arthur's Magazine or First for Women?",
    "The Oberoi family is part of a hotel company that has a head office in what city?",
    "Who directed Titanic?",
    "Where is Mount Kilimanjaro located?",
    "When did the United Nations hold its first meeting in London?",
    "Which river flows through Baghdad and Mosul?",
    "How many children did Queen Victoria have?",
    "Why did Napoleon invade Russia in 1812?",
    'Musician Allie Goertz wrote a song about "The Simpsons" character Milhouse, who Matt Groening named after who?',
]


# --------------------------------------------------------------------- real model
@pytest.mark.slow
class TestExtraction:
    def test_satisfies_protocol(self, extractor: EntityExtractor) -> None:
        assert isinstance(extractor, Extractor)

    def test_question_without_entity(self, extractor: EntityExtractor) -> None:
        assert extractor.entities("What is the capital?") == []

    def test_possessive_removed_surface_kept(self, extractor: EntityExtractor) -> None:
        text = "Who was Barack Obama's wife?"
        (e,) = extractor.entities(text)
        assert (e.text, e.label, e.source) == ("Barack Obama", "PERSON", "ner")
        assert e.surface == "Barack Obama's"
        assert text[e.start : e.end] == e.surface

    def test_sentence_initial_entity(self, extractor: EntityExtractor) -> None:
        assert _tl(extractor.entities("Paris is the capital of France.")) == [
            ("Paris", "GPE"),
            ("France", "GPE"),
        ]

    def test_leading_the_removed_and_year_kept(self, extractor: EntityExtractor) -> None:
        ents = extractor.entities("The United Nations was founded in 1945.")
        assert _tl(ents) == [("United Nations", "ORG"), ("1945", "DATE")]
        assert ents[0].surface == "The United Nations"

    def test_lowercase_the_removed(self, extractor: EntityExtractor) -> None:
        texts = [e.text for e in extractor.entities("She worked for the United Nations in Geneva.")]
        assert texts == ["United Nations", "Geneva"]

    def test_date_reduced_to_year_and_yearless_dates_dropped(self, extractor: EntityExtractor) -> None:
        ents = extractor.entities("Allie Goertz was born on March 2, 1991, and she sings every Monday.")
        dates = [e for e in ents if e.label == "DATE"]
        assert [(d.text, d.surface) for d in dates] == [("1991", "March 2, 1991")]

    def test_numbers_and_amounts_dropped(self, extractor: EntityExtractor) -> None:
        ents = extractor.entities(
            "Lionel Messi scored 3 goals in 90 minutes and earned $5 million, 20 percent more."
        )
        assert [e.text for e in ents] == ["Lionel Messi"]

    def test_noun_chunk_fallback_when_ner_misses(self, extractor: EntityExtractor) -> None:
        # the pipeline's NER finds nothing in these; the parser sees a proper-noun chunk
        assert extractor.nlp("Who directed Titanic?").ents == ()
        (e,) = extractor.entities("Who directed Titanic?")
        assert (e.text, e.label, e.source) == ("Titanic", "PROPN", "noun_chunk")
        assert (e.start, e.end) == (13, 20)
        (k,) = extractor.entities("Where is Mount Kilimanjaro located?")
        assert (k.text, k.label, k.source) == ("Mount Kilimanjaro", "PROPN", "noun_chunk")

    def test_fallback_not_used_when_ner_finds_something(self, extractor: EntityExtractor) -> None:
        ents = extractor.entities("Who founded Tesla Motors?")
        assert [(e.text, e.source) for e in ents] == [("Tesla Motors", "ner")]

    def test_question_words_never_count(self, extractor: EntityExtractor) -> None:
        for ents in extractor.entities_many(QUESTIONS):
            assert not {e.key for e in ents} & QUESTION_WORDS

    def test_duplicates_collapsed_keeping_first(self, extractor: EntityExtractor) -> None:
        ents = extractor.entities("Paris is in France. Paris is big, and the French love Paris.")
        keys = [e.key for e in ents]
        assert keys.count("paris") == 1
        assert ents[keys.index("paris")].start == 0

    def test_offsets_and_normalization_on_many_texts(self, extractor: EntityExtractor) -> None:
        texts = [
            *QUESTIONS,
            "The Oberoi family's hotel company is based in Mumbai.",
            "“Hamlet” was written by Shakespeare.",
        ]
        for text, ents in zip(texts, extractor.entities_many(texts), strict=True):
            for e in ents:
                assert text[e.start : e.end] == e.surface
                assert e.text and e.text == e.text.strip()
                assert not e.text.casefold().startswith("the ")
                assert not e.text.endswith(("'s", "’s", ",", "?", '"'))

    def test_batched_equals_one_at_a_time(self, extractor: EntityExtractor) -> None:
        texts = [*QUESTIONS, "", "   ", "Delhi"]
        assert extractor.entities_many(texts) == [extractor.entities(t) for t in texts]

    def test_pairs_on_real_sentences(self, extractor: EntityExtractor) -> None:
        q = extractor.entities("Who was Barack Obama's wife?")
        s = extractor.entities("Michelle Obama married Barack Obama in Chicago, Illinois in 1992.")
        pairs = extractor.pairs(s, q)
        keys = {frozenset((p.head.key, p.tail.key)) for p in pairs}
        assert frozenset(("michelle obama", "chicago")) in keys
        assert frozenset(("michelle obama", "barack obama")) in keys
        for p in pairs:
            assert p.head.key != p.tail.key
            assert not same_entity(p.head.text, p.tail.text)
        assert len(keys) == len(pairs)

    def test_new_entities_on_real_answers(self, extractor: EntityExtractor) -> None:
        q = extractor.entities(
            "The Oberoi family is part of a hotel company that has a head office in what city?"
        )
        hallucinated = extractor.entities("The Oberoi family's hotel company is based in Mumbai.")
        assert [e.text for e in extractor.new_entities(hallucinated, q)] == ["Mumbai"]
        assert [e.text for e in extractor.new_entities(extractor.entities("Delhi"), q)] == ["Delhi"]


@pytest.mark.slow
class TestBadInput:
    def test_empty_and_whitespace(self, extractor: EntityExtractor) -> None:
        assert extractor.entities("") == []
        assert extractor.entities(" \n\t ") == []
        assert extractor.entities_many([]) == []
        assert extractor.entities_many(["", "  "]) == [[], []]

    def test_long_text_truncated_with_warning(
        self, extractor: EntityExtractor, caplog: pytest.LogCaptureFixture
    ) -> None:
        text = "Angela Merkel met Emmanuel Macron in Berlin. " * 2300  # ~103k chars
        assert len(text) > 100_000
        t0 = time.perf_counter()
        with caplog.at_level(logging.WARNING, logger="quco.nlp.entities"):
            ents = extractor.entities(text)
        assert time.perf_counter() - t0 < 60
        assert "truncated" in caplog.text
        assert {e.text for e in ents} >= {"Angela Merkel", "Berlin"}
        assert max(e.end for e in ents) <= extractor.max_chars

    def test_small_max_chars_cuts_at_word_boundary(self) -> None:
        ex = EntityExtractor(max_chars=300)
        prepared, cut = ex._prepare("word " * 100)
        assert cut and len(prepared) <= 300 and prepared.endswith("word")

    def test_non_english_does_not_crash(self, extractor: EntityExtractor) -> None:
        for text in [
            "东京是日本的首都。",
            "Der Bundestag tagt in Berlin.",
            "Москва — столица России.",
            "🙂🙂🙂",
        ]:
            ents = extractor.entities(text)
            assert all(text[e.start : e.end] == e.surface for e in ents)

    @pytest.mark.parametrize("bad", [None, 42, b"bytes", ["a list"]])
    def test_non_str_raises(self, extractor: EntityExtractor, bad: object) -> None:
        with pytest.raises(BadInputError):
            extractor.entities(bad)  # type: ignore[arg-type]

    def test_entities_many_bad_input(self, extractor: EntityExtractor) -> None:
        with pytest.raises(BadInputError, match="sequence"):
            extractor.entities_many("a single string")
        with pytest.raises(BadInputError, match=r"texts\[1\]"):
            extractor.entities_many(["fine", 3])  # type: ignore[list-item]


def test_missing_pipeline_names_the_package() -> None:
    ex = EntityExtractor("en_core_web_nosuchmodel")  # lazy: no error yet
    with pytest.raises(ModelNotFoundError, match="en-core-web-nosuchmodel"):
        ex.entities("Paris")


@pytest.mark.parametrize("kw", [{"batch_size": 0}, {"max_chars": -1}, {"max_pairs": 0}])
def test_bad_options(kw: dict[str, int]) -> None:
    with pytest.raises(BadInputError):
        EntityExtractor(**kw)  # type: ignore[arg-type]


def test_import_is_light() -> None:
    code = "import sys, quco.nlp; print('spacy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# -------------------------------------------------------------------- logic only
_NAMES = ["Paris", "Paris, France", "France", "Barack Obama", "Obama", "Michelle Obama", "the United Nations",
          "United Nations", "New York", "New York City", "NYC", "Berlin", "BERLIN", "Apple Inc.", "Apple"]  # fmt: skip


def _random_entities(rng: random.Random) -> list[Entity]:
    out = []
    for _ in range(rng.randint(0, 9)):
        name = rng.choice(_NAMES)
        text = normalize_entity_text(name)
        out.append(Entity(text, name, rng.choice(["PERSON", "GPE", "ORG"])))
    return out


class TestPairs:
    def test_no_self_pairs_no_duplicates_property(self) -> None:
        rng = random.Random(0)
        total = 0
        for _ in range(500):
            s, q = _random_entities(rng), _random_entities(rng)
            pairs = candidate_pairs(s, q)
            total += len(pairs)
            seen = set()
            for p in pairs:
                assert p.head.key != p.tail.key
                assert not same_entity(p.head.text, p.tail.text)
                key = frozenset((p.head.key, p.tail.key))
                assert key not in seen
                seen.add(key)
                assert p.head in s  # the head always comes from the sentence
            assert len(pairs) <= DEFAULT_MAX_PAIRS
        assert total > 500  # the generator does produce pairs

    def test_contained_entities_are_not_paired(self) -> None:
        pairs = candidate_pairs([_ent("Paris"), _ent("Paris, France"), _ent("France")])
        # "Paris" and "France" are each contained in "Paris, France": only Paris-France is informative
        assert [(p.head.text, p.tail.text) for p in pairs] == [("Paris", "France")]
        pairs = candidate_pairs([_ent("Obama"), _ent("Chicago")], [_ent("Barack Obama")])
        assert [(p.head.text, p.tail.text) for p in pairs] == [
            ("Obama", "Chicago"),
            ("Chicago", "Barack Obama"),
        ]

    def test_order_sentence_pairs_first_and_no_question_question_pairs(self) -> None:
        pairs = candidate_pairs([_ent("A1"), _ent("B2")], [_ent("C3"), _ent("D4")])
        assert [(p.head.text, p.tail.text) for p in pairs] == [
            ("A1", "B2"), ("A1", "C3"), ("A1", "D4"), ("B2", "C3"), ("B2", "D4"),
        ]  # fmt: skip

    def test_cap(self) -> None:
        ents = [_ent(f"Entity{i}") for i in range(20)]
        assert len(candidate_pairs(ents)) == DEFAULT_MAX_PAIRS
        assert len(candidate_pairs(ents, max_pairs=5)) == 5
        assert len(EntityExtractor(max_pairs=3).pairs(ents)) == 3
        assert EntityExtractor().pairs(ents, max_pairs=7) == candidate_pairs(ents, max_pairs=7)
        assert candidate_pairs(ents, max_pairs=0) == []

    def test_empty_inputs(self) -> None:
        assert candidate_pairs([], [_ent("Paris")]) == []
        assert candidate_pairs([_ent("Paris")]) == []
        assert candidate_pairs([_ent("Paris")], [_ent("Lyon")]) == [Pair(_ent("Paris"), _ent("Lyon"))]


class TestNewEntities:
    ex = EntityExtractor()  # no model is loaded for logic

    def test_repeated_entities_are_not_new(self) -> None:
        q = [_ent("Barack Obama"), _ent("Paris, France")]
        a = [_ent("barack obama"), _ent("Obama"), _ent("Paris"), _ent("Michelle Obama"), _ent("Lyon")]
        assert [e.text for e in self.ex.new_entities(a, q)] == ["Michelle Obama", "Lyon"]

    def test_partial_overlap_rule(self) -> None:
        q = [_ent("Barack H. Obama")]
        assert self.ex.new_entities([_ent("Barack Obama")], q) == []  # subset of words
        assert (
            self.ex.new_entities([_ent("Harvard University")], [_ent("Yale University")]) != []
        )  # Jaccard 1/3

    def test_aliases_are_not_matched(self) -> None:
        a = [_ent("NYC")]
        assert self.ex.new_entities(a, [_ent("New York City")]) == a

    def test_duplicates_and_empty_question(self) -> None:
        a = [_ent("Lyon"), _ent("LYON"), _ent("Nice")]
        assert [e.text for e in self.ex.new_entities(a, [])] == ["Lyon", "Nice"]


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("The United Nations", "United Nations"),
        ("the Beatles'", "Beatles"),
        ("Barack Obama's", "Barack Obama"),
        ("Obama’s", "Obama"),
        ('the "The Simpsons', "Simpsons"),
        ("“Hamlet”.", "Hamlet"),
        ("U.S.", "U.S."),
        ("Washington, D.C.", "Washington, D.C."),
        ("Apple Inc.", "Apple Inc."),
        ("Paris,", "Paris"),
        ("New\n  York", "New York"),
        ("Who", "Who"),  # dropped by the extractor, not by normalization
        ("When Harry Met Sally", "When Harry Met Sally"),
        ("Arthur's Magazine", "Arthur's Magazine"),
        ("Theodore Roosevelt", "Theodore Roosevelt"),
    ],
)
def test_normalize(raw: str, norm: str) -> None:
    assert normalize_entity_text(raw) == norm


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("   \n ", []),
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("Mr. Smith went to Washington. He stayed.", ["Mr. Smith went to Washington.", "He stayed."]),
        ("Dr. Who and St. Louis are names.", ["Dr. Who and St. Louis are names."]),
        ("The U.S. Army won. It was 1945.", ["The U.S. Army won.", "It was 1945."]),
        ("He moved to the U.S. He liked it.", ["He moved to the U.S.", "He liked it."]),
        ("Pi is 3.14 roughly. Yes.", ["Pi is 3.14 roughly.", "Yes."]),
        ("J. R. R. Tolkien wrote it.", ["J. R. R. Tolkien wrote it."]),
        (
            "in the 19th century.First for Women is a magazine.",
            ["in the 19th century.", "First for Women is a magazine."],
        ),
        (
            "the name Cossbysweater.Milhouse is a character.",
            ["the name Cossbysweater.", "Milhouse is a character."],
        ),
        ("He lived in St.Louis for years.", ["He lived in St.Louis for years."]),
        ('He said "Stop." Then he left.', ['He said "Stop."', "Then he left."]),
        ("No. The answer is Paris.", ["No.", "The answer is Paris."]),
        ("See No. 5 for details.", ["See No. 5 for details."]),
        ("Wait... What?! Fine.", ["Wait...", "What?!", "Fine."]),
        ("line one\nline two.", ["line one", "line two."]),
        (
            "e.g. this is one sentence. and this lower-case stays.",
            ["e.g. this is one sentence. and this lower-case stays."],
        ),
        ("Visit node.js today.", ["Visit node.js today."]),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


@pytest.mark.parametrize(
    ("date", "year"),
    [
        ("March 2, 1991", "1991"),
        ("the 1990s", "1990s"),
        ("1991–1995", "1991"),
        ("the 19th century", ""),
        ("May 3", ""),
    ],
)
def test_year_of(date: str, year: str) -> None:
    from quco.nlp.normalize import year_of

    assert year_of(date) == year


def test_split_sentences_bad_input() -> None:
    with pytest.raises(BadInputError):
        split_sentences(None)  # type: ignore[arg-type]


def test_dedupe_drops_question_words_empties_and_repeats() -> None:
    from quco.nlp.entities import _dedupe

    ents = [
        _ent("Who"),
        _ent("which"),
        _ent(""),
        _ent("--"),
        _ent("Paris"),
        Entity("paris", "paris", "GPE", 9, 14),
    ]
    assert _dedupe(ents) == [_ent("Paris")]
