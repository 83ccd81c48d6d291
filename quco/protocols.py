"""Small contracts between components (structural typing).

Real implementations: ``quco.nlp.entities.EntityExtractor``,
``quco.nlp.claims.ClaimParser``,
``quco.lm.generator.HFGenerator``, ``quco.lm.confidence.ConfidenceScorer``,
``quco.retrieval`` retrievers, ``quco.corpus`` backends. Fakes in
``quco.testing`` satisfy the same contracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from quco.types import Claim, Confidence, Document, Entity, Generation, Pair


@runtime_checkable
class Extractor(Protocol):
    """Text -> entities; sentence entities (+ question entities) -> pairs."""

    def entities(self, text: str) -> list[Entity]: ...

    def entities_many(self, texts: Sequence[str]) -> list[list[Entity]]: ...

    def pairs(self, sentence: Sequence[Entity], question: Sequence[Entity] = ()) -> list[Pair]: ...

    def new_entities(self, answer: Sequence[Entity], question: Sequence[Entity]) -> list[Entity]: ...


@runtime_checkable
class ClaimExtractor(Protocol):
    """Sentence -> the claims it makes: (head, relation, tail) triplets and (head, relation) tuples.

    The contract QuCo's stage 2 relies on:

    - one list of :class:`~quco.types.Claim` per sentence, in order;
    - a conclusion sentence ("So the answer is X.", "Thus ...", "Therefore
      ...") gives none: it restates earlier claims;
    - a triplet's tail may be a date or a number; a head is a named entity;
    - entity texts are the normalized lookup forms the corpus is queried with
      (``quco.nlp.normalize.normalize_entity_text``).

    ``questions`` (optional, one per sentence) is the question a sentence
    answers. An extractor may use it to complete a bare answer span ("Paris"
    to "Where was X born?") into a claim, or ignore it.

    The rule-based implementation is ``quco.nlp.claims.ClaimParser`` (spaCy's
    dependency parse and entities); a fine-tuned model (the paper's 0.5B
    extractor) plugs in through ``quco.nlp.claims.ModelClaimExtractor``.
    """

    def claims_many(
        self, sentences: Sequence[str], questions: Sequence[str] | None = None
    ) -> list[list[Claim]]: ...


@runtime_checkable
class Generator(Protocol):
    """Prompt -> text with the token confidences of the generation itself.

    ``prompt`` is the user's turn (a chat template is applied when the model has
    one); ``prefix`` is assistant text already written, which generation
    continues. With ``sentence=True`` generation stops after the first
    complete sentence.
    """

    name: str

    def generate(
        self,
        prompt: str,
        *,
        prefix: str = "",
        max_new_tokens: int = 64,
        stop: Sequence[str] = (),
        sentence: bool = False,
    ) -> Generation: ...


@runtime_checkable
class Scorer(Protocol):
    """(prompt, continuation) -> per-token confidence of the continuation."""

    def score(self, prompt: str, continuation: str) -> Confidence: ...


@runtime_checkable
class Retriever(Protocol):
    """Query -> ranked documents (best first)."""

    def retrieve(self, query: str, k: int = 3) -> list[Document]: ...
