"""Corpus statistics: index building, local and remote backends, cache, server."""

from __future__ import annotations

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats

__all__ = ["DEFAULT_WINDOW", "CoocMode", "CorpusStats", "open_stats"]


def open_stats(location: str, **kwargs: object) -> CorpusStats:
    """Open a corpus backend from a directory or an http(s) URL.

    Args:
        location: a local index directory; the URL of an infini-gram
            compatible API (``quco serve`` or the public service); or one
            corpus split by documents over several servers or directories:
            ``URL1,URL2,...`` or a shard-map file (``*.json``), see
            :mod:`quco.corpus.sharded`.
        **kwargs: passed to the backend's constructor.
    """
    from quco.corpus.sharded import is_sharded

    if is_sharded(location):
        from quco.corpus.sharded import open_sharded

        return open_sharded(location, **kwargs)
    if location.startswith(("http://", "https://")):
        from quco.corpus.remote import RemoteStats

        return RemoteStats(location, **kwargs)  # type: ignore[arg-type]
    from quco.corpus.local import LocalStats

    return LocalStats(location, **kwargs)  # type: ignore[arg-type]
