"""How many tokens a corpus backend holds (for thresholds relative to the index's size)."""

from __future__ import annotations

import logging
from typing import Any

from quco.errors import QucoError

log = logging.getLogger(__name__)


def corpus_tokens(stats: Any) -> int | None:
    """The token count of the corpus behind ``stats``, or ``None`` when it cannot be known.

    - a local index (:class:`~quco.corpus.local.LocalStats`): its manifest's;
    - a cache (:class:`~quco.corpus.cache.CachedStats`): its backend's;
    - one corpus in parts (:class:`~quco.corpus.sharded.ShardedStats`): the
      sum of the parts' (``None`` if one part cannot say);
    - a server (:class:`~quco.corpus.remote.RemoteStats`): what ``quco
      serve``'s ``/health`` reports for the index; the public infini-gram
      service reports nothing, so ``None``;
    - anything else: its ``tokens`` attribute when it has an integer one
      (:class:`quco.testing.FakeCorpus`), else ``None``.
    """
    manifest = getattr(stats, "manifest", None)
    if manifest is not None and isinstance(getattr(manifest, "tokens", None), int):
        return int(manifest.tokens)
    backend = getattr(stats, "backend", None)
    if backend is not None:
        return corpus_tokens(backend)
    shards = getattr(stats, "shards", None)
    if isinstance(shards, list) and shards:
        parts = [corpus_tokens(s) for s in shards]
        return None if any(p is None for p in parts) else sum(p for p in parts if p is not None)
    if callable(getattr(stats, "health", None)):
        from quco.corpus.sharded import info_of

        try:
            return int(info_of(stats, str(getattr(stats, "url", "server"))).tokens)
        except QucoError as exc:
            log.info("the corpus server does not report its size: %s", exc)
            return None
    tokens = getattr(stats, "tokens", None)
    if isinstance(tokens, int) and not isinstance(tokens, bool):
        return tokens
    return None
