"""The rules of :class:`quco.nlp.claims.ClaimParser` over one parsed sentence (see that module's docstring).

Internal: mentions (entities, proper-noun runs, quoted titles), argument
resolution (subjects, objects, relational nouns, appositions, conjunctions)
and the claims of predicates, appositions and life dates. Conclusions
(:func:`is_conclusion`) and the shared label sets live here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from quco.nlp.normalize import QUESTION_WORDS, normalize_entity_text, same_entity, year_of
from quco.types import Claim, Entity

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


#: a sentence that opens with its answer, no connective before it: "The answer (to this question) is X."
_DIRECT_ANSWER = re.compile(
    r"^\W*(?:the|my|final)\s+answer(?:\s+to\s+[^.:?!]{1,40}?)?(?:\s+(?:is|was|would be)\b\s*:?|\s*:)\s*",
    re.IGNORECASE,
)


def direct_answer_start(sentence: str) -> int | None:
    """Where the answer begins in a sentence that opens with it ("The answer is X."), else None.

    "So the answer is X." (a conclusion drawn from earlier sentences) is not a direct answer.
    """
    m = _DIRECT_ANSWER.match(sentence)
    return m.end() if m else None


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


def mentions_of(doc: Any) -> list[_Mention]:
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


class SentenceRules:
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


def dedupe_claims(claims: Iterable[Claim], cap: int) -> list[Claim]:
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


