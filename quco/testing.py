"""Fakes for unit tests of logic: no index, no model, no spaCy needed.

They satisfy the same contracts as the real components (``quco.protocols``,
``quco.corpus.base.CorpusStats``) and are deterministic. Never the only test of
a feature: real components are exercised by the integration tests.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.types import Claim, Confidence, Count, Document, Entity, Generation, Pair, TokenConfidence

_WORD = re.compile(r"\w+|[^\w\s]")


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


class FakeCorpus(CorpusStats):
    """A corpus of a few documents, counted by brute force over word tokens.

    A term's occurrences are the positions where its word sequence starts;
    windows are measured in words. Optional ``fail`` makes every query raise
    the given exception (to test fail-open/fail-closed handling).
    """

    def __init__(self, docs: Sequence[str], *, fail: Exception | None = None) -> None:
        self.docs = [_words(d) for d in docs]
        self.fail = fail
        self.queries = 0

    def tokenize_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Word ids (a word the corpus lacks gets an id no document holds)."""
        vocab = self._vocab()
        out = []
        for t in texts:
            ids = []
            for w in _words(t):
                if w not in vocab:
                    vocab[w] = len(vocab)
                ids.append(vocab[w])
            out.append(ids)
        return out

    def count_ids_many(self, seqs: Sequence[Sequence[int]]) -> list[int]:
        """Occurrences of word-id sequences, by brute force."""
        vocab = self._vocab()
        docs = [[vocab[w] for w in d] for d in self.docs]
        out = []
        for s in seqs:
            q, n = list(s), len(s)
            out.append(sum(1 for d in docs for i in range(len(d) - n + 1) if n and d[i : i + n] == q))
        return out

    def _vocab(self) -> dict[str, int]:
        if not hasattr(self, "_ids"):
            self._ids: dict[str, int] = {}
            for d in self.docs:
                for w in d:
                    self._ids.setdefault(w, len(self._ids))
        return self._ids

    @property
    def tokens(self) -> int:
        """Word tokens in the corpus (its size, for thresholds given as rates)."""
        return sum(len(d) for d in self.docs)

    def _positions(self, term: str) -> list[tuple[int, int]]:
        t = _words(term)
        out = []
        for d, words in enumerate(self.docs):
            for i in range(len(words) - len(t) + 1):
                if t and words[i : i + len(t)] == t:
                    out.append((d, i))
        return out

    def count(self, term: str) -> Count:
        self.queries += 1
        if self.fail:
            raise self.fail
        return Count(len(self._positions(term)))

    def cooccur(
        self, a: str, b: str, *, window: int | None = DEFAULT_WINDOW, mode: CoocMode = "window"
    ) -> Count:
        self.queries += 1
        if self.fail:
            raise self.fail
        pa, pb = self._positions(a), self._positions(b)
        if mode == "doc" or window is None:
            return Count(len({d for d, _ in pa} & {d for d, _ in pb}))
        return Count(sum(1 for da, ia in pa for db, ib in pb if da == db and abs(ia - ib) <= window))


@dataclass
class FakeGenerator:
    """Returns preset texts, one per call, with preset token probabilities.

    Each response is split into word tokens; ``probs`` (one list per response,
    or a single float for every token) sets their probabilities. With
    ``sentence=True`` only the first sentence of the response is returned and
    the rest is kept for the next call.
    """

    responses: list[str]
    probs: list[list[float]] | float = 0.9
    name: str = "fake-generator"
    calls: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._queue: Iterator[int] = iter(range(len(self.responses)))
        self._pending: list[TokenConfidence] = []

    def _tokens(self, i: int) -> list[TokenConfidence]:
        words = re.findall(r"\s*\S+", self.responses[i])
        if isinstance(self.probs, float):
            ps = [self.probs] * len(words)
        else:
            ps = list(self.probs[i]) + [0.9] * max(0, len(words) - len(self.probs[i]))
        return [TokenConfidence(w, j, math.log(p), 0.5) for j, (w, p) in enumerate(zip(words, ps))]

    def generate(
        self,
        prompt: str,
        *,
        prefix: str = "",
        max_new_tokens: int = 64,
        stop: Sequence[str] = (),
        sentence: bool = False,
    ) -> Generation:
        self.calls.append((prompt, prefix))
        if not self._pending:
            i = next(self._queue, None)
            if i is None:
                return Generation("", Confidence(()), "eos")
            self._pending = self._tokens(i)
        toks = self._pending[:max_new_tokens]
        if sentence:
            for j, t in enumerate(toks):
                if re.search(r"[.!?]$", t.token):
                    toks = toks[: j + 1]
                    break
        self._pending = self._pending[len(toks) :]
        text = "".join(t.token for t in toks)
        reason = "stop" if self._pending else "eos"
        return Generation(text.strip() if not prefix else text, Confidence(tuple(toks)), reason)


class FakeExtractor:
    """Entities are runs of capitalised words; lexical, no model."""

    _SPAN = re.compile(r"\b[A-Z][\w'-]*(?:\s+(?:of\s+)?[A-Z][\w'-]*)*")
    _QWORDS = {"Who", "What", "When", "Where", "Which", "Why", "How", "The", "A", "An", "In", "Is", "Was", "It", "He", "She", "They", "This"}

    def entities(self, text: str) -> list[Entity]:
        out = []
        for m in self._SPAN.finditer(text):
            words = m.group(0).split()
            while words and words[0] in self._QWORDS:
                words = words[1:]
            if not words:
                continue
            surface = " ".join(words)
            start = text.find(surface, m.start())
            norm = re.sub(r"'s$", "", surface)
            out.append(Entity(norm, surface, "ENT", start, start + len(surface), "ner"))
        return out

    def entities_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        return [self.entities(t) for t in texts]

    def pairs(self, sentence: Sequence[Entity], question: Sequence[Entity] = ()) -> list[Pair]:
        seen: set[tuple[str, str]] = set()
        out = []
        cands = list(sentence) + list(question)
        for i, h in enumerate(sentence):
            for t in cands[i + 1 :]:
                key = tuple(sorted((h.key, t.key)))
                if h.key == t.key or key in seen:
                    continue
                seen.add(key)  # type: ignore[arg-type]
                out.append(Pair(h, t))
        return out

    def new_entities(self, answer: Sequence[Entity], question: Sequence[Entity]) -> list[Entity]:
        qk = {e.key for e in question}
        return [e for e in answer if e.key not in qk]

    def claim_extractor(self) -> FakeClaimExtractor:
        return FakeClaimExtractor(self)


_ARTICLES = {"the", "a", "an"}


class FakeClaimExtractor:
    """Claims from :class:`FakeExtractor`'s entities (satisfies ``quco.protocols.ClaimExtractor``).

    The first entity of a sentence is the head; each later one is a tail, with
    the lower-case words between the head and it (articles dropped) as the
    relation: "Paris is the capital of Germany." → ``('Paris', 'is capital
    of', 'Germany')``. A sentence with one entity and words after it is a
    tuple: "Zorblax was released." → ``('Zorblax', 'was released')``. A
    conclusion ("So the answer is X.") gives none. ``table`` presets the claims
    of given sentences as ``(head, relation, tail_or_None)`` tuples.
    Every call is recorded in ``calls``.
    """

    name = "fake-claims"

    def __init__(
        self, extractor: FakeExtractor | None = None, table: dict[str, list[tuple[str, str, str | None]]] | None = None
    ) -> None:
        self.extractor = extractor or FakeExtractor()
        self.table = dict(table or {})
        self.calls: list[tuple[str, str]] = []

    def claims_many(self, sentences: Sequence[str], questions: Sequence[str] | None = None) -> list[list[Claim]]:
        from quco.nlp.claims import is_conclusion

        qs = list(questions) if questions is not None else [""] * len(sentences)
        out = []
        for s, q in zip(sentences, qs):
            self.calls.append((s, q))
            if s in self.table:
                out.append([self._preset(s, *t) for t in self.table[s]])
            elif is_conclusion(s):
                out.append([])
            else:
                out.append(self._rule(s))
        return out

    def _preset(self, s: str, head: str, rel: str, tail: str | None) -> Claim:
        def ent(text: str) -> Entity:
            i = s.find(text)
            return Entity(text, text, "ENT", max(i, 0), max(i, 0) + len(text) if i >= 0 else 0)

        return Claim(ent(head), rel, ent(tail) if tail is not None else None, 0, 0, self.name)

    def _rule(self, s: str) -> list[Claim]:
        ents = self.extractor.entities(s)
        if not ents:
            return []
        head = ents[0]
        out = []
        for t in ents[1:]:
            words = [w for w in _words(s[head.end : t.start]) if w.isalnum() and w.lower() not in _ARTICLES]
            if words and t.key != head.key:
                out.append(Claim(head, " ".join(w.lower() for w in words), t, head.end, t.start, self.name))
        if len(ents) == 1:
            words = [w for w in _words(s[head.end :]) if w.isalnum() and w.lower() not in _ARTICLES]
            if words:
                out.append(Claim(head, " ".join(w.lower() for w in words), None, head.end, len(s), self.name))
        return out


class FakeRetriever:
    """Ranks documents by word overlap with the query."""

    def __init__(self, texts: Sequence[str]) -> None:
        self.docs = [Document(str(i), t) for i, t in enumerate(texts)]
        self.queries: list[str] = []

    def retrieve(self, query: str, k: int = 3) -> list[Document]:
        self.queries.append(query)
        q = {w.lower() for w in _words(query) if w.isalnum()}
        scored = []
        for d in self.docs:
            s = len(q & {w.lower() for w in _words(d.text)})
            if s:
                scored.append(Document(d.id, d.text, float(s)))
        scored.sort(key=lambda d: -d.score)
        return scored[:k]
