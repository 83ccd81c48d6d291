"""A claim extractor backed by a text-generation model (the paper fine-tunes a 0.5B one).

:class:`ModelClaimExtractor` satisfies :class:`quco.protocols.ClaimExtractor`
for any prompt -> text function; :func:`parse_model_claims` reads the paper's
output format (a JSON list of ``[head, relation, tail]`` / ``[head,
relation]``) and never raises.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from quco.errors import BadInputError
from quco.nlp._claim_rules import MAX_CLAIMS, dedupe_claims, is_conclusion
from quco.nlp.normalize import normalize_entity_text
from quco.types import Claim, Entity

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
            out.append(dedupe_claims(parse_model_claims(text, s, source=self.name), MAX_CLAIMS))
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
