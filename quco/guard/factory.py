"""Build a :class:`~quco.guard.core.Guard` from locations (index, retriever, model).

Only the components a policy needs are opened: ``none`` needs the generator
only; ``single`` and ``flare`` add the retriever; ``quco`` and ``combined`` add
the entity extractor and the corpus index (a directory or a server URL).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from quco.errors import IndexNotFoundError, QucoError
from quco.guard.core import Guard


def _needs(policy: str) -> tuple[bool, bool]:
    """(needs retriever, needs corpus + extractor)."""
    return policy != "none", policy in ("quco", "combined")


def open_corpus(location: str | Path) -> Any:
    """Corpus statistics from an index directory, an http(s) URL, or several (``A,B,...``, a shard map)."""
    loc = str(location)
    for part in loc.split(","):
        if not part.startswith(("http://", "https://")) and not Path(part).exists():
            raise IndexNotFoundError(f"no corpus index at {part} (build one with `quco index build` or run `quco demo`)")
    from quco.corpus import open_stats

    return open_stats(loc)


def open_retrieval(location: str | Path) -> Any:
    """A quco retriever from a retrieval collection directory."""
    if not Path(location).exists():
        raise QucoError(
            f"no retrieval collection at {location} (build one with `quco retrieval build` or run `quco demo`)"
        )
    mod = importlib.import_module("quco.retrieval")
    return mod.open_retriever(str(location))


def load_generator(model: str | None = None, *, prefix_cache: bool = True) -> Any:
    """The default transformers generator for a packaged alias, HF id or local path."""
    mod = importlib.import_module("quco.lm.generator")
    return mod.HFGenerator(model, prefix_cache=prefix_cache) if model else mod.HFGenerator(prefix_cache=prefix_cache)


def load_extractor() -> Any:
    """The default spaCy entity extractor, loaded now (not inside the first answer's timing)."""
    mod = importlib.import_module("quco.nlp.entities")
    ex = mod.EntityExtractor()
    ex.nlp  # noqa: B018 - loads the spaCy pipeline
    return ex


def build_guard(
    *,
    policy: str = "quco",
    index: str | Path | None = None,
    retriever: str | Path | None = None,
    model: str | None = None,
    generator: Any = None,
    extractor: Any = None,
    **kwargs: Any,
) -> Guard:
    """A guard over the given locations, opening only what ``policy`` needs.

    Args:
        policy: the guard policy.
        index: corpus index directory or server URL (``quco``/``combined``).
        retriever: retrieval collection directory (every policy but ``none``).
        model: generator model (packaged alias, HF id or path); ignored when
            ``generator`` is given.
        generator: an already loaded generator (shared across guards).
        extractor: an already loaded entity extractor.
        **kwargs: passed to :class:`Guard`.

    Raises:
        IndexNotFoundError: the index is missing.
        QucoError: the retrieval collection is missing, or a location the
            policy needs was not given.
    """
    need_ret, need_corpus = _needs(policy)
    ret = stats = None
    if need_corpus:
        if index is None:
            raise QucoError(f"policy {policy!r} needs a corpus index (--index DIR_OR_URL)")
        stats = open_corpus(index)
    if need_ret:
        if retriever is None:
            raise QucoError(f"policy {policy!r} needs a retrieval collection (--retriever DIR)")
        ret = open_retrieval(retriever)
    if need_corpus:
        extractor = extractor or load_extractor()
    gen = generator or load_generator(model)
    return Guard(gen, extractor if need_corpus else None, stats, ret, policy=policy, **kwargs)
