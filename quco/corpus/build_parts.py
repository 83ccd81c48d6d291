"""Index builds cut into independent shard tasks: split by documents for several servers, or run on Ray.

``quco index build`` streams a corpus into shards in one process
(:func:`quco.corpus.build.build_index`). This module cuts the same build into
tasks that need nothing from each other, so that they can run anywhere:

1. **plan** (this process): documents are read in corpus order; document
   ``i`` goes to part ``i mod parts`` (``--split``; one part without it), and
   each part's documents are cut into shard tasks of about ``shard_size``
   tokens (estimated from the characters per token of the first documents);
2. **build one shard** (:func:`build_shard`, a task): tokenize the task's
   documents, write the shard's files, build its suffix array
   (:func:`quco.corpus.build.build_shard_table`);
3. **finish** (this process, once, at the end): each part's manifest is
   written, with its :class:`~quco.corpus.manifest.Partition` when the corpus
   is split, and a shard map (``shards.json``) listing the parts; then the
   whole output folder is renamed into place, atomically.

Engines: ``local`` runs the tasks one after the other here; ``ray`` runs them
in parallel as Ray tasks (at most two per worker in flight, so the corpus
streams through), on a local Ray runtime or a cluster (``--address``; every
node must write the output folder's parent at the same path). Both give
indexes with the same counts as ``build_index`` (tested); shard boundaries
differ, being estimated.

Layout of a split build (``parts > 1``)::

    OUT/part-0/   OUT/part-1/ ...   # complete quco indexes, one per server
    OUT/shards.json                # {"corpus_id", "parts", "shards": ["part-0", ...], ...}

Serve each part with its own ``quco serve OUT/part-k``; use the parts as one
corpus with ``--index URL0,URL1,...`` or with a copy of ``shards.json`` whose
entries are the servers' URLs (:mod:`quco.corpus.sharded`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from quco._version import __version__
from quco.corpus._tokenize import cached_tokenizer, encode_stream
from quco.corpus.build import (
    BATCH_DOCS,
    DEFAULT_SHARD_SIZE,
    _available_mem_gib,
    _eos_id,
    _remove_stale,
    _ShardWriter,
    _swap_into_place,
    _temp_dir_for,
    _tokenizer_ref,
    build_shard_table,
    fast_tokenizer_info,
)
from quco.corpus.manifest import SHARD_FILES, Manifest, Partition, ShardInfo, SourceFile
from quco.corpus.reader import BadRow, ReadReport, SourceDoc, iter_documents
from quco.corpus.sharded import SHARD_MAP_NAME
from quco.errors import BadInputError, EngineError

log = logging.getLogger(__name__)

#: documents tokenized on the driver to estimate characters per token
ESTIMATE_DOCS = 256


@dataclass(frozen=True)
class TokenizerSpec:
    """The tokenizer every task loads (by name), with the figures the manifest records."""

    recorded: str
    load_ref: str
    vocab_sha256: str
    vocab_size: int
    eos_token_id: int
    token_width: int


@dataclass(frozen=True)
class ShardTask:
    """One shard to build: its documents and where its files go."""

    part: int
    shard: int
    directory: str
    docs: tuple[SourceDoc, ...]


@dataclass(frozen=True)
class ShardBuilt:
    """A built shard (``info`` is ``None`` when none of its documents had a token)."""

    part: int
    shard: int
    info: ShardInfo | None
    bad_rows: tuple[BadRow, ...]
    seconds: float


@dataclass(frozen=True)
class PartsResult:
    """A finished build: the output folder, one manifest per part, and the shard map (split builds)."""

    path: Path
    manifests: tuple[Manifest, ...]
    shard_map: Path | None
    bad_rows: tuple[BadRow, ...]
    seconds: float

    @property
    def part_paths(self) -> list[Path]:
        if self.shard_map is None:
            return [self.path]
        return [self.path / f"part-{k}" for k in range(len(self.manifests))]


@functools.lru_cache(maxsize=4)
def _load_tokenizer(recorded: str, load_ref: str) -> Any:
    info = fast_tokenizer_info(recorded, load_ref)
    return info[0] if info is not None else cached_tokenizer(recorded)[0]


def resolve_tokenizer(name: str | None, token_width: int | None = None) -> TokenizerSpec:
    """The :class:`TokenizerSpec` of a packaged alias, folder or HF name (as ``build_index`` resolves it)."""
    recorded, load_ref = _tokenizer_ref(name)
    info = fast_tokenizer_info(recorded, load_ref)
    if info is not None:
        _, vhash, vocab_size, eos_id = info
    else:
        tok, vhash = cached_tokenizer(recorded)
        vocab = tok.get_vocab()
        vocab_size = max(len(tok), max(vocab.values()) + 1)
        eos_id = _eos_id(tok)
    width = token_width or (2 if vocab_size <= 0xFFFF else 4)
    if width not in (2, 4) or (width == 2 and vocab_size > 0xFFFF):
        raise BadInputError(f"token width {width} cannot hold a vocabulary of {vocab_size} (use 4)")
    return TokenizerSpec(recorded, load_ref, vhash, vocab_size, eos_id, width)


def _encode(tok: TokenizerSpec, texts: list[str]) -> Iterator[np.ndarray]:
    dtype = np.uint16 if tok.token_width == 2 else np.uint32
    batches = (texts[i : i + BATCH_DOCS] for i in range(0, len(texts), BATCH_DOCS))
    tokenizer = _load_tokenizer(tok.recorded, tok.load_ref)
    for enc in encode_stream(
        batches, tokenizer=tokenizer, tokenizer_path=tok.load_ref, dtype=dtype, workers=1
    ):
        yield from enc


def build_shard(task: ShardTask, tok: TokenizerSpec, cpus: int, mem_gib: int) -> ShardBuilt:
    """Tokenize a task's documents, write its shard's files and build its suffix array.

    Runs anywhere the task's folder is writable: here (local engine) or in a
    Ray worker. Rebuilding a shard rewrites its files, so a task run twice
    (a retried Ray task) gives the same shard.
    """
    t0 = time.monotonic()
    d = Path(task.directory)
    d.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(d, task.shard, tok.token_width)
    bad: list[BadRow] = []
    try:
        for doc, ids in zip(task.docs, _encode(tok, [x.text for x in task.docs]), strict=True):
            if ids.size == 0:
                bad.append(BadRow(doc.path, doc.line, "text has no tokens"))
                continue
            meta = {"path": doc.path, "line": doc.line, "metadata": doc.metadata}
            writer.add(ids, (json.dumps(meta, ensure_ascii=False) + "\n").encode("utf-8"))
    finally:
        writer.close()
    if writer.documents == 0:
        for name in SHARD_FILES:
            (d / f"{name}.{task.shard}").unlink(missing_ok=True)
        return ShardBuilt(task.part, task.shard, None, tuple(bad), round(time.monotonic() - t0, 3))
    build_shard_table(d, task.shard, tok.token_width, cpus=cpus, mem_gib=mem_gib)
    files = {name: (d / f"{name}.{task.shard}").stat().st_size for name in SHARD_FILES}
    info = ShardInfo(task.shard, writer.documents, writer.tokens, files)
    return ShardBuilt(task.part, task.shard, info, tuple(bad), round(time.monotonic() - t0, 3))


def plan_tasks(docs: Iterable[SourceDoc], dirs: Sequence[Path], chunk_chars: int) -> Iterator[ShardTask]:
    """Shard tasks, in corpus order: document ``i`` to part ``i mod len(dirs)``, cut every ``chunk_chars``."""
    parts = len(dirs)
    pending: list[list[SourceDoc]] = [[] for _ in range(parts)]
    chars = [0] * parts
    shard = [0] * parts
    for i, doc in enumerate(docs):
        p = i % parts
        pending[p].append(doc)
        chars[p] += len(doc.text)
        if chars[p] >= chunk_chars:
            yield ShardTask(p, shard[p], str(dirs[p]), tuple(pending[p]))
            shard[p] += 1
            pending[p], chars[p] = [], 0
    empty = [p for p in range(parts) if not pending[p] and shard[p] == 0]
    if empty:  # found before the last tasks are built
        raise BadInputError(
            f"part {empty[0]} of {parts} has no document: the corpus has too few documents for {parts} parts"
        )
    for p in range(parts):
        if pending[p]:
            yield ShardTask(p, shard[p], str(dirs[p]), tuple(pending[p]))


def corpus_id(sources: Sequence[SourceFile], parts: int, tok: TokenizerSpec) -> str:
    """The id of a split: the same for the same corpus files, number of parts and tokenizer.

    Parts built twice from the same inputs hold the same documents, so they
    may be mixed; any other set has another id.
    """
    h = hashlib.sha256()
    for s in sources:
        h.update(f"{s.sha256}:{s.size}\n".encode())
    h.update(f"parts={parts};assign=round-robin;vocab={tok.vocab_sha256}".encode())
    return h.hexdigest()[:24]


def build_parts(
    corpus: Sequence[str | Path] | str | Path,
    out: str | Path,
    *,
    parts: int = 1,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    tokenizer: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    force: bool = False,
    mem_gib: int | None = None,
    progress: bool | None = None,
    token_width: int | None = None,
) -> PartsResult:
    """Build an index (``parts=1``) or a corpus split by documents into ``parts`` indexes, as shard tasks.

    Args:
        corpus: corpus files or directories (see :mod:`quco.corpus.reader`).
        out: the index folder (``parts=1``), or the folder of the parts.
        parts: how many indexes (servers) to split the corpus into.
        engine: ``"local"`` (tasks one after the other here) or ``"ray"``.
        address: with ``engine="ray"``, the cluster (default: a local runtime).
        workers: with ``engine="ray"``, tasks at once (default: the cluster's CPUs).
        tokenizer: as for :func:`~quco.corpus.build.build_index`.
        shard_size: target tokens per shard (estimated).
        force: replace an existing ``out``.
        mem_gib: memory for the suffix-array builds, shared by the tasks at once.
        progress: show progress bars on stderr (None: only on a terminal).
        token_width: bytes per token on disk (2 or 4; default by vocabulary size).

    Returns:
        A :class:`PartsResult`.

    Raises:
        CorpusError: missing corpus path, or no usable document.
        BadInputError: bad options, ``out`` exists without ``force``, or fewer
            documents with tokens than parts.
        EngineError: a suffix-array build failed.
    """
    from tqdm.auto import tqdm

    from quco.models import file_sha256

    t0 = time.monotonic()
    if parts < 1 or shard_size < 1 or (workers is not None and workers < 1):
        raise BadInputError("parts, shard size and workers must be positive")
    if engine not in ("local", "ray"):
        raise BadInputError(f"engine must be 'local' or 'ray', not {engine!r}")
    paths = [corpus] if isinstance(corpus, str | Path) else list(corpus)
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise BadInputError(f"{out} already exists and is not empty; pass --force to replace it")
    report = ReadReport()
    docs = iter_documents(paths, report)
    head = [d for _, d in zip(range(ESTIMATE_DOCS), docs)]
    if not head:
        next(docs)  # raises the reader's "no usable document" error
    tok = resolve_tokenizer(tokenizer, token_width)
    n_chars = sum(len(d.text) for d in head)
    n_tokens = sum(int(a.size) for a in _encode(tok, [d.text for d in head]))
    chunk_chars = max(1, int(shard_size * max(n_chars, 1) / max(n_tokens, 1)))
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = _temp_dir_for(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dirs = [tmp] if parts == 1 else [tmp / f"part-{k}" for k in range(parts)]
    mem = mem_gib or _available_mem_gib()
    try:
        stream = _chain(head, docs)
        dbar = tqdm(desc="documents", unit="doc", disable=_off(progress), file=sys.stderr, position=0)
        sbar = tqdm(desc="shards built", unit="shard", disable=_off(progress), file=sys.stderr, position=1)

        def counted() -> Iterator[SourceDoc]:
            for d in stream:
                dbar.update(1)
                yield d

        def done(b: ShardBuilt) -> None:
            sbar.update(1)

        try:
            tasks = plan_tasks(counted(), dirs, chunk_chars)
            if engine == "ray":
                built = _run_ray(tasks, tok, address=address, workers=workers, mem_gib=mem, on_done=done)
            else:
                cpus = os.cpu_count() or 1
                built = []
                for t in tasks:
                    built.append(build_shard(t, tok, cpus, mem))
                    done(built[-1])
        finally:
            dbar.close()
            sbar.close()
        sources = tuple(SourceFile(str(p), p.stat().st_size, file_sha256(p)) for p in report.files)
        manifests = _finish(built, dirs, tok, sources, report, parts, t0)
        shard_map = None
        if parts > 1:
            shard_map = tmp / SHARD_MAP_NAME
            _write_json(
                shard_map,
                {
                    "corpus_id": manifests[0].partition.corpus_id if manifests[0].partition else None,
                    "parts": parts,
                    "documents": sum(m.documents for m in manifests),
                    "tokens": sum(m.tokens for m in manifests),
                    "shards": [f"part-{k}" for k in range(parts)],
                },
            )
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    bad = tuple(report.bad_rows) + tuple(r for b in built for r in b.bad_rows)
    log.info("built %s: %d part(s), %d shard task(s)", out, parts, len(built))
    return PartsResult(
        out,
        manifests,
        None if shard_map is None else out / SHARD_MAP_NAME,
        bad,
        round(time.monotonic() - t0, 3),
    )


def _off(progress: bool | None) -> bool | None:
    return None if progress is None else not progress


def _chain(head: list[SourceDoc], rest: Iterator[SourceDoc]) -> Iterator[SourceDoc]:
    yield from head
    yield from rest


def _finish(
    built: list[ShardBuilt],
    dirs: Sequence[Path],
    tok: TokenizerSpec,
    sources: tuple[SourceFile, ...],
    report: ReadReport,
    parts: int,
    t0: float,
) -> tuple[Manifest, ...]:
    """Number each part's shards from 0 and write each part's manifest (once, at the end)."""
    cid = corpus_id(sources, parts, tok) if parts > 1 else None
    manifests = []
    for p, d in enumerate(dirs):
        mine = sorted((b for b in built if b.part == p), key=lambda b: b.shard)
        infos: list[ShardInfo] = []
        for b in mine:
            if b.info is None:
                continue
            k = len(infos)
            if k != b.shard:  # an earlier shard had no token: close the gap
                for name in SHARD_FILES:
                    os.replace(d / f"{name}.{b.shard}", d / f"{name}.{k}")
            infos.append(ShardInfo(k, b.info.documents, b.info.tokens, dict(b.info.files)))
        if not infos:
            raise BadInputError(
                f"part {p} of {parts} has no document with tokens: the corpus has too few documents for {parts} parts"
            )
        bad = sum(len(b.bad_rows) for b in mine) + (len(report.bad_rows) if p == 0 else 0)
        m = Manifest(
            tokenizer=tok.recorded,
            vocab_sha256=tok.vocab_sha256,
            vocab_size=tok.vocab_size,
            token_width=tok.token_width,
            eos_token_id=tok.eos_token_id,
            separator=(1 << (8 * tok.token_width)) - 1,
            shards=tuple(infos),
            sources=sources,
            bad_rows=bad,
            quco_version=__version__,
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            build_seconds=round(time.monotonic() - t0, 3),
            partition=None if cid is None else Partition(cid, p, parts),
        )
        problems = m.file_problems(d)
        if problems:
            raise EngineError(f"the built index is inconsistent: {problems[0]}")
        m.write(d)
        manifests.append(m)
    return tuple(manifests)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _run_ray(
    tasks: Iterator[ShardTask],
    tok: TokenizerSpec,
    *,
    address: str | None,
    workers: int | None,
    mem_gib: int,
    on_done: Callable[[ShardBuilt], None],
) -> list[ShardBuilt]:
    """The shard tasks as Ray tasks, at most two per worker in flight."""
    from quco._ray import cluster_cpus, ray_runtime, reraise

    local_cpus = None if address else max(workers or 0, os.cpu_count() or 1)
    with ray_runtime(address, num_cpus=local_cpus) as ray:
        n = workers or cluster_cpus(ray)
        remote = ray.remote(num_cpus=1)(build_shard)
        task_mem = max(1, mem_gib // n)
        inflight: list[Any] = []
        built: list[ShardBuilt] = []

        def collect(refs: list[Any]) -> None:
            for b in ray.get(refs):
                built.append(b)
                on_done(b)

        try:
            for t in tasks:
                inflight.append(remote.remote(t, tok, 1, task_mem))
                if len(inflight) >= 2 * n:
                    ready, inflight = ray.wait(inflight, num_returns=1)
                    collect(ready)
            collect(inflight)
        except Exception as exc:  # noqa: BLE001 - Ray wraps the tasks' errors
            reraise(exc)
        return built
