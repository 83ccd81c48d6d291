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
span mention)`` for each (head, relation) the question yields.

Offsets: a claim's head and tail entities carry character offsets in the
sentence (an answer-span claim's head: in the question); ``Claim.start/end``
span the relation's words.

The parser is rules over a small statistical parse, measured against hand
labels in ``eval/claims_gold.jsonl`` (``scripts/eval_claims.py``). A model
extractor plugs in through :class:`ModelClaimExtractor` (see its docstring).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from quco.errors import BadInputError
from quco.nlp.normalize import QUESTION_WORDS, normalize_entity_text, same_entity, year_of
from quco.types import Claim, Entity

log = logging.getLogger(__name__)

#: entity labels a claim's head may have (named things)
NAMED_LABELS = frozenset(
    {"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW", "LANGUAGE", "PROPN"}
)
#: labels that are only ever tails (dates and numbers)
VALUE_LABELS = frozenset({"DATE", "TIME", "CARDINAL", "QUANTITY", "MONEY", "PERCENT"})
#: most claims kept per sentence
MAX_CLAIMS = 16

_CONCLUSION_START = re.compile(
    r"^\W*(so|thus|therefore|hence|consequently|in conclusion|in summary|in short|overall)\b", re.IGNORECASE
)
_ANSWER_IS = re.compile(
    r"\b(the|my|final)\s+answer(\s+to\s+[^.]{1,40}?)?\s*(is|was|would be|:)(\W|$)", re.IGNORECASE
)

_SUBJ = ("nsubj", "nsubjpass", "csubjpass")
_OBJ = ("dobj", "attr", "oprd", "dative", "obj")
_PREP = ("prep", "agent")
_INHERIT = ("conj", "xcomp", "advcl")
_MODIFIERS = ("amod", "compound", "nmod", "nummod", "npadvmod")
_REL_PRONOUNS = frozenset({"who", "whom", "which", "that", "whose"})
_POSSESSIVE = frozenset({"'s", "\u2019s", "'", "\u2019"})
_PAREN = re.compile(r"\s*\(([^()]{1,60})\)")
_YEAR_IN = re.compile(r"\b(?:1[0-9]{3}|20[0-9]{2})\b")


def is_conclusion(sentence: str) -> bool:
    """Whether ``sentence`` concludes ("So the answer is X.", "Thus ...", "Therefore ...").

    Conclusions restate earlier claims and are not checked (as in the paper).
    """
    s = sentence.strip()
    return bool(_CONCLUSION_START.match(s) or _ANSWER_IS.search(s))


@dataclass(frozen=True)
class _Mention:
    start: int  # token index
    end: int  # exclusive
    entity: Entity

    @property
    def named(self) -> bool:
        return self.entity.label in NAMED_LABELS


def _entity(span: Any, label: str) -> Entity | None:
    """The entity of a token span, possessive, edge punctuation and determiners dropped; None when nothing is left."""
    toks = list(span)
    while toks and (toks[-1].text in _POSSESSIVE or toks[-1].is_punct or toks[-1].pos_ == "DET"):
        toks = toks[:-1]
    while toks and (toks[0].is_punct or toks[0].pos_ == "DET"):
        toks = toks[1:]
    if not toks:
        return None
    doc = toks[0].doc
    start, end = toks[0].idx, toks[-1].idx + len(toks[-1].text)
    surface = doc.text[start:end]
    text = (year_of(surface) or normalize_entity_text(surface)) if label == "DATE" else normalize_entity_text(surface)
    if not text or not re.search(r"\w", text) or text.casefold() in QUESTION_WORDS:
        return None
    return Entity(text, surface, label, start, end, "ner" if label != "PROPN" else "noun_chunk")


_QUOTED = re.compile(r"[\"\u201c]([^\"\u201c\u201d]{2,120})[\"\u201d]")


def _mentions(doc: Any) -> list[_Mention]:
    out: list[_Mention] = []
    taken: set[int] = set()
    for m in _QUOTED.finditer(doc.text):  # a quoted title is one work, whatever NER made of its words
        span = doc.char_span(m.start(1), m.end(1), alignment_mode="contract")
        if span is not None and any(t.is_title or t.is_digit for t in span):
            e = _entity(span, "WORK_OF_ART")
            if e is not None:
                out.append(_Mention(span.start, span.end, e))
                taken.update(range(span.start, span.end))
    for ent in doc.ents:
        if taken.intersection(range(ent.start, ent.end)):
            continue
        label = ent.label_
        if label not in NAMED_LABELS and label not in VALUE_LABELS:
            continue
        e = _entity(ent, label)
        if e is not None:
            out.append(_Mention(ent.start, ent.end, e))
            taken.update(range(ent.start, ent.end))
    i = 0
    n = len(doc)
    while i < n:  # runs of proper nouns NER missed
        if doc[i].pos_ != "PROPN" or i in taken or not doc[i].is_alpha:
            i += 1
            continue
        j = i
        while j < n and doc[j].pos_ == "PROPN" and j not in taken and any(ch.isalnum() for ch in doc[j].text):
            j += 1
        e = _entity(doc[i:j], "PROPN")
        if e is not None and (j - i > 1 or len(e.text) > 1):
            out.append(_Mention(i, j, e))
        i = j
    return sorted(out, key=lambda m: m.start)


@dataclass(frozen=True)
class _Arg:
    """A resolved argument: the mention and the words it adds to the relation."""

    mention: _Mention | None  # None: a common noun with no mention (feeds a tuple's relation)
    words: tuple[Any, ...] = ()


class _Sentence:
    """The rules applied to one parsed sentence."""

    def __init__(self, span: Any, doc_mentions: Sequence[_Mention]) -> None:
        self.span = span
        self.offset = span.start_char
        self.mentions = [m for m in doc_mentions if m.start >= span.start and m.end <= span.end]
        self.tok2m = {i: m for m in self.mentions for i in range(m.start, m.end)}

    def mention(self, tok: Any) -> _Mention | None:
        return self.tok2m.get(tok.i)

    # -- argument resolution --------------------------------------------------------------

    def _conj_expand(self, tok: Any) -> list[Any]:
        """``tok`` and the nouns joined to it by "and"/"or" (not by commas alone)."""
        out = [tok]
        for c in tok.children:
            if c.dep_ == "conj" and (
                any(x.dep_ == "cc" for x in tok.children) or any(x.dep_ == "cc" for x in c.children)
            ):
                out += self._conj_expand(c)
        return out

    def subjects(self, tok: Any, depth: int = 0) -> list[_Arg]:
        """The heads a subject token stands for (relation prefix words for relational nouns)."""
        out: list[_Arg] = []
        for t in self._conj_expand(tok):
            m = self.mention(t)
            if m is not None:
                if m.named:
                    out.append(_Arg(m))
                continue
            if t.dep_ == "appos" and self.mention(t.head) is not None:
                hm = self.mention(t.head)
                if hm is not None and hm.named:
                    out.append(_Arg(hm))
                continue
            appos = [self.mention(c) for c in t.children if c.dep_ == "appos"]
            named = [m for m in appos if m is not None and m.named]
            if named:
                out += [_Arg(m) for m in named]
                continue
            if t.pos_ not in ("NOUN", "PROPN"):
                continue
            if t.dep_ == "attr" and depth < 3 and self.is_predicate(t.head):
                # "X is a psychiatrist who consulted ...": the attribute stands for the copula's subject
                out += self.predicate_subjects(t.head, depth + 1)
                continue
            for c in t.children:
                cm = self.mention(c)
                if c.dep_ == "poss" and cm is not None and cm.named:
                    out.append(_Arg(cm, (t,)))
                elif c.dep_ == "prep" and c.lower_ == "of":
                    for p in c.children:
                        if p.dep_ != "pobj":
                            continue
                        pm = self.mention(p)
                        if pm is not None and pm.named:
                            out.append(_Arg(pm, (t, c)))
                        elif pm is None and depth < 3:  # "the coach of the team of X"
                            out += [_Arg(a.mention, (t, c, *a.words)) for a in self.subjects(p, depth + 1)]
        return out

    def objects(self, tok: Any, lead: tuple[Any, ...] = (), depth: int = 0) -> list[_Arg]:
        """The tails an object token stands for; a bare common noun gives ``_Arg(None, (noun,))``."""
        out: list[_Arg] = []
        for t in self._conj_expand(tok):
            m = self.mention(t)
            if m is not None:
                out.append(_Arg(m, lead))
                continue
            if t.pos_ not in ("NOUN", "PROPN", "NUM", "ADJ"):
                continue
            found = False
            for c in t.children:
                cm = self.mention(c)
                if cm is None:
                    if c.dep_ == "prep" and depth < 3:  # "the capital of France", "a suspect in the killing of X"
                        for p in c.children:
                            if p.dep_ == "pobj":
                                got = [a for a in self.objects(p, (*lead, t, c), depth + 1) if a.mention is not None]
                                out += got
                                found = found or bool(got)
                    continue
                if c.dep_ == "appos" or c.dep_ in _MODIFIERS or c.dep_ == "poss":
                    out.append(_Arg(cm, (*lead, t)))
                    found = True
            if not found and t.pos_ in ("NOUN", "ADJ"):
                out.append(_Arg(None, (*lead, t)))
        return out

    # -- predicates -------------------------------------------------------------------------

    @staticmethod
    def is_predicate(tok: Any) -> bool:
        if tok.pos_ == "VERB" and tok.dep_ not in ("aux", "auxpass", "amod", "compound"):
            return True
        return tok.pos_ == "AUX" and tok.dep_ not in ("aux", "auxpass")

    @staticmethod
    def _comparative(tok: Any) -> bool:
        return any(c.dep_ in ("acomp", "advmod") and c.tag_ in ("JJR", "RBR") for c in tok.children)

    def predicate_subjects(self, v: Any, depth: int = 0) -> list[_Arg]:
        if depth > 4:
            return []
        subj = [c for c in v.children if c.dep_ in _SUBJ]
        if subj:
            s = subj[0]
            if s.lower_ in _REL_PRONOUNS and v.dep_ == "relcl":
                return self.subjects(v.head, depth + 1)
            return self.subjects(s, depth + 1)
        if v.dep_ in _INHERIT and v.head is not v and self.is_predicate(v.head):
            return self.predicate_subjects(v.head, depth + 1)
        if v.dep_ in ("acl", "relcl") and v.head is not v:
            return self.subjects(v.head, depth + 1)
        return []

    def claims(self) -> list[Claim]:
        out: list[Claim] = []
        for v in self.span:
            if self.is_predicate(v) and not self._comparative(v):
                out += self._predicate(v)
        for t in self.span:
            if t.dep_ == "appos":
                out += self._apposition(t)
        for m in self.mentions:
            if m.named:
                out += self._life_dates(m)
        return out

    def _life_dates(self, m: _Mention) -> list[Claim]:
        """"X (1969-2014)", "X (born 12 May 1948)": (X, born, 1969), (X, died, 2014)."""
        doc = self.span.doc
        end = doc[m.end - 1].idx + len(doc[m.end - 1].text)
        hit = _PAREN.match(doc.text, end)
        if hit is None:
            return []
        inner = hit.group(1)
        years = list(_YEAR_IN.finditer(inner))
        if not years or len(years) > 2:
            return []
        low = inner.lower()
        if len(years) == 2:
            names = ["born", "died"]
        elif "born" in low or "b." in low:
            names = ["born"]
        elif "died" in low or "d." in low:
            names = ["died"]
        else:
            names = ["date"]
        out = []
        for y, rel in zip(years, names):
            a = hit.start(1) + y.start()
            tail = Entity(y.group(0), y.group(0), "DATE", a, a + len(y.group(0)), "ner")
            head = m.entity
            out.append(Claim(self._local(head), rel, self._local(tail), self._local(tail).start, self._local(tail).end))
        return out

    def _predicate(self, v: Any) -> list[Claim]:
        heads = self.predicate_subjects(v)
        if not heads:
            return []
        copula = v.lemma_ == "be" or v.lower_ in ("is", "was", "are", "were", "be", "been", "'s")
        core: list[Any] = [c for c in v.children if c.dep_ == "neg"] + [v] + [c for c in v.children if c.dep_ == "prt"]
        tails: list[_Arg] = []
        nouns: list[Any] = []  # common-noun objects folded into the relation
        for c in v.children:
            if c.dep_ in _OBJ:
                for a in self.objects(c):
                    if a.mention is None:
                        nouns += list(a.words)
                    else:
                        tails.append(a)
            elif c.dep_ in _PREP:
                for p in c.children:
                    if p.dep_ == "pobj":
                        tails += [a for a in self.objects(p, (c,)) if a.mention is not None]
            elif c.dep_ == "acomp":
                m = self.mention(c)
                if m is not None:  # "X was Italian"
                    tails.append(_Arg(m))
                for pr in c.children:
                    if pr.dep_ == "prep":
                        for p in pr.children:
                            if p.dep_ == "pobj":
                                tails += [a for a in self.objects(p, (c, pr)) if a.mention is not None]
            elif c.dep_ == "npadvmod":
                m = self.mention(c)
                if m is not None and m.entity.label in VALUE_LABELS:
                    tails.append(_Arg(m))
        out: list[Claim] = []
        for h in heads:
            hm = h.mention
            if hm is None:
                continue
            for t in tails:
                tm = t.mention
                if tm is None or tm is hm or same_entity(hm.entity.text, tm.entity.text):
                    continue
                if copula and h.words and not t.words:
                    words = list(h.words)  # "Diane's husband is George": relation "husband"
                else:
                    words = [*h.words, *core, *nouns, *t.words]
                out.append(self._claim(hm, words, tm))
            if not tails:
                if copula and not nouns and not h.words:
                    continue  # "X is." / "X is Y-ish": nothing stated
                out.append(self._claim(hm, [*h.words, *core, *nouns], None))
        return out

    def _apposition(self, a: Any) -> list[Claim]:
        h = a.head
        am, hm = self.mention(a), self.mention(h)
        out: list[Claim] = []
        if am is not None and hm is None and h.pos_ == "NOUN":
            # "X's father, Y": (X, father, Y)
            for c in h.children:
                cm = self.mention(c)
                if c.dep_ == "poss" and cm is not None and cm.named and am.named:
                    out.append(self._claim(cm, [h], am))
        elif am is None and hm is not None and hm.named and a.pos_ == "NOUN":
            # "Titanic, a 1997 film": (Titanic, film, 1997)
            for t in self.objects(a):
                if t.mention is not None and t.mention is not hm and not same_entity(hm.entity.text, t.mention.entity.text):
                    out.append(self._claim(hm, list(t.words), t.mention))
        return out

    def _claim(self, head: _Mention, words: Iterable[Any], tail: _Mention | None) -> Claim:
        toks = sorted({t.i: t for t in words}.values(), key=lambda t: t.i)
        relation = " ".join(t.lower_ for t in toks if t.dep_ not in ("det", "poss"))
        start = toks[0].idx - self.offset if toks else 0
        end = toks[-1].idx + len(toks[-1].text) - self.offset if toks else 0
        return Claim(self._local(head.entity), relation, self._local(tail.entity) if tail else None, start, end)

    def _local(self, e: Entity) -> Entity:
        return Entity(e.text, e.surface, e.label, e.start - self.offset, e.end - self.offset, e.source)

    def has_predicate(self) -> bool:
        return any(t.pos_ in ("VERB", "AUX") for t in self.span)


def _dedupe(claims: Iterable[Claim], cap: int) -> list[Claim]:
    seen: set[tuple[str, str, str]] = set()
    out: list[Claim] = []
    for c in claims:
        if not c.relation.strip():
            continue
        key = (c.head.key, c.relation, c.tail.key if c.tail is not None else "")
        if key in seen:
            continue
        seen.add(key)
        out.append(c)
        if len(out) >= cap:
            break
    return out


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
            doc = docs[s]
            doc_mentions = _mentions(doc)
            for span in doc.sents:
                if is_conclusion(span.text):
                    bare = False
                    continue
                sent = _Sentence(span, doc_mentions)
                if sent.has_predicate():
                    bare = False
                found += sent.claims()
            if bare and not found and self.answer_spans and q.strip():
                if q not in q_memo:
                    q_memo[q] = self._question_claims(docs[q])
                found = _answer_span_claims(q_memo[q], docs[s])
            out.append(_dedupe(found, self.max_claims))
        return out

    def _question_claims(self, doc: Any) -> list[Claim]:
        """The (head, relation) a question asks about; the root's words for a named mention otherwise."""
        found: list[Claim] = []
        doc_mentions = _mentions(doc)
        for span in doc.sents:
            sent = _Sentence(span, doc_mentions)
            found += sent.claims()
            if not found:
                root = span.root
                words = [t for t in (root, *root.children) if t.dep_ in ("ROOT", "prt", "neg", "dobj", "attr") and t.lower_ not in QUESTION_WORDS and t.pos_ in ("VERB", "NOUN", "AUX", "ADP", "PART")]
                rel = " ".join(t.lower_ for t in sorted(words, key=lambda t: t.i))
                for m in sent.mentions:
                    if m.named and rel:
                        found.append(Claim(m.entity, rel, None, 0, 0, "answer_span"))
        return [Claim(c.head, c.relation, None, c.start, c.end, "answer_span") for c in _dedupe(found, MAX_CLAIMS)]


def _answer_span_claims(question: Sequence[Claim], doc: Any) -> list[Claim]:
    out: list[Claim] = []
    mentions = _mentions(doc)
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


# ---------------------------------------------------------------------------------------------
# a model extractor


#: default prompt of :class:`ModelClaimExtractor` ({sentence} is replaced)
MODEL_PROMPT = (
    "List the facts the sentence states as JSON triples [head, relation, tail]; a fact with no named "
    "tail as [head, relation]. A concluding sentence (\"So the answer is ...\") states none: [].\n"
    "Sentence: Mary Shelley wrote Frankenstein in 1818.\n"
    'Facts: [["Mary Shelley", "wrote", "Frankenstein"], ["Frankenstein", "written in", "1818"]]\n'
    "Sentence: The Danube flows into the Black Sea.\n"
    'Facts: [["Danube", "flows into", "Black Sea"]]\n'
    "Sentence: So the answer is 1818.\n"
    "Facts: []\n"
    "Sentence: {sentence}\n"
    "Facts:"
)


class ModelClaimExtractor:
    """Claims from a text-generation model (the paper's fine-tuned 0.5B extractor, an API, ...).

    Plugging in a model: give a ``complete`` function that maps a prompt to
    the model's text. The output is parsed as a JSON list of ``[head,
    relation, tail]`` triples and ``[head, relation]`` tuples (the paper's
    format; a leading ``entities:`` and text around the list are tolerated);
    anything else gives no claims for that sentence, never an error. Each
    head/tail is located in the sentence (case-folded) for its offsets; one
    not found there keeps offsets ``(0, 0)``. Conclusion sentences are not
    sent to the model.

    Example with a transformers pipeline (``pip install quco[lm]``)::

        from transformers import pipeline
        pipe = pipeline("text-generation", model="ZhishanQ/QuCo-extractor-0.5B")
        ex = ModelClaimExtractor(lambda p: pipe(p, max_new_tokens=128, return_full_text=False)[0]["generated_text"],
                                 prompt="...the prompt the model was fine-tuned with...{sentence}...")
        guard = Guard(generator, extractor, stats, retriever, claim_extractor=ex)

    Args:
        complete: prompt -> generated text.
        prompt: the prompt template, with ``{sentence}`` where the sentence goes.
        name: recorded as each claim's ``source``.
    """

    def __init__(self, complete: Callable[[str], str], *, prompt: str = MODEL_PROMPT, name: str = "model") -> None:
        if "{sentence}" not in prompt:
            raise BadInputError("the prompt template needs a {sentence} placeholder")
        self.complete = complete
        self.prompt = prompt
        self.name = name

    def claims_many(self, sentences: Sequence[str], questions: Sequence[str] | None = None) -> list[list[Claim]]:
        """One model call per non-conclusion sentence; see the class docstring."""
        if isinstance(sentences, (str, bytes)):
            raise BadInputError("claims_many needs a sequence of str, got str")
        out: list[list[Claim]] = []
        for s in sentences:
            if not isinstance(s, str) or not s.strip() or is_conclusion(s):
                out.append([])
                continue
            text = self.complete(self.prompt.replace("{sentence}", s.strip()))
            out.append(_dedupe(parse_model_claims(text, s, source=self.name), MAX_CLAIMS))
        return out


_LIST = re.compile(r"\[.*\]", re.DOTALL)


def parse_model_claims(text: Any, sentence: str, *, source: str = "model") -> list[Claim]:
    """Claims from a model's output (a JSON list of 2- or 3-item lists); ``[]`` for anything else."""
    if not isinstance(text, str):
        return []
    m = _LIST.search(text)
    if not m:
        return []
    try:
        data = json.loads(m.group(0))
    except (json.JSONDecodeError, RecursionError):
        return []
    if not isinstance(data, list):
        return []
    out: list[Claim] = []
    low = sentence.casefold()
    for item in data:
        if not isinstance(item, list) or len(item) not in (2, 3) or not all(isinstance(x, str) for x in item):
            continue
        head = _located(item[0], sentence, low, "PROPN")
        rel = " ".join(item[1].split()).lower()
        tail = _located(item[2], sentence, low, "ENT") if len(item) == 3 else None
        if head is None or not rel or (len(item) == 3 and tail is None):
            continue
        out.append(Claim(head, rel, tail, 0, 0, source))
    return out


def _located(surface: str, sentence: str, low: str, label: str) -> Entity | None:
    text = normalize_entity_text(surface)
    if not text or not re.search(r"\w", text):
        return None
    i = low.find(surface.casefold().strip())
    start, end = (i, i + len(surface.strip())) if i >= 0 else (0, 0)
    return Entity(text, surface.strip(), label, start, end, "model")
