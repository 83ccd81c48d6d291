"""Corpus statistics: index building, local and remote backends, cache, server."""

from __future__ import annotations

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats

__all__ = ["DEFAULT_WINDOW", "CoocMode", "CorpusStats", "open_stats"]


def open_stats(location: str, **kwargs: object) -> CorpusStats:
    """Open a corpus backend from a directory or an http(s) URL.

    Args:
        location: a local index directory, or the URL of an infini-gram
            compatible API (``quco serve`` or the public service).
        **kwargs: passed to the backend's constructor.
    """
    if location.startswith(("http://", "https://")):
        from quco.corpus.remote import RemoteStats

        return RemoteStats(location, **kwargs)  # type: ignore[arg-type]
    from quco.corpus.local import LocalStats

    return LocalStats(location, **kwargs)  # type: ignore[arg-type]
