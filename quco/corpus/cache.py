"""A count cache in front of any corpus backend.

:class:`CachedStats` keeps recent answers in an in-memory LRU and, optionally,
in a sqlite file that survives the process. Persistent entries are keyed by
the backend's identity (the index manifest's hash and query options for a local
index, URL and index name for a remote one), the query, the window and the
mode, so one file can serve several corpora without mixing their counts.

Degraded answers of a failing remote backend
(:class:`~quco.corpus.remote.DegradedCount`) are passed through but never
cached.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.corpus.remote import DegradedCount
from quco.errors import BadInputError, QucoError
from quco.types import Count

#: query options of a local backend that change its answers
_OPTION_ATTRS = ("casefold", "max_occurrences", "seed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS quco_counts (
    backend TEXT NOT NULL,
    query TEXT NOT NULL,
    value INTEGER NOT NULL,
    approx INTEGER NOT NULL,
    PRIMARY KEY (backend, query)
)
"""


class CacheFileError(QucoError):
    """The cache file cannot be opened or is not a quco cache."""


@dataclass(frozen=True)
class CacheInfo:
    """Cache counters.

    Attributes:
        hits: answers found in memory or in the file.
        misses: answers asked of the backend.
        disk_hits: the part of ``hits`` found in the file.
        size: entries in memory.
        maxsize: memory capacity.
        path: the sqlite file, or ``None``.
    """

    hits: int
    misses: int
    disk_hits: int
    size: int
    maxsize: int
    path: str | None

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def backend_identity(stats: CorpusStats) -> str:
    """A string that identifies the answers of ``stats``.

    A backend's own ``identity`` string wins (remote: URL and index name, so
    a persistent cache must be cleared if another index is served under the
    same URL and name); a local index is identified by the hash of its
    manifest (which changes when the index is rebuilt) and of the query
    options that change its counts (``casefold``, ``max_occurrences``,
    ``seed``).

    Raises:
        BadInputError: the backend exposes neither.
    """
    ident = getattr(stats, "identity", None)
    if isinstance(ident, str) and ident:
        return ident
    manifest = getattr(stats, "manifest", None)
    if manifest is not None:
        body = manifest.to_dict() if hasattr(manifest, "to_dict") else manifest
        opts = {k: getattr(stats, k) for k in _OPTION_ATTRS if hasattr(stats, k)}
        blob = json.dumps({"manifest": body, "options": opts}, sort_keys=True, default=str)
        return "index:" + hashlib.sha256(blob.encode()).hexdigest()[:32]
    raise BadInputError(
        f"cannot tell which corpus a {type(stats).__name__} counts: pass identity= to CachedStats"
    )


def _cooc_key(a: str, b: str, window: int | None, mode: CoocMode) -> str:
    if mode not in ("doc", "window"):
        raise BadInputError(f"mode must be 'doc' or 'window', not {mode!r}")
    if mode == "doc" or window is None:
        return json.dumps(["cooc", a, b, None, "doc"])
    return json.dumps(["cooc", a, b, int(window), "window"])


def _count_key(term: str) -> str:
    return json.dumps(["count", term])


class CachedStats(CorpusStats):
    """Any :class:`CorpusStats` behind an LRU and an optional sqlite file.

    Thread-safe: the cache is guarded by a lock; backend calls happen outside
    it (a backend that is not thread-safe must guard itself).

    Args:
        backend: the corpus backend whose answers are cached.
        maxsize: entries kept in memory (least recently used go first).
        path: a sqlite file for answers that outlive the process; created if
            missing.
        identity: the backend's identity in the file; derived with
            :func:`backend_identity` when omitted.
        close_backend: whether :meth:`close` closes the backend too.
    """

    def __init__(
        self,
        backend: CorpusStats,
        *,
        maxsize: int = 100_000,
        path: str | Path | None = None,
        identity: str | None = None,
        close_backend: bool = True,
    ) -> None:
        if maxsize < 0:
            raise BadInputError(f"maxsize must not be negative, not {maxsize}")
        self.backend = backend
        self.maxsize = int(maxsize)
        self.path = str(path) if path is not None else None
        self.close_backend = close_backend
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self._lru: OrderedDict[str, Count] = OrderedDict()
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._identity = identity
        if self.path is not None:
            self._identity = identity or backend_identity(backend)
            self._db = _open_db(self.path)

    @property
    def identity(self) -> str:
        """The wrapped backend's identity (so caches can be stacked)."""
        return self._identity or backend_identity(self.backend)

    @property
    def errors(self) -> list[Any]:
        """The wrapped backend's degraded answers (``RemoteStats.errors``), if it records them."""
        errs = getattr(self.backend, "errors", None)
        return errs if isinstance(errs, list) else []

    # ------------------------------------------------------------------ queries

    def count(self, term: str) -> Count:
        key = _count_key(term)
        hit = self._get(key)
        if hit is not None:
            return hit
        c = self.backend.count(term)
        self._put({key: c})
        return c

    def cooccur(
        self, a: str, b: str, *, window: int | None = DEFAULT_WINDOW, mode: CoocMode = "window"
    ) -> Count:
        key = _cooc_key(a, b, window, mode)
        hit = self._get(key)
        if hit is not None:
            return hit
        c = self.backend.cooccur(a, b, window=window, mode=mode)
        self._put({key: c})
        return c

    def count_many(self, terms: Sequence[str]) -> list[Count]:
        """Batched :meth:`count`: only the misses go to the backend's ``count_many``."""
        keys = [_count_key(t) for t in terms]
        found, missing = self._lookup(keys)
        if missing:
            todo = list(missing)
            got = self.backend.count_many([missing[k] for k in todo])
            new = dict(zip(todo, got, strict=True))
            self._put(new)
            found.update(new)
        return [found[k] for k in keys]

    def cooccur_many(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        window: int | None = DEFAULT_WINDOW,
        mode: CoocMode = "window",
    ) -> list[Count]:
        """Batched :meth:`cooccur`: only the misses go to the backend's ``cooccur_many``."""
        keys = [_cooc_key(a, b, window, mode) for a, b in pairs]
        key_pair = dict(zip(keys, pairs, strict=True))
        found, missing = self._lookup(keys)
        if missing:
            todo = list(missing)
            got = self.backend.cooccur_many([key_pair[k] for k in todo], window=window, mode=mode)
            new = dict(zip(todo, got, strict=True))
            self._put(new)
            found.update(new)
        return [found[k] for k in keys]

    # ------------------------------------------------------------- management

    def cache_info(self) -> CacheInfo:
        """Hit and miss counters and sizes."""
        with self._lock:
            return CacheInfo(self.hits, self.misses, self.disk_hits, len(self._lru), self.maxsize, self.path)

    def clear(self, *, persistent: bool = False) -> None:
        """Empty the memory cache (and this backend's rows in the file when ``persistent``)."""
        with self._lock:
            self._lru.clear()
            if persistent and self._db is not None:
                self._db.execute("DELETE FROM quco_counts WHERE backend = ?", (self._identity,))
                self._db.commit()

    def close(self) -> None:
        """Close the sqlite file (and the backend when ``close_backend``)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        if self.close_backend:
            self.backend.close()

    # ---------------------------------------------------------------- internals

    def _get(self, key: str) -> Count | None:
        found, _ = self._lookup([key])
        return found.get(key)

    def _lookup(self, keys: Sequence[str]) -> tuple[dict[str, Count], dict[str, Any]]:
        """Split ``keys`` into cached answers and misses (in first-seen order)."""
        found: dict[str, Count] = {}
        missing: dict[str, Any] = {}
        with self._lock:
            for k in keys:
                if k in found or k in missing:
                    continue
                c = self._lru.get(k)
                if c is not None:
                    self._lru.move_to_end(k)
                    found[k] = c
                    self.hits += 1
                else:
                    missing[k] = None
            if missing and self._db is not None:
                for k, c in self._db_get(self._db, list(missing)).items():
                    found[k] = c
                    del missing[k]
                    self.hits += 1
                    self.disk_hits += 1
                    self._remember(k, c)
            self.misses += len(missing)
        # map each missing key back to its query argument (a term for counts)
        return found, {k: _query_arg(k) for k in missing}

    def _put(self, items: dict[str, Count]) -> None:
        keep = {k: c for k, c in items.items() if not isinstance(c, DegradedCount)}
        if not keep:
            return
        with self._lock:
            for k, c in keep.items():
                self._remember(k, c)
            if self._db is not None:
                try:
                    self._db.executemany(
                        "INSERT OR REPLACE INTO quco_counts VALUES (?, ?, ?, ?)",
                        [(self._identity, k, int(c.value), int(c.approx)) for k, c in keep.items()],
                    )
                    self._db.commit()
                except sqlite3.Error as exc:
                    raise CacheFileError(f"cannot write the count cache {self.path}: {exc}") from exc

    def _remember(self, key: str, c: Count) -> None:
        if self.maxsize == 0:
            return
        self._lru[key] = c
        self._lru.move_to_end(key)
        while len(self._lru) > self.maxsize:
            self._lru.popitem(last=False)

    def _db_get(self, db: sqlite3.Connection, keys: list[str]) -> dict[str, Count]:
        out: dict[str, Count] = {}
        try:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT query, value, approx FROM quco_counts WHERE backend = ? AND query IN ({marks})",
                    (self._identity, *chunk),
                ).fetchall()
                for q, value, approx in rows:
                    out[q] = Count(int(value), bool(approx))
        except sqlite3.Error as exc:
            raise CacheFileError(f"cannot read the count cache {self.path}: {exc}") from exc
        return out


def _query_arg(key: str) -> Any:
    parts = json.loads(key)
    return parts[1] if parts[0] == "count" else (parts[1], parts[2])


def _open_db(path: str) -> sqlite3.Connection:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(_SCHEMA)
        db.commit()
    except (sqlite3.Error, OSError) as exc:
        raise CacheFileError(f"cannot open the count cache {path}: {exc}") from exc
    return db
