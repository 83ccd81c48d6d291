"""Build and verify one shard's suffix array (``table.s``) with infini-gram's builder.

:func:`build_shard_table` is the unit of work of an index build: given a
folder holding a shard's ``tokenized.s`` and ``offset.s``, it runs the
infini-gram package's builder (``python -m infini_gram.indexing``) in a
scratch folder of its own, checks the table it wrote with
:func:`table_problem`, and only then moves it into place. A table that fails
the check is rebuilt with one process; when that fails too, it raises
:class:`~quco.errors.EngineError` with one line saying why. Engines that build
shards elsewhere (another process, a Ray task) call it per shard; the local
build calls :func:`build_suffix_arrays`, which loops over the shards.

Why the check: infini-gram's parallel builder splits the token file into
parts that overlap by 100,000 bytes (its ``HACK``). On a shard smaller than
that, run with several processes, it exits 0 having written a table with
half as many pointers again as there are tokens: 1.5 times the right size.
With 2-byte pointers that looks like a table of 3-byte pointers, so a size
check modulo the token count alone passes it and every count on it is wrong.
:func:`table_problem` checks what the suffix array must be, cheaply:

- its size is the token count (separators included) times the pointer width
  infini-gram derives from the token file's size, ``ceil(log2(bytes) / 8)``;
- every pointer is a token-aligned offset inside the token file, and every
  token position appears (so the table is a permutation of them);
- sampled neighbouring suffixes are in order (bytewise, as the table is sorted).
"""

from __future__ import annotations

import logging
import mmap
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from quco.corpus.manifest import pointer_width
from quco.errors import EngineError

log = logging.getLogger(__name__)

#: the open-file limit the infini-gram builder is run with (its default fails here)
BUILDER_ULIMIT = 20000
#: infini-gram's part overlap (bytes): below ``processes`` times this, parallel parts overlap
BUILDER_OVERLAP_BYTES = 100_000
#: neighbouring suffix pairs whose order :func:`table_problem` checks (all when fewer)
ORDER_SAMPLES = 4096
#: bytes of each suffix compared by that check
ORDER_BYTES = 256
#: table entries read at a time by the permutation check
_CHUNK = 1 << 22


@dataclass(frozen=True)
class ShardTable:
    """A verified suffix array of one shard.

    Attributes:
        shard: the shard number ``s`` (the table is ``table.s``).
        tokens: entries of the table: tokens of the shard, separators included.
        pointer_bytes: bytes per entry.
        processes: builder processes of the build that passed the check.
        attempts: builds run (2 when the first table failed the check).
        seconds: wall time of the build(s) and checks.
    """

    shard: int
    tokens: int
    pointer_bytes: int
    processes: int
    attempts: int
    seconds: float


def builder_processes(token_bytes: int, cpus: int) -> int:
    """Processes to give infini-gram's builder for a shard: ``cpus``, or 1 where parts would overlap."""
    cpus = max(1, int(cpus))
    return cpus if token_bytes >= cpus * BUILDER_OVERLAP_BYTES else 1


def _as_ints(raw: np.ndarray, p: int) -> np.ndarray:
    """Little-endian ``p``-byte integers (rows of a uint8 array) as uint64."""
    buf = np.zeros((raw.shape[0], 8), dtype=np.uint8)
    buf[:, :p] = raw
    return buf.view("<u8").ravel()


def table_problem(tokenized: str | Path, table: str | Path, token_width: int, *, seed: int = 0) -> str | None:
    """What is wrong with a suffix array, or None when it passes every check (see the module docstring).

    Args:
        tokenized: the shard's token file (``tokenized.s``).
        table: its suffix array (``table.s``).
        token_width: bytes per token (2 or 4).
        seed: seed of the sampled order check.

    Returns:
        One line describing the first problem found, or None.
    """
    tokenized, table = Path(tokenized), Path(table)
    try:
        ds_bytes = tokenized.stat().st_size
        tab_bytes = table.stat().st_size
    except OSError as exc:
        return f"cannot read the table or the tokens: {exc.strerror or exc}"
    n = ds_bytes // token_width
    if n == 0 or ds_bytes % token_width:
        return f"the token file has {ds_bytes} bytes, not a whole positive number of tokens"
    p = pointer_width(ds_bytes)
    if tab_bytes != n * p:
        return (
            f"the table has {tab_bytes} bytes, expected {n * p} ({n} tokens x {p}-byte pointers); "
            f"{tab_bytes / n:.2f} bytes per token"
        )
    raw = np.memmap(table, dtype=np.uint8, mode="r")
    seen = np.zeros(n, dtype=bool)
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        ptrs = _as_ints(np.asarray(raw[start * p : stop * p]).reshape(-1, p), p)
        if int(ptrs.max()) >= ds_bytes:
            return "the table points past the end of the token file"
        if token_width > 1 and np.any(ptrs % token_width):
            return "the table holds pointers that are not token-aligned"
        seen[ptrs // token_width] = True
    if not seen.all():
        return f"the table misses {int(n - np.count_nonzero(seen))} of {n} token positions"
    del seen
    return _order_problem(tokenized, raw, n, p, seed)


def _order_problem(tokenized: Path, raw: np.ndarray, n: int, p: int, seed: int) -> str | None:
    if n < 2:
        return None
    pairs = n - 1
    if pairs <= ORDER_SAMPLES:
        ranks = np.arange(pairs, dtype=np.int64)
    else:
        ranks = np.random.default_rng(seed).choice(pairs, size=ORDER_SAMPLES, replace=False)
    idx = np.concatenate([ranks, ranks + 1])[:, None] * p + np.arange(p, dtype=np.int64)
    ptrs = _as_ints(np.asarray(raw[idx.ravel()]).reshape(-1, p), p)
    first, second = ptrs[: ranks.size].tolist(), ptrs[ranks.size :].tolist()
    with open(tokenized, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as ds:
        for r, a, b in zip(ranks.tolist(), first, second, strict=True):
            if ds[a : a + ORDER_BYTES] > ds[b : b + ORDER_BYTES]:
                return f"the table is not sorted (suffixes at ranks {r} and {r + 1} are out of order)"
    return None


def _run_builder(work: Path, token_width: int, processes: int, mem_gib: int) -> tuple[int, str]:
    """Run infini-gram's builder on the single shard in ``work``: (exit code, last output line)."""
    cmd = [
        sys.executable, "-m", "infini_gram.indexing",
        "--data_dir", str(work), "--save_dir", str(work), "--temp_dir", str(work / "tmp"),
        "--token_dtype", "u16" if token_width == 2 else "u32",
        "--shards", "1", "--cpus", str(max(1, processes)), "--mem", str(max(1, mem_gib)),
        "--ulimit", str(BUILDER_ULIMIT),
    ]  # fmt: skip
    log.info("building a suffix array: %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
    except OSError as exc:
        raise EngineError(f"cannot run the infini-gram builder: {exc}") from exc
    lines = [t.strip() for t in proc.stdout.splitlines() if t.strip() and "%|" not in t]
    return proc.returncode, (lines[-1] if lines else "no output")


def build_shard_table(
    index_dir: str | Path, shard: int, token_width: int, *, cpus: int, mem_gib: int
) -> ShardTable:
    """Build, verify and move into place the suffix array ``table.<shard>`` of one shard.

    The shard's ``tokenized.<shard>`` and ``offset.<shard>`` must be in
    ``index_dir``; the builder runs in the scratch folder
    ``index_dir/_sa_work.<shard>`` (removed afterwards), so that different
    shards of one folder can be built at the same time. The table is checked
    with :func:`table_problem`; a table that fails, or a builder that fails,
    gets one more build with one process.

    Args:
        index_dir: the folder holding the shard's files.
        shard: the shard number.
        token_width: bytes per token (2 or 4).
        cpus: processes the builder may use (it gets one on small shards,
            see :func:`builder_processes`).
        mem_gib: memory (GiB) the builder may use.

    Returns:
        The :class:`ShardTable` of the verified table.

    Raises:
        EngineError: both builds failed or wrote a wrong table (one line, with why).
    """
    t0 = time.monotonic()
    index_dir = Path(index_dir)
    tokenized = index_dir / f"tokenized.{shard}"
    ds_bytes = tokenized.stat().st_size
    first = builder_processes(ds_bytes, cpus)
    plan = [first, 1] if first > 1 else [1]
    work = index_dir / f"_sa_work.{shard}"
    why = ""
    try:
        for attempt, processes in enumerate(plan, start=1):
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            for name in ("tokenized", "offset"):
                os.symlink(index_dir / f"{name}.{shard}", work / f"{name}.0")
            rc, last = _run_builder(work, token_width, processes, mem_gib)
            table = work / "table.0"
            if rc != 0 or not table.is_file():
                why = f"exit {rc}: {last}"
            else:
                problem = table_problem(tokenized, table, token_width)
                if problem is None:
                    os.replace(table, index_dir / f"table.{shard}")
                    return ShardTable(
                        shard=shard,
                        tokens=ds_bytes // token_width,
                        pointer_bytes=pointer_width(ds_bytes),
                        processes=processes,
                        attempts=attempt,
                        seconds=round(time.monotonic() - t0, 3),
                    )
                why = f"wrong table: {problem}"
            if attempt < len(plan):
                log.warning(
                    "suffix array of shard %d (%d processes) failed: %s; rebuilding it with one process",
                    shard, processes, why,
                )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    hint = " (its builder allocates ~32 GiB of RAM for 4-byte tokens)" if token_width == 4 else ""
    again = ", also with one process" if len(plan) > 1 else ""
    raise EngineError(f"the infini-gram suffix-array builder failed on shard {shard}{again}: {why}{hint}")


def build_suffix_arrays(
    index_dir: Path, n_shards: int, token_width: int, *, cpus: int, mem_gib: int, progress: bool | None = None
) -> list[ShardTable]:
    """Build and verify every shard's suffix array in ``index_dir``, one shard after the other.

    Args:
        index_dir: folder holding ``tokenized.s``/``offset.s`` for every shard.
        n_shards: number of shards.
        token_width: 2 or 4 bytes per token.
        cpus: processes the builder may use.
        mem_gib: memory (GiB) the builder may use.
        progress: show a progress bar (None: only on a terminal).

    Returns:
        One :class:`ShardTable` per shard.

    Raises:
        EngineError: a shard's table could not be built right (see :func:`build_shard_table`).
    """
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress
    return [
        build_shard_table(index_dir, s, token_width, cpus=cpus, mem_gib=mem_gib)
        for s in tqdm(range(n_shards), desc="suffix arrays", unit="shard", disable=disable, file=sys.stderr)
    ]
