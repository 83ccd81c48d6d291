"""Exact corpus statistics from a local quco index (infini-gram suffix arrays)."""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quco._deps import require
from quco.corpus._tokenize import cached_tokenizer, encode_ids
from quco.corpus.base import DEFAULT_WINDOW, CoocMode, CorpusStats
from quco.corpus.manifest import Manifest
from quco.errors import BadInputError, EngineError, TokenizerMismatchError
from quco.types import Count

#: positions within a document are packed below this bit of a 64-bit key
_POS_BITS = 32
_MAX_WINDOW = (1 << 31) - 1
#: terms whose occurrence arrays are kept between calls
_CACHE_TERMS = 64
#: token sequences whose suffix-array ranges are kept between calls
_CACHE_FINDS = 8192


@dataclass(frozen=True)
class _Occurrences:
    """Occurrences of one term (all its variants), possibly a uniform sample.

    ``keys`` are sorted ``global_doc << 32 | token_pos`` values; ``total`` is the
    true number of occurrences and ``fraction`` the sampled share (1.0 = all).
    """

    keys: np.ndarray
    total: int
    fraction: float

    @property
    def sampled(self) -> bool:
        return self.fraction < 1.0

    def docs(self) -> np.ndarray:
        d = self.keys >> _POS_BITS
        if d.size == 0:
            return d
        keep = np.empty(d.size, dtype=bool)
        keep[0] = True
        np.not_equal(d[1:], d[:-1], out=keep[1:])
        return d[keep]


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

    Counts come from infini-gram's engine (``find``) and are exact.
    Co-occurrence is counted exactly from suffix-array positions (never with
    the engine's approximate ``count_cnf``): each occurrence is mapped to its
    document and token position, then

    - ``mode="doc"``: the number of documents containing both terms;
    - ``mode="window"``: the number of (occurrence of a, occurrence of b) pairs
      in the same document whose start positions differ by at most ``window``
      tokens (``window=None`` means ``"doc"``).

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
        self._tables = [np.memmap(d / f"table.{s.index}", dtype=np.uint8, mode="r") for s in m.shards]
        self._ptr_size = [s.files["table"] // (s.tokens + s.documents) for s in m.shards]
        self._offsets = [np.memmap(d / f"offset.{s.index}", dtype="<u8", mode="r") for s in m.shards]
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
        self._variant_cache: dict[str, list[list[int]]] = {}
        self._find_cache: dict[tuple[int, ...], tuple[int, list[tuple[int, int]]]] = {}
        self._occ_cache: OrderedDict[tuple[tuple[int, ...], ...], _Occurrences] = OrderedDict()
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

    def count_ids(self, ids: Sequence[int]) -> Count:
        """Exact engine count of one token sequence."""
        return Count(self.find_ids(ids)[0], False)

    # -------------------------------------------------------------- positions

    def _read_ptrs(self, shard: int, start: int, end: int) -> np.ndarray:
        """Byte offsets stored in suffix-array entries ``[start, end)`` of a shard."""
        p = self._ptr_size[shard]
        raw = np.asarray(self._tables[shard][start * p : end * p]).reshape(-1, p)
        return self._to_u64(raw, p)

    def _read_ptrs_at(self, shard: int, ranks: np.ndarray) -> np.ndarray:
        p = self._ptr_size[shard]
        idx = ranks.astype(np.int64)[:, None] * p + np.arange(p, dtype=np.int64)
        raw = np.asarray(self._tables[shard][idx.ravel()]).reshape(-1, p)
        return self._to_u64(raw, p)

    @staticmethod
    def _to_u64(raw: np.ndarray, p: int) -> np.ndarray:
        if p == 8:
            return np.ascontiguousarray(raw).view("<u8").ravel()
        buf = np.zeros((raw.shape[0], 8), dtype=np.uint8)
        buf[:, :p] = raw
        return buf.view("<u8").ravel()

    def _locate(self, shard: int, ptrs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(document index within the shard, token position within the document) of byte offsets."""
        off = self._offsets[shard]
        doc = np.searchsorted(off, ptrs, side="right").astype(np.int64) - 1
        pos = (ptrs.astype(np.int64) - np.asarray(off[doc], dtype=np.int64)) // self._width - 1
        return doc, pos

    def _segments(self, variants: list[list[int]]) -> tuple[int, list[tuple[int, int, int]]]:
        total = 0
        segs: list[tuple[int, int, int]] = []
        for v in variants:
            cnt, by_shard = self.find_ids(v)
            total += cnt
            segs.extend((s, a, b) for s, (a, b) in enumerate(by_shard) if b > a)
        return total, segs

    def _gather(self, segs: list[tuple[int, int, int]], total: int, limit: int) -> tuple[np.ndarray, float]:
        """Sorted keys (``global_doc << 32 | pos``) of the occurrences in ``segs``.

        All of them, or a seeded uniform sample of ``limit`` when there are
        more. Returns the keys and the sampled fraction.
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
            seg_of = np.searchsorted(starts, picks, side="right") - 1
            for i, (s, a, _b) in enumerate(segs):
                sel = picks[seg_of == i] - starts[i] + a
                if sel.size:
                    by_shard.setdefault(s, []).append(self._read_ptrs_at(s, sel))
        parts = []
        for s in sorted(by_shard):
            # sorting byte offsets sorts by (document, position) within a shard, and makes
            # searchsorted over the document offsets ~10x faster than on unsorted pointers
            ptrs = np.sort(np.concatenate(by_shard[s]))
            doc, pos = self._locate(s, ptrs)
            parts.append(((doc + int(self._doc_base[s])) << _POS_BITS) | pos)
        keys = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        return keys, fraction

    def _occurrences(self, variants: list[list[int]]) -> _Occurrences:
        key = tuple(tuple(v) for v in variants)
        with self._lock:
            hit = self._occ_cache.get(key)
            if hit is not None:
                self._occ_cache.move_to_end(key)
                return hit
        total, segs = self._segments(variants)
        keys, fraction = self._gather(segs, total, self.max_occurrences)
        occ = _Occurrences(keys=keys, total=total, fraction=fraction)
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
        keys, _ = self._gather(segs, total, cap)
        gdoc = keys >> _POS_BITS
        shard = np.searchsorted(self._doc_base, gdoc, side="right") - 1
        out = list(
            zip(
                shard.tolist(),
                (gdoc - self._doc_base[shard]).tolist(),
                (keys & ((1 << _POS_BITS) - 1)).tolist(),
                strict=True,
            )
        )
        return out  # keys are sorted, so (shard, doc, pos) are too

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
        occ: dict[str, _Occurrences] = {}
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
        self._check_mode(window, mode)
        if not a or not b:
            raise BadInputError("each term needs at least one token sequence")
        return self._combine(self._occurrences(a), self._occurrences(b), window=window, mode=mode)

    @staticmethod
    def _check_mode(window: int | None, mode: str) -> None:
        if mode not in ("doc", "window"):
            raise BadInputError(f"mode must be 'doc' or 'window', not {mode!r}")
        if window is not None and (not isinstance(window, int | np.integer) or window < 0):
            raise BadInputError(f"window must be a non-negative integer, not {window!r}")

    def _combine(self, oa: _Occurrences, ob: _Occurrences, *, window: int | None, mode: str) -> Count:
        self._check_mode(window, mode)
        approx = oa.sampled or ob.sampled
        if oa.keys.size == 0 or ob.keys.size == 0:
            return Count(0, approx)
        if mode == "doc" or window is None:
            da, db = oa.docs(), ob.docs()
            if da.size > db.size:
                da, db = db, da
            idx = np.searchsorted(db, da)
            idx[idx == db.size] = 0
            raw = int(np.count_nonzero(db[idx] == da))
            if not approx:
                return Count(raw, False)
            est = raw / (oa.fraction * ob.fraction)
            cap = min(oa.total, ob.total, int(self._doc_base[-1]))
            return Count(int(min(round(est), cap)), True)
        w = min(int(window), _MAX_WINDOW)
        qa, qb = (oa.keys, ob.keys) if oa.keys.size <= ob.keys.size else (ob.keys, oa.keys)
        hi = np.searchsorted(qb, qa + w, side="right")
        lo = np.searchsorted(qb, qa - w, side="left")
        raw = int((hi - lo).sum())
        if not approx:
            return Count(raw, False)
        return Count(int(round(raw / (oa.fraction * ob.fraction))), True)

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
        self._occ_cache.clear()
        self._find_cache.clear()

    def __enter__(self) -> LocalStats:
        return self
