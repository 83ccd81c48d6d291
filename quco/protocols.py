"""Small contracts between components (structural typing).

Real implementations: ``quco.nlp.entities.EntityExtractor``,
``quco.lm.generator.HFGenerator``, ``quco.lm.confidence.ConfidenceScorer``,
``quco.retrieval`` retrievers, ``quco.corpus`` backends. Fakes in
``quco.testing`` satisfy the same contracts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from quco.types import Confidence, Document, Entity, Generation, Pair


@runtime_checkable
class Extractor(Protocol):
    """Text -> entities; sentence entities (+ question entities) -> pairs."""

    def entities(self, text: str) -> list[Entity]: ...

    def entities_many(self, texts: Sequence[str]) -> list[list[Entity]]: ...

    def pairs(self, sentence: Sequence[Entity], question: Sequence[Entity] = ()) -> list[Pair]: ...

    def new_entities(self, answer: Sequence[Entity], question: Sequence[Entity]) -> list[Entity]: ...


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
