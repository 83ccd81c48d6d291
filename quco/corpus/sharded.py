"""One corpus split by documents over several indexes or servers, counted as one.

A corpus too big for one machine is split by documents into parts
(``quco index build --split N``); each part is a complete index, served by its
own ``quco serve``. :class:`ShardedStats` makes them one
:class:`~quco.corpus.base.CorpusStats`: every count and co-occurrence is asked
of all parts in parallel (one thread per part, each part's batched query over
its own pooled connections) and the answers are summed. This is exact: no
document spans two parts, and a co-occurrence (in a document, or within a
window of one) is counted inside one document. A part whose own answer is
approximate (its occurrence cap) makes the sum approximate.

**Which parts form one corpus.** Each part's manifest records its
:class:`~quco.corpus.manifest.Partition` (corpus id, part ``k`` of ``n``);
``quco serve`` shows it under ``GET /health``. Before a part's first answer is
used, the set is checked: all parts of the same corpus, each part exactly once,
none missing, the same tokenizer vocabulary and case matching. Any other set is
refused with one :class:`~quco.errors.ShardSetError` naming the mismatch.

**A part that is down.** ``on_error`` decides, as for
:class:`~quco.corpus.remote.RemoteStats`: ``"raise"`` raises
:class:`~quco.errors.BackendUnavailableError` (the guard's
``on_backend_error`` then applies); ``"open"`` answers
:data:`~quco.corpus.remote.FAIL_OPEN_COUNT` and ``"closed"`` answers 0, as a
:class:`~quco.corpus.remote.DegradedCount`. Either way the message names the
part that failed (``shard 2 of 3 (http://...)``), so the guard's verdict does.
A part that cannot be reached when the set is opened is checked when it first
answers.

**Shard maps.** ``--index`` takes ``URL1,URL2,...`` (or index directories), or
a JSON shard-map file (:func:`read_shard_map`)::

    {"corpus_id": "3f2c...",                      # optional: checked against every part
     "shards": ["http://10.0.0.1:8000/",
                {"url": "http://10.0.0.2:8000/", "index": "part-1"},
                "part-2"]}                        # a directory, relative to this file
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.corpus.remote import FAIL_OPEN_COUNT, BackendFailure, DegradedCount, OnError
from quco.errors import BackendUnavailableError, BadInputError, EngineError, QucoError, ShardSetError
from quco.types import Count

log = logging.getLogger(__name__)

#: the name of the shard-map file ``quco index build --split`` writes next to the parts
SHARD_MAP_NAME = "shards.json"


@dataclass(frozen=True)
class ShardRef:
    """One entry of a shard map: an index directory or a server URL (with the index it serves)."""

    location: str
    index: str | None = None

    @property
    def remote(self) -> bool:
        return self.location.startswith(("http://", "https://"))


@dataclass(frozen=True)
class CorpusInfo:
    """What a backend says it holds (from its manifest, or a server's ``/health``).

    Attributes:
        vocab_sha256: hash of the tokenizer vocabulary.
        casefold: whether case variants are counted.
        documents: documents held.
        tokens: tokens held.
        corpus_id: the split corpus this is part of (``None``: a whole corpus).
        part: its part number.
        parts: parts of the split corpus.
    """

    vocab_sha256: str
    casefold: bool
    documents: int
    tokens: int
    corpus_id: str | None = None
    part: int = 0
    parts: int = 1

    def to_dict(self) -> dict[str, Any]:
        part = (
            None
            if self.corpus_id is None
            else {"corpus_id": self.corpus_id, "part": self.part, "parts": self.parts}
        )
        return {
            "vocab_sha256": self.vocab_sha256,
            "casefold": self.casefold,
            "documents": self.documents,
            "tokens": self.tokens,
            "partition": part,
        }

    @classmethod
    def from_dict(cls, d: Any, where: str) -> CorpusInfo:
        try:
            part = d.get("partition") or {}
            return cls(
                vocab_sha256=str(d["vocab_sha256"]),
                casefold=bool(d.get("casefold", False)),
                documents=int(d["documents"]),
                tokens=int(d["tokens"]),
                corpus_id=part.get("corpus_id"),
                part=int(part.get("part", 0)),
                parts=int(part.get("parts", 1)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ShardSetError(f"{where} does not say which corpus it holds (an older quco serve?)") from exc


def describe(stats: CorpusStats) -> dict[str, Any] | None:
    """:class:`CorpusInfo` of a local backend as JSON (``quco serve``'s ``/health``), or ``None``."""
    m = getattr(stats, "manifest", None)
    if m is None:
        return None
    p = m.partition
    return CorpusInfo(
        vocab_sha256=m.vocab_sha256,
        casefold=bool(getattr(stats, "casefold", False)),
        documents=m.documents,
        tokens=m.tokens,
        corpus_id=None if p is None else p.corpus_id,
        part=0 if p is None else p.part,
        parts=1 if p is None else p.parts,
    ).to_dict()


def info_of(stats: CorpusStats, where: str) -> CorpusInfo:
    """What ``stats`` holds: from a local manifest, or asked of a server.

    Raises:
        BackendUnavailableError: the server cannot be reached.
        ShardSetError: the backend cannot say.
    """
    local = describe(stats)
    if local is not None:
        return CorpusInfo.from_dict(local, where)
    health = getattr(stats, "health", None)
    if not callable(health):
        raise ShardSetError(f"{where} cannot say which corpus it holds")
    try:
        h = health()
    except EngineError as exc:
        raise ShardSetError(f"{where} cannot say which corpus it holds: {exc}") from exc
    name = getattr(stats, "index", None) or h.get("default")
    info = (h.get("info") or {}).get(name) if isinstance(h.get("info"), dict) else None
    if info is None:
        raise ShardSetError(f"{where} does not say which corpus index {name!r} holds (an older quco serve?)")
    return CorpusInfo.from_dict(info, where)


def read_shard_map(path: str | Path) -> tuple[str | None, list[ShardRef]]:
    """Read a shard-map file: (expected corpus id or ``None``, the shards in order).

    Raises:
        BadInputError: the file is unreadable or malformed.
    """
    p = Path(path)
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"cannot read the shard map {p}: {exc}") from exc
    entries = d.get("shards") if isinstance(d, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BadInputError(f"shard map {p}: needs a non-empty list 'shards'")
    cid = d.get("corpus_id")
    if cid is not None and not isinstance(cid, str):
        raise BadInputError(f"shard map {p}: 'corpus_id' must be a string")
    refs = []
    for i, e in enumerate(entries):
        if isinstance(e, str):
            e = {"url": e} if e.startswith(("http://", "https://")) else {"path": e}
        if not isinstance(e, dict) or sum(k in e for k in ("url", "path")) != 1:
            raise BadInputError(
                f"shard map {p}: shards[{i}] must be a URL, a path, or {{'url'|'path', 'index'?}}"
            )
        index = e.get("index")
        if index is not None and not isinstance(index, str):
            raise BadInputError(f"shard map {p}: shards[{i}].index must be a string")
        if "url" in e:
            if not isinstance(e["url"], str) or not e["url"].startswith(("http://", "https://")):
                raise BadInputError(f"shard map {p}: shards[{i}].url must be an http(s) URL")
            refs.append(ShardRef(e["url"], index))
        else:
            if not isinstance(e["path"], str) or not e["path"]:
                raise BadInputError(f"shard map {p}: shards[{i}].path must be a directory")
            refs.append(ShardRef(str((p.parent / e["path"]).resolve())))
    return cid, refs


def is_sharded(location: str) -> bool:
    """Whether ``location`` names several shards (a comma-separated list or a shard-map file)."""
    return "," in location or (location.endswith(".json") and Path(location).is_file())


def open_sharded(location: str, **kwargs: Any) -> ShardedStats:
    """A :class:`ShardedStats` over ``URL1,URL2,...`` (or directories) or a shard-map file.

    Args:
        location: the shards.
        **kwargs: ``on_error`` and ``max_workers`` go to :class:`ShardedStats`;
            the rest to each shard's backend (``RemoteStats`` or ``LocalStats``;
            ``index`` only to the URLs).
    """
    if location.endswith(".json") and "," not in location:
        cid, refs = read_shard_map(location)
    else:
        cid, refs = None, [ShardRef(x.strip()) for x in location.split(",")]
        if any(not r.location for r in refs):
            raise BadInputError(f"an empty shard in {location!r}")
    on_error: OnError = kwargs.pop("on_error", "raise")
    max_workers = kwargs.pop("max_workers", None)
    index = kwargs.pop("index", None)
    backends: list[CorpusStats] = []
    try:
        for r in refs:
            if r.remote:
                from quco.corpus.remote import RemoteStats

                backends.append(RemoteStats(r.location, index=r.index or index, on_error="raise", **kwargs))
            else:
                from quco.corpus.local import LocalStats

                backends.append(LocalStats(r.location, **kwargs))
        names = [r.location for r in refs]
        return ShardedStats(backends, names=names, on_error=on_error, corpus_id=cid, max_workers=max_workers)
    except BaseException:
        for b in backends:
            b.close()
        raise


class ShardedStats(CorpusStats):
    """Counts of a document-partitioned corpus: the sum of its parts' (see the module docs).

    Args:
        shards: one backend per part, in any order (each should raise on failure).
        names: what to call each shard in messages (default: its URL or directory).
        on_error: ``"raise"``, ``"open"`` or ``"closed"`` when a part fails.
        corpus_id: the corpus the parts must belong to (``None``: whichever
            the first part that answers says).
        max_workers: parts queried at once (default: all).
        check: check that the parts form one corpus before using them.

    Raises:
        ShardSetError: the parts do not form one corpus.
        BackendUnavailableError: with ``on_error="raise"``, a part is down.
    """

    def __init__(
        self,
        shards: Sequence[CorpusStats],
        *,
        names: Sequence[str] | None = None,
        on_error: OnError = "raise",
        corpus_id: str | None = None,
        max_workers: int | None = None,
        check: bool = True,
    ) -> None:
        if not shards:
            raise BadInputError("a sharded corpus needs at least one shard")
        if on_error not in ("raise", "open", "closed"):
            raise BadInputError(f"on_error must be 'raise', 'open' or 'closed', not {on_error!r}")
        self.shards = list(shards)
        self.names = list(names) if names is not None else [_name(s, i) for i, s in enumerate(shards)]
        if len(self.names) != len(self.shards):
            raise BadInputError("one name per shard")
        self.on_error: OnError = on_error
        self.corpus_id = corpus_id
        self.max_workers = max_workers or len(self.shards)
        #: degraded answers given so far (fail-open / fail-closed)
        self.errors: list[BackendFailure] = []
        self._infos: list[CorpusInfo | None] = [None] * len(self.shards)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=self.max_workers, thread_name_prefix="quco-shards")
        self._check = check
        if check:
            self._check_all()

    # ------------------------------------------------------------- the set

    def label(self, k: int) -> str:
        """How messages name shard ``k``: ``shard 2 of 3 (URL)``."""
        return f"shard {k + 1} of {len(self.shards)} ({self.names[k]})"

    def _check_all(self) -> None:
        def one(k: int) -> None:
            try:
                self._verify(k)
            except BackendUnavailableError as exc:
                if self.on_error == "raise":
                    raise BackendUnavailableError(f"{self.label(k)}: {exc}") from exc
                log.warning("%s is down; it is checked when it answers: %s", self.label(k), exc)

        for f in [self._pool.submit(one, k) for k in range(len(self.shards))]:
            f.result()

    def _verify(self, k: int) -> None:
        """Check that shard ``k`` belongs with the parts seen so far (once per shard)."""
        if not self._check or self._infos[k] is not None:
            return
        info = info_of(self.shards[k], self.label(k))
        n = len(self.shards)
        with self._lock:
            if info.corpus_id is None:
                raise ShardSetError(
                    f"{self.label(k)} holds a whole corpus, not a part of one split by documents "
                    "(build the parts with 'quco index build --split N')"
                )
            if info.parts != n:
                raise ShardSetError(
                    f"{self.label(k)} is part {info.part + 1} of {info.parts} of corpus {info.corpus_id}, "
                    f"but {n} shards were given: every part, and only those, is needed"
                )
            want = self.corpus_id
            if want is not None and info.corpus_id != want:
                raise ShardSetError(
                    f"{self.label(k)} is a part of corpus {info.corpus_id}, not of {want}: "
                    "these shards do not form one corpus"
                )
            for j, other in enumerate(self._infos):
                if other is None:
                    continue
                if other.part == info.part:
                    raise ShardSetError(
                        f"{self.label(k)} and {self.label(j)} are both part {info.part + 1} of {n}: "
                        "a part is given twice (and another is missing)"
                    )
                if other.vocab_sha256 != info.vocab_sha256 or other.casefold != info.casefold:
                    raise ShardSetError(
                        f"{self.label(k)} and {self.label(j)} count with different tokenizers or case matching"
                    )
            self.corpus_id = info.corpus_id
            self._infos[k] = info

    @property
    def identity(self) -> str:
        """What identifies the answers (cache key): the parts' identities, in order."""
        from quco.corpus.cache import backend_identity

        return "shards[" + ";".join(backend_identity(s) for s in self.shards) + "]"

    @property
    def infos(self) -> list[CorpusInfo | None]:
        """What each part said it holds (``None``: not checked yet)."""
        return list(self._infos)

    # ------------------------------------------------------------- queries

    def count(self, term: str) -> Count:
        """Occurrences of ``term``: the sum over the parts."""
        return self._fan(lambda s: [s.count(term)], 1, term)[0]

    def cooccur(
        self, a: str, b: str, *, window: int | None = DEFAULT_WINDOW, mode: CoocMode = "window"
    ) -> Count:
        """Co-occurrence of ``a`` and ``b``: the sum over the parts (exact, see the module docs)."""
        return self._fan(lambda s: [s.cooccur(a, b, window=window, mode=mode)], 1, f"{a} AND {b}")[0]

    def count_many(self, terms: Sequence[str]) -> list[Count]:
        """Batched :meth:`count`: one batched query per part, all parts at once."""
        terms = list(terms)
        if not terms:
            return []
        return self._fan(lambda s: s.count_many(terms), len(terms), ", ".join(terms[:3]))

    def cooccur_many(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        window: int | None = DEFAULT_WINDOW,
        mode: CoocMode = "window",
    ) -> list[Count]:
        """Batched :meth:`cooccur`: one batched query per part, all parts at once."""
        pairs = list(pairs)
        if not pairs:
            return []
        what = ", ".join(f"{a} AND {b}" for a, b in pairs[:3])
        return self._fan(lambda s: s.cooccur_many(pairs, window=window, mode=mode), len(pairs), what)

    def _fan(self, call: Callable[[CorpusStats], list[Count]], n: int, what: str) -> list[Count]:
        """``call`` on every part in parallel; the element-wise sums, or the failure handling."""

        def one(k: int) -> list[Count]:
            self._verify(k)
            out = call(self.shards[k])
            bad = next((c for c in out if isinstance(c, DegradedCount)), None)
            if bad is not None:  # a shard backend that degrades by itself
                raise BackendUnavailableError(bad.error or "degraded answer")
            return out

        futures = [self._pool.submit(one, k) for k in range(len(self.shards))]
        answers: list[list[Count]] = []
        failed: list[str] = []
        first_exc: BaseException | None = None
        for k, f in enumerate(futures):
            try:
                answers.append(f.result())
            except (BackendUnavailableError, EngineError) as exc:
                failed.append(f"{self.label(k)}: {exc}")
                first_exc = first_exc or exc
        if failed:
            msg = "; ".join(failed)
            if self.on_error == "raise":
                cls = type(first_exc) if isinstance(first_exc, QucoError) else BackendUnavailableError
                raise cls(msg) from first_exc
            value = FAIL_OPEN_COUNT if self.on_error == "open" else 0
            degraded = DegradedCount(value, True, msg)
            with self._lock:
                self.errors.append(BackendFailure(what, msg, degraded))
            log.warning("sharded corpus: %s: answering %d", msg, value)
            return [degraded] * n
        return [
            Count(sum(int(a[i].value) for a in answers), any(a[i].approx for a in answers)) for i in range(n)
        ]

    def close(self) -> None:
        """Close every part and the query threads."""
        self._pool.shutdown(wait=False)
        for s in self.shards:
            s.close()


def _name(stats: CorpusStats, i: int) -> str:
    for attr in ("url", "index_dir"):
        v = getattr(stats, attr, None)
        if v:
            return str(v)
    return f"shard{i}"
