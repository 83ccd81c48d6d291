"""Entities, claims, pairs and sentences: the text side of QuCo's checks.

``import quco.nlp`` does not import spaCy; the pipeline is loaded by
:class:`EntityExtractor` on first use.
"""

from __future__ import annotations

from quco.nlp.claims import ClaimParser, ModelClaimExtractor, is_conclusion
from quco.nlp.entities import DEFAULT_MAX_PAIRS, DEFAULT_SKIP_LABELS, EntityExtractor, candidate_pairs
from quco.nlp.normalize import normalize_entity_text, same_entity
from quco.nlp.sentences import sentence_spans, split_sentences

__all__ = [
    "ClaimParser",
    "DEFAULT_MAX_PAIRS",
    "DEFAULT_SKIP_LABELS",
    "EntityExtractor",
    "ModelClaimExtractor",
    "candidate_pairs",
    "is_conclusion",
    "normalize_entity_text",
    "same_entity",
    "sentence_spans",
    "split_sentences",
]
