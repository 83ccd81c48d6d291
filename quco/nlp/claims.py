"""Claims as QuCo-RAG checks them: (head, relation, tail) triplets and (head, relation) tuples.

:class:`ClaimParser` (rule-based, spaCy's dependency parse + entities) satisfies
:class:`quco.protocols.ClaimExtractor`. Per sentence:

- **mentions** are spaCy's named entities (people, places, organisations,
  works, nationalities...) and runs of proper nouns NER missed; dates, times,
  numbers, amounts and percentages are mentions too, but only ever tails
  ("released in 1967"). Ordinals ("first") are not mentions.
- **predicates** are verbs and copulas. The subject (``nsubj``/``nsubjpass``;
  for a conjoined, participial or relative-clause verb the subject it
  inherits) gives the head; the objects (``dobj``, ``attr``, ``oprd``,
  ``dative``), prepositional attachments (``prep``/``agent`` → ``pobj``) and
  an adjective's prepositions ("famous for") give the tails. The relation is
  the predicate's words: verb, particle, negation, preposition ("born in",
  "directed by", "did not win"), with a common-noun object or attribute
  folded in ("is capital of", "won award in").
- **relational nouns**: a possessive subject names the head ("Diane's husband
  is George" → ``('Diane', 'husband', 'George')``), as does "the director of
  Titanic is ..." (``('Titanic', 'director of', ...)``); an object noun
  carries its modifiers and prepositions ("an American actor" → tail
  ``American``, relation ``is actor``).
- **appositions**: "X's father, Y, studied at Z" gives ``('X', 'father', 'Y')``
  and ``('Y', 'studied at', 'Z')``; "Titanic, a 1997 film directed by James
  Cameron" gives ``('Titanic', 'film', '1997')`` and ``('Titanic', 'directed
  by', 'James Cameron')``.
- **conjunctions** share subjects and spread over objects joined by
  "and"/"or" ("directed by A and released in 1967"; "starred in A and B"). A
  comma-only chain of places ("Mumbai, Maharashtra, India") is one tail, its
  first place.
- **tuples**: a predicate whose head is a named entity but which has no tail
  mention gives ``(head, relation)`` ("Kumbasaram came out" → ``('Kumbasaram',
  'came out')``). Comparisons ("X is older than Y") give nothing, as in the paper.
- **conclusions** give nothing (:func:`is_conclusion`): a sentence that
  starts with "So", "Thus", "Therefore", "Hence", "In conclusion",
  "Consequently", or that contains "the answer is".

**Bare answer spans** (an extension of quco's, ``source="answer_span"``): a
sentence with no predicate at all ("Paris.", the short-answer prompt's output)
states nothing by itself, but with its question it claims one thing: the
question's (head, relation) completed by the span. Given the question,
:meth:`ClaimParser.claims_many` returns ``(question head, question relation,
span mention)`` for each (head, relation) the question yields. A direct answer
that opens with "The answer (to this question) is X" and makes no other claim
is read the same way (X is the span); a conclusion drawn from earlier
sentences ("So the answer is X.") still gives nothing.

Offsets: a claim's head and tail entities carry character offsets in the
sentence (an answer-span claim's head: in the question); ``Claim.start/end``
span the relation's words.

The parser is rules over a small statistical parse, measured against hand
labels in ``eval/claims_gold.jsonl`` (``scripts/eval_claims.py``). A model
extractor plugs in through :class:`ModelClaimExtractor` (see its docstring).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from quco.errors import BadInputError
from quco.nlp._claim_rules import (
    MAX_CLAIMS,
    NAMED_LABELS,
    VALUE_LABELS,
    SentenceRules,
    dedupe_claims,
    direct_answer_start,
    is_conclusion,
    mentions_of,
)
from quco.nlp.claim_model import MODEL_PROMPT, ModelClaimExtractor, parse_model_claims
from quco.nlp.normalize import QUESTION_WORDS, same_entity
from quco.types import Claim, Entity

__all__ = [
    "MAX_CLAIMS",
    "MODEL_PROMPT",
    "NAMED_LABELS",
    "VALUE_LABELS",
    "ClaimParser",
    "ModelClaimExtractor",
    "is_conclusion",
    "parse_model_claims",
    "shift_claim",
]

log = logging.getLogger(__name__)


class ClaimParser:
    """Rule-based claim extraction over spaCy's parse (satisfies :class:`quco.protocols.ClaimExtractor`).

    Args:
        extractor: an :class:`~quco.nlp.entities.EntityExtractor` whose spaCy
            pipeline is shared (loaded on first use); a new one when None.
        model: spaCy pipeline name or path when no ``extractor`` is given.
        batch_size: texts per ``nlp.pipe`` batch.
        max_claims: most claims kept per sentence.
        answer_spans: complete bare answer spans with the question's (head,
            relation) (see the module docstring).

    Raises:
        BadInputError: a non-positive ``batch_size`` or ``max_claims``.
    """

    name = "spacy-rules"

    def __init__(
        self,
        extractor: Any = None,
        *,
        model: str | None = None,
        batch_size: int = 64,
        max_claims: int = MAX_CLAIMS,
        answer_spans: bool = True,
    ) -> None:
        for label, value in (("batch_size", batch_size), ("max_claims", max_claims)):
            if not isinstance(value, int) or value < 1:
                raise BadInputError(f"{label} must be a positive int, got {value!r}")
        if extractor is None:
            from quco.nlp.entities import EntityExtractor

            extractor = EntityExtractor(model)
        self.extractor = extractor
        self.batch_size = batch_size
        self.max_claims = max_claims
        self.answer_spans = answer_spans

    @property
    def nlp(self) -> Any:
        """The shared spaCy pipeline (parser and NER both run)."""
        return self.extractor.nlp

    def claims(self, sentence: str, question: str = "") -> list[Claim]:
        """The claims of one sentence (see :meth:`claims_many`)."""
        return self.claims_many([sentence], [question] if question else None)[0]

    def claims_many(self, sentences: Sequence[str], questions: Sequence[str] | None = None) -> list[list[Claim]]:
        """Claims per sentence, batched through one ``nlp.pipe``.

        Args:
            sentences: one sentence each (a longer text is parsed as a whole:
                the claims of all its sentences, conclusions skipped).
            questions: optional, one per sentence: the question answered (used
                for bare answer spans); ``""`` for none.

        Returns:
            One list of claims per sentence, in order.

        Raises:
            BadInputError: ``sentences`` is a single string or holds a
                non-string, or ``questions`` has another length.
        """
        if isinstance(sentences, (str, bytes)) or not isinstance(sentences, Sequence):
            raise BadInputError(f"claims_many needs a sequence of str, got {type(sentences).__name__}")
        if questions is not None and len(questions) != len(sentences):
            raise BadInputError(f"{len(questions)} questions for {len(sentences)} sentences")
        for i, s in enumerate(sentences):
            if not isinstance(s, str):
                raise BadInputError(f"sentences[{i}] must be a str, got {type(s).__name__}")
        qs = [q if isinstance(q, str) else "" for q in (questions or [""] * len(sentences))]
        texts = list(dict.fromkeys([s for s in sentences if s.strip()] + ([q for q in qs if q.strip()] if self.answer_spans else [])))
        docs = dict(zip(texts, self.nlp.pipe(texts, batch_size=self.batch_size))) if texts else {}
        out: list[list[Claim]] = []
        q_memo: dict[str, list[Claim]] = {}
        for s, q in zip(sentences, qs):
            if not s.strip():
                out.append([])
                continue
            found: list[Claim] = []
            bare = True
            answer_at: int | None = None  # where a direct answer ("The answer is X.") begins
            doc = docs[s]
            doc_mentions = mentions_of(doc)
            for span in doc.sents:
                if is_conclusion(span.text):
                    bare = False
                    at = direct_answer_start(span.text)
                    if at is not None and answer_at is None:
                        answer_at = span.start_char + at
                    continue
                sent = SentenceRules(span, doc_mentions)
                if sent.has_predicate():
                    bare = False
                found += sent.claims()
            if not found and self.answer_spans and q.strip() and (bare or answer_at is not None):
                if q not in q_memo:
                    q_memo[q] = self._question_claims(docs[q])
                start = 0 if bare else answer_at or 0
                found = _answer_span_claims(q_memo[q], [m for m in doc_mentions if m.entity.start >= start])
            out.append(dedupe_claims(found, self.max_claims))
        return out

    def _question_claims(self, doc: Any) -> list[Claim]:
        """The (head, relation) a question asks about; the root's words for a named mention otherwise."""
        found: list[Claim] = []
        doc_mentions = mentions_of(doc)
        for span in doc.sents:
            sent = SentenceRules(span, doc_mentions)
            found += sent.claims()
            if not found:
                root = span.root
                words = [t for t in (root, *root.children) if t.dep_ in ("ROOT", "prt", "neg", "dobj", "attr") and t.lower_ not in QUESTION_WORDS and t.pos_ in ("VERB", "NOUN", "AUX", "ADP", "PART")]
                rel = " ".join(t.lower_ for t in sorted(words, key=lambda t: t.i))
                for m in sent.mentions:
                    if m.named and rel:
                        found.append(Claim(m.entity, rel, None, 0, 0, "answer_span"))
        return [Claim(c.head, c.relation, None, c.start, c.end, "answer_span") for c in dedupe_claims(found, MAX_CLAIMS)]


def _answer_span_claims(question: Sequence[Claim], mentions: Sequence[Any]) -> list[Claim]:
    out: list[Claim] = []
    for qc in question:
        for m in mentions:
            if not same_entity(qc.head.text, m.entity.text):
                out.append(Claim(qc.head, qc.relation, m.entity, qc.start, qc.end, "answer_span"))
    return out


def shift_claim(claim: Claim, offset: int) -> Claim:
    """``claim`` with its sentence offsets moved by ``offset`` (an answer-span claim's head stays in the question)."""
    if not offset:
        return claim

    def move(e: Entity) -> Entity:
        return Entity(e.text, e.surface, e.label, e.start + offset, e.end + offset, e.source)

    head = claim.head if claim.source == "answer_span" else move(claim.head)
    tail = move(claim.tail) if claim.tail is not None else None
    start, end = (claim.start, claim.end) if claim.source == "answer_span" else (claim.start + offset, claim.end + offset)
    return Claim(head, claim.relation, tail, start, end, claim.source)
