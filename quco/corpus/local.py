"""Exact corpus statistics from a local quco index (infini-gram suffix arrays)."""

from __future__ import annotations

import bisect
import json
import mmap
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from quco._deps import require
from quco.corpus._tokenize import cached_tokenizer, encode_ids
from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.corpus.cnf import DocumentMap, Occurrences, check_mode, cooccurrence
from quco.corpus.manifest import Manifest
from quco.errors import BadInputError, EngineError, TokenizerMismatchError
from quco.types import Count

#: suffix-array pointer widths (bytes) read straight from the memory-mapped table
_PTR_DTYPES: dict[int, np.dtype[Any]] = {4: np.dtype("<u4"), 8: np.dtype("<u8")}
#: terms whose occurrence arrays are kept between calls
_CACHE_TERMS = 64
#: token sequences whose suffix-array ranges are kept between calls
_CACHE_FINDS = 8192


def _map(path: Path) -> mmap.mmap:
    """A read-only memory map of a whole (non-empty) file."""
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


class LocalStats(CorpusStats):
    """Counts and exact co-occurrences from a local quco index.

    Term matching: a term matches its word-initial form (``" Paris"``,
    tokenized with a leading space) and its document/sentence-initial form
    (``"Paris"``, tokenized without one, as at a document start or after
    punctuation with no space, e.g. "century.First"). The distinct token
    sequences of these forms (one if both tokenize alike) are the term's
    variants; counts are summed over them. With ``casefold=True`` the
    lower-case, upper-case and capitalised spellings are variants too. Matching
    is on token sequences: ``" Paris"`` also matches the start of
    ``" Parisian"`` when the tokenizer splits it as ``" Paris" + "ian"``.

    Counts are exact: the suffix-array range of a token sequence, found by
    a binary search over infini-gram's table in this process (the same
    ranges as the engine's ``find``, which :meth:`find_ids` still calls;
    the engine starts threads per call, slow on a busy machine).
    Co-occurrence (:meth:`cooccur`, and :meth:`count_cnf` for AND/OR queries)
    is counted exactly from suffix-array positions by :mod:`quco.corpus.cnf`
    (never with the engine's approximate ``count_cnf``): ``mode="doc"`` counts
    documents holding both terms, ``mode="window"`` the (occurrence of a,
    occurrence of b) pairs in one document at most ``window`` tokens apart
    (``window=None`` means ``"doc"``).

    Occurrence cap: when a term has more than ``max_occurrences`` occurrences,
    a uniform sample of that many (seeded with ``seed``, so repeatable) is
    used and the result is scaled by the inverse sampling fractions and marked
    ``approx=True``; an estimate of 0 is then not proof of absence.

    Caches: suffix-array ranges of up to 8,192 token sequences and the
    occurrence arrays of the 64 most recent terms are kept, so a term queried
    again (a head entity paired with several tails) costs no engine call.
    The instance is safe to share between threads.

    Args:
        index_dir: the index directory (holding ``quco-index.json``).
        tokenizer: tokenizer name or path; None uses the manifest's. One whose
            vocabulary differs from the index's raises TokenizerMismatchError.
        casefold: also count case variants of each term.
        max_occurrences: occurrences of one term read before sampling.
        seed: seed of that sampling.

    Raises:
        IndexNotFoundError: no directory or no manifest.
        CorruptIndexError: a bad manifest or a missing/truncated file.
        TokenizerMismatchError: the tokenizer's vocabulary differs from the index's.
    """

    def __init__(
        self,
        index_dir: str | Path,
        *,
        tokenizer: str | None = None,
        casefold: bool = False,
        max_occurrences: int = 100_000,
        seed: int = 0,
    ) -> None:
        if max_occurrences < 1:
            raise BadInputError("max_occurrences must be positive")
        self.index_dir = Path(index_dir)
        self.manifest: Manifest = Manifest.load(self.index_dir)
        m = self.manifest
        name = tokenizer if tokenizer is not None else m.tokenizer
        self.tokenizer: Any
        self.tokenizer, vhash = cached_tokenizer(name)
        if vhash != m.vocab_sha256:
            raise TokenizerMismatchError(
                f"tokenizer {name!r} does not match the index {self.index_dir}, "
                f"which was built with {m.tokenizer!r} (vocabularies differ)"
            )
        self.casefold = casefold
        self.max_occurrences = int(max_occurrences)
        self.seed = int(seed)
        engine_mod = require("infini_gram.engine")
        try:
            self._engine: Any = engine_mod.InfiniGramEngine(
                index_dir=str(self.index_dir),
                eos_token_id=m.eos_token_id,
                vocab_size=m.vocab_size,
                token_dtype=m.token_dtype,
            )
        except (AssertionError, RuntimeError, ValueError) as exc:
            raise EngineError(f"infini-gram cannot load {self.index_dir}: {exc}") from exc
        w = m.token_width
        self._width = w
        d = self.index_dir
        self._ptr_size = [s.files["table"] // (s.tokens + s.documents) for s in m.shards]
        self._tables = [
            np.memmap(d / f"table.{s.index}", dtype=_PTR_DTYPES.get(p, np.dtype(np.uint8)), mode="r")
            for s, p in zip(m.shards, self._ptr_size, strict=True)
        ]
        self._offsets = [np.memmap(d / f"offset.{s.index}", dtype="<u8", mode="r") for s in m.shards]
        # global byte offsets: shard s's bytes follow those of the shards before it
        self._byte_base = np.cumsum([0] + [s.files["tokenized"] for s in m.shards]).astype(np.int64)
        #: start of every document in global bytes, in memory, plus the end of the last shard
        self._goff = np.concatenate(
            [np.asarray(o, dtype=np.int64) + self._byte_base[i] for i, o in enumerate(self._offsets)]
            + [self._byte_base[-1:]]
        )
        #: global byte offsets -> global document indexes
        self._doc_of = DocumentMap(self._goff)
        self._ds = [
            np.memmap(d / f"tokenized.{s.index}", dtype="<u2" if w == 2 else "<u4", mode="r")
            for s in m.shards
        ]
        self._metaoff = [np.memmap(d / f"metaoff.{s.index}", dtype="<u8", mode="r") for s in m.shards]
        self._meta = [
            np.memmap(d / f"metadata.{s.index}", dtype=np.uint8, mode="r") if s.files["metadata"] else None
            for s in m.shards
        ]
        self._doc_base = np.cumsum([0] + [s.documents for s in m.shards])
        # plain memory maps for the suffix-array binary search (see _search)
        self._tok_dtype = np.dtype("<u2" if w == 2 else "<u4")
        self._ds_mm = [_map(d / f"tokenized.{s.index}") for s in m.shards]
        self._tab_mm = [_map(d / f"table.{s.index}") for s in m.shards]
        self._tab_mv: list[memoryview | None] = [
            memoryview(t).cast("I" if p == 4 else "Q") if p in _PTR_DTYPES else None
            for t, p in zip(self._tab_mm, self._ptr_size, strict=True)
        ]
        self._variant_cache: dict[str, list[list[int]]] = {}
        self._find_cache: dict[tuple[int, ...], tuple[int, list[tuple[int, int]]]] = {}
        self._occ_cache: OrderedDict[tuple[int, tuple[tuple[int, ...], ...]], Occurrences] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ terms

    def variants(self, term: str) -> list[list[int]]:
        """Token-id sequences of the surface forms of ``term`` (see the class docstring)."""
        t = term.strip() if isinstance(term, str) else ""
        if not t:
            raise BadInputError(f"empty term: {term!r}")
        key = t
        cached = self._variant_cache.get(key)
        if cached is not None:
            return [list(v) for v in cached]
        spellings = [t]
        if self.casefold:
            for s in (t.lower(), t[:1].upper() + t[1:], t[:1].upper() + t[1:].lower(), t.title(), t.upper()):
                if s not in spellings:
                    spellings.append(s)
        forms = [f for s in spellings for f in (" " + s, s)]
        enc = encode_ids(self.tokenizer, forms)
        out: list[list[int]] = []
        for ids in enc:
            ids = [int(i) for i in ids]
            if ids and ids not in out:
                out.append(ids)
        if not out:
            raise BadInputError(f"term {term!r} has no tokens")
        if len(self._variant_cache) > 10_000:
            self._variant_cache.clear()
        self._variant_cache[key] = out
        return [list(v) for v in out]

    # ----------------------------------------------------------------- engine

    def _check_ids(self, ids: Sequence[int]) -> list[int]:
        try:
            q = [int(i) for i in ids]
        except (TypeError, ValueError) as exc:
            raise BadInputError(f"token ids must be integers: {exc}") from exc
        if not q:
            raise BadInputError("empty token sequence")
        if any(i < 0 or i >= self.manifest.vocab_size for i in q):
            raise BadInputError(f"token ids must be in [0, {self.manifest.vocab_size})")
        return q

    def find_ids(self, ids: Sequence[int]) -> tuple[int, list[tuple[int, int]]]:
        """Engine ``find`` of one token sequence.

        Returns:
            (count, [(start, end) suffix-array range per shard]).
        """
        q = self._check_ids(ids)
        key = tuple(q)
        with self._lock:
            hit = self._find_cache.get(key)
        if hit is not None:
            return hit[0], list(hit[1])
        res = self._engine.find(input_ids=q)
        if "error" in res:
            raise EngineError(f"infini-gram: {res['error']}")
        found = (int(res["cnt"]), [(int(a), int(b)) for a, b in res["segment_by_shard"]])
        with self._lock:
            if len(self._find_cache) >= _CACHE_FINDS:
                self._find_cache.clear()
            self._find_cache[key] = found
        return found[0], list(found[1])

    def tokenize_many(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text in the index's tokenizer, with a leading space (as inside a document)."""
        if not texts:
            return []
        enc = encode_ids(self.tokenizer, [" " + t.strip() for t in texts])
        return [[int(i) for i in ids] if t.strip() else [] for t, ids in zip(texts, enc, strict=True)]

    def count_ids_many(self, seqs: Sequence[Sequence[int]]) -> list[int]:
        """Exact counts of token sequences (the n-gram lookups of :mod:`quco.corpus.ngrams`)."""
        return [self._find(s)[0] for s in seqs]

    def count_ids(self, ids: Sequence[int]) -> Count:
        """Exact count of one token sequence (see :meth:`_find`)."""
        return Count(self._find(ids)[0], False)

    def _find(self, ids: Sequence[int]) -> tuple[int, list[tuple[int, int]]]:
        """:meth:`find_ids`, answered by :meth:`_search` instead of the engine.

        Both share one cache and give the same ranges (a test checks it); the
        engine's ``find`` starts a thread per shard and call, which costs more
        than the search itself on a busy machine.
        """
        q = self._check_ids(ids)
        key = tuple(q)
        with self._lock:
            hit = self._find_cache.get(key)
        if hit is not None:
            return hit[0], list(hit[1])
        ranges = [self._search(s, q) for s in range(len(self._tab_mm))]
        found = (sum(b - a for a, b in ranges), ranges)
        with self._lock:
            if len(self._find_cache) >= _CACHE_FINDS:
                self._find_cache.clear()
            self._find_cache[key] = found
        return found[0], list(ranges)

    def _search(self, shard: int, q: list[int]) -> tuple[int, int]:
        """Suffix-array range ``[lo, hi)`` of the suffixes of a shard that start with ``q``.

        Two binary searches over the table, comparing the query's bytes with
        each suffix's first bytes (the order the suffix array is sorted in:
        bytewise, a suffix that is a proper prefix of the query sorting
        before it).
        """
        qb = np.asarray(q, dtype=self._tok_dtype).tobytes()
        n = len(qb)
        ds = self._ds_mm[shard]
        tab = self._tab_mv[shard]
        if tab is not None:

            def key(r: int) -> bytes:
                ptr = tab[r]
                return ds[ptr : ptr + n]

        else:
            raw, p = self._tab_mm[shard], self._ptr_size[shard]

            def key(r: int) -> bytes:
                ptr = int.from_bytes(raw[r * p : r * p + p], "little")
                return ds[ptr : ptr + n]

        ranks = range(len(self._tab_mm[shard]) // self._ptr_size[shard])
        lo = bisect.bisect_left(ranks, qb, key=key)
        hi = bisect.bisect_right(ranks, qb, lo=lo, key=key)
        return lo, hi

    # -------------------------------------------------------------- positions

    def _read_ptrs(self, shard: int, start: int, end: int) -> np.ndarray:
        """Byte offsets stored in suffix-array entries ``[start, end)`` of a shard.

        The range is one contiguous slice of the table: with 4- or 8-byte
        pointers a zero-copy view of the memory map (uint32 or uint64).
        """
        p = self._ptr_size[shard]
        table = self._tables[shard]
        if p in _PTR_DTYPES:
            return np.asarray(table[start:end])
        return self._to_int(np.asarray(table[start * p : end * p]).reshape(-1, p), p)

    def _read_ptrs_at(self, shard: int, ranks: np.ndarray) -> np.ndarray:
        p = self._ptr_size[shard]
        table = self._tables[shard]
        if p in _PTR_DTYPES:
            return np.asarray(table[ranks.astype(np.int64)])
        idx = ranks.astype(np.int64)[:, None] * p + np.arange(p, dtype=np.int64)
        return self._to_int(np.asarray(table[idx.ravel()]).reshape(-1, p), p)

    @staticmethod
    def _to_int(raw: np.ndarray, p: int) -> np.ndarray:
        """Little-endian ``p``-byte integers (rows of ``raw``) as uint32 (p < 4) or uint64."""
        width = 4 if p < 4 else 8
        buf = np.zeros((raw.shape[0], width), dtype=np.uint8)
        buf[:, :p] = raw
        return buf.view("<u4" if width == 4 else "<u8").ravel()

    def _segments(self, variants: list[list[int]]) -> tuple[int, list[tuple[int, int, int]]]:
        total = 0
        segs: list[tuple[int, int, int]] = []
        for v in variants:
            cnt, by_shard = self._find(v)
            total += cnt
            segs.extend((s, a, b) for s, (a, b) in enumerate(by_shard) if b > a)
        return total, segs

    def _gather(self, segs: list[tuple[int, int, int]], total: int, limit: int) -> tuple[np.ndarray, float]:
        """Sorted global byte offsets (int64) of the occurrences in ``segs``.

        All of them, or a seeded uniform sample of ``limit`` when there are
        more. Returns the offsets and the sampled fraction.
        """
        by_shard: dict[int, list[np.ndarray]] = {}
        if total <= limit:
            fraction = 1.0
            for s, a, b in segs:
                by_shard.setdefault(s, []).append(self._read_ptrs(s, a, b))
        else:
            fraction = limit / total
            rng = np.random.default_rng(self.seed)
            picks = np.sort(rng.choice(total, size=limit, replace=False))
            lengths = np.array([b - a for _, a, b in segs], dtype=np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths)])
            bounds = np.searchsorted(picks, starts)
            for i, (s, a, _b) in enumerate(segs):
                sel = picks[bounds[i] : bounds[i + 1]] - starts[i] + a
                if sel.size:
                    by_shard.setdefault(s, []).append(self._read_ptrs_at(s, sel))
        parts = []
        for s in sorted(by_shard):
            chunks = by_shard[s]
            # sort in the table's own (narrow) dtype, then widen: sorted offsets are
            # sorted by (document, position) within a shard, and shards follow each other
            ptrs = np.concatenate(chunks) if len(chunks) > 1 else chunks[0].copy()
            ptrs.sort()
            g = ptrs.astype(np.int64)
            if s:
                g += self._byte_base[s]
            parts.append(g)
        ptrs = np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.empty(0, np.int64)
        return ptrs, fraction

    def _occurrences(self, variants: list[list[int]], limit: int | None = None) -> Occurrences:
        """Occurrences of all ``variants`` together, sampled beyond ``min(limit, max_occurrences)``."""
        cap = self.max_occurrences if limit is None else max(1, min(int(limit), self.max_occurrences))
        key = (cap, tuple(tuple(v) for v in variants))
        with self._lock:
            hit = self._occ_cache.get(key)
            if hit is not None:
                self._occ_cache.move_to_end(key)
                return hit
        total, segs = self._segments(variants)
        ptrs, fraction = self._gather(segs, total, cap)
        occ = Occurrences(ptrs=ptrs, total=total, fraction=fraction)
        with self._lock:
            self._occ_cache[key] = occ
            while len(self._occ_cache) > _CACHE_TERMS:
                self._occ_cache.popitem(last=False)
        return occ

    def occurrences(self, ids: Sequence[int], limit: int | None = None) -> list[tuple[int, int, int]]:
        """Occurrences of one token sequence as (shard, doc_index, token_pos_in_doc), sorted.

        Args:
            ids: the token sequence.
            limit: at most this many; beyond it a seeded uniform sample of
                ``limit`` occurrences is returned.
        """
        total, segs = self._segments([self._check_ids(ids)])
        cap = total if limit is None else max(0, int(limit))
        if cap == 0:
            return []
        ptrs, _ = self._gather(segs, total, cap)
        gdoc = self._doc_of(ptrs)
        shard = np.searchsorted(self._doc_base, gdoc, side="right") - 1
        pos = (ptrs - self._goff[gdoc]) // self._width - 1
        out = list(zip(shard.tolist(), (gdoc - self._doc_base[shard]).tolist(), pos.tolist(), strict=True))
        return out  # offsets are sorted, so (shard, doc, pos) are too

    # ------------------------------------------------------------------ stats

    def count(self, term: str) -> Count:
        """Occurrences of ``term``: the engine's exact count summed over its variants."""
        return self._count_variants(self.variants(term))

    def _count_variants(self, variants: list[list[int]]) -> Count:
        value, approx = 0, False
        for v in variants:
            c = self.count_ids(v)
            value += c.value
            approx = approx or c.approx
        return Count(value, approx)

    def count_many(self, terms: Sequence[str]) -> list[Count]:
        """Batched :meth:`count` (each distinct term is counted once)."""
        done: dict[str, Count] = {}
        for t in terms:
            if t not in done:
                done[t] = self.count(t)
        return [done[t] for t in terms]

    def cooccur(
        self, a: str, b: str, *, window: int | None = DEFAULT_WINDOW, mode: CoocMode = "window"
    ) -> Count:
        """Exact co-occurrence of ``a`` and ``b`` (see the class docstring)."""
        return self.cooccur_variants(self.variants(a), self.variants(b), window=window, mode=mode)

    def cooccur_many(
        self,
        pairs: Sequence[tuple[str, str]],
        *,
        window: int | None = DEFAULT_WINDOW,
        mode: CoocMode = "window",
    ) -> list[Count]:
        """Batched :meth:`cooccur`: each distinct term's occurrences are read once."""
        occ: dict[str, Occurrences] = {}
        out = []
        for a, b in pairs:
            for t in (a, b):
                if t not in occ:
                    occ[t] = self._occurrences(self.variants(t))
            out.append(self._combine(occ[a], occ[b], window=window, mode=mode))
        return out

    def cooccur_variants(
        self, a: list[list[int]], b: list[list[int]], *, window: int | None, mode: str
    ) -> Count:
        """Co-occurrence of two terms given as lists of token-id variants."""
        check_mode(window, mode)
        if not a or not b:
            raise BadInputError("each term needs at least one token sequence")
        return self._combine(self._occurrences(a), self._occurrences(b), window=window, mode=mode)

    def count_cnf(
        self,
        clauses: Sequence[Sequence[Sequence[int]]],
        *,
        window: int | None,
        mode: str = "window",
        max_clause_freq: int | None = None,
    ) -> Count:
        """Count of a CNF query: an AND of clauses, each an OR of token sequences.

        One clause: the sum of its sequences' exact counts. Several clauses:
        their co-occurrence (:func:`quco.corpus.cnf.cooccurrence`: documents
        holding every clause, or one occurrence of each clause within
        ``window`` tokens). A clause with more occurrences than
        ``max_clause_freq`` (or ``max_occurrences``) is sampled and the
        count is an estimate marked ``approx``.

        Raises:
            BadInputError: no clause, an empty clause, a bad token id, mode or window.
        """
        check_mode(window, mode)
        if not clauses or any(not c for c in clauses):
            raise BadInputError("a CNF query needs at least one clause, each with at least one term")
        checked = [[self._check_ids(seq) for seq in clause] for clause in clauses]
        if len(checked) == 1:
            return self._count_variants(checked[0])
        occs = [self._occurrences(c, max_clause_freq) for c in checked]
        return cooccurrence(
            occs, goff=self._goff, doc_of=self._doc_of, width=self._width, window=window, mode=mode
        )

    def _combine(self, oa: Occurrences, ob: Occurrences, *, window: int | None, mode: str) -> Count:
        """Co-occurrence of two occurrence sets (:func:`quco.corpus.cnf.cooccurrence`)."""
        return cooccurrence(
            [oa, ob], goff=self._goff, doc_of=self._doc_of, width=self._width, window=window, mode=mode
        )

    # -------------------------------------------------------------- documents

    def get_doc(self, shard: int, doc_index: int) -> tuple[list[int], dict]:
        """Token ids (separator excluded) and metadata of one document.

        The metadata is ``{"path": FILE, "line": N, "metadata": {...}}``.
        """
        if not 0 <= shard < len(self.manifest.shards):
            raise BadInputError(f"shard must be in [0, {len(self.manifest.shards)})")
        off = self._offsets[shard]
        if not 0 <= doc_index < off.shape[0]:
            raise BadInputError(f"doc_index must be in [0, {off.shape[0]}) for shard {shard}")
        ds = self._ds[shard]
        start = int(off[doc_index]) // self._width + 1
        end = int(off[doc_index + 1]) // self._width if doc_index + 1 < off.shape[0] else ds.shape[0]
        ids = np.asarray(ds[start:end]).astype(np.int64).tolist()
        meta: dict = {}
        mt = self._meta[shard]
        if mt is not None:
            mo = self._metaoff[shard]
            a = int(mo[doc_index])
            b = int(mo[doc_index + 1]) if doc_index + 1 < mo.shape[0] else mt.shape[0]
            try:
                meta = json.loads(bytes(mt[a:b]).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                meta = {}
        return ids, meta

    def decode(self, ids: Sequence[int]) -> str:
        """Text of a token sequence."""
        return str(self.tokenizer.decode([int(i) for i in ids]))

    def close(self) -> None:
        """Release the engine and the memory maps."""
        self._engine = None
        self._tables, self._offsets, self._ds, self._metaoff, self._meta = [], [], [], [], []
        self._ds_mm, self._tab_mm, self._tab_mv = [], [], []
        self._occ_cache.clear()
        self._find_cache.clear()

    def __enter__(self) -> LocalStats:
        return self
