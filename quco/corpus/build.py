"""Build an infini-gram index of a corpus in any Hugging Face tokenizer.

quco writes infini-gram's on-disk format itself, streaming documents into
shards of about ``shard_size`` tokens (so a corpus larger than RAM works), then
runs the infini-gram package's own builder (``python -m infini_gram.indexing``),
which skips its tokenize step because the tokenized files exist, to build each
shard's suffix array (``table.s``). Per shard ``s``:

- ``tokenized.s``: each document is the separator (``0xFFFF`` as uint16, or
  ``0xFFFFFFFF`` as uint32 when the vocabulary does not fit 16 bits) followed by
  its token ids, little-endian;
- ``offset.s``: uint64 byte offset of each document start in ``tokenized.s``;
- ``metadata.s``: one JSON line per document,
  ``{"path": FILE, "line": N, "metadata": {...other JSONL fields}}``;
- ``metaoff.s``: uint64 byte offset of each line of ``metadata.s``;
- ``table.s``: the suffix array (built by infini-gram).

The build is atomic: it happens in a hidden sibling directory
``.NAME.tmp-PID`` that is renamed into place only once the manifest
(``quco-index.json``) is written, so an interrupted or failed build leaves
nothing that loads as an index. Stale temporary directories of dead builds are
removed when a build starts; an existing index is replaced only with
``force=True``.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from quco._deps import require
from quco._version import __version__
from quco.corpus._tokenize import cached_tokenizer, encode_stream
from quco.corpus.manifest import SHARD_FILES, Manifest, ShardInfo, SourceFile
from quco.corpus.reader import BadRow, ReadReport, SourceDoc, iter_documents
from quco.errors import BadInputError, EngineError

log = logging.getLogger(__name__)

#: default tokens per shard (about 0.5 GB of tokens and 2 GB of suffix array at u16)
DEFAULT_SHARD_SIZE = 250_000_000
#: documents per tokenizer batch
BATCH_DOCS = 512
#: the open-file limit the infini-gram builder is run with (its default fails here)
BUILDER_ULIMIT = 20000
#: shards smaller than this (tokens) get a one-process suffix-array build
SMALL_SHARD_TOKENS = 16384


@dataclass(frozen=True)
class BuildResult:
    """A finished build: where it is, its manifest, and the rows skipped."""

    path: Path
    manifest: Manifest
    bad_rows: tuple[BadRow, ...] = ()


class _ShardWriter:
    """Appends documents to the four files of one shard."""

    def __init__(self, directory: Path, index: int, width: int) -> None:
        self.index = index
        self.dtype = np.dtype("<u2" if width == 2 else "<u4")
        self.sep = b"\xff" * width
        self.width = width
        self._files: dict[str, IO[bytes]] = {
            name: open(directory / f"{name}.{index}", "wb", buffering=1 << 20)  # noqa: SIM115
            for name in ("tokenized", "offset", "metadata", "metaoff")
        }
        self.documents = 0
        self.tokens = 0
        self._ds_bytes = 0
        self._mt_bytes = 0

    @property
    def size_tokens(self) -> int:
        """Tokens written, separators included (infini-gram's ``tok_cnt``)."""
        return self.tokens + self.documents

    def add(self, ids: np.ndarray, meta_line: bytes) -> None:
        f = self._files
        f["offset"].write(np.uint64(self._ds_bytes).tobytes())
        body = ids.astype(self.dtype, copy=False).tobytes()
        f["tokenized"].write(self.sep)
        f["tokenized"].write(body)
        self._ds_bytes += len(self.sep) + len(body)
        f["metaoff"].write(np.uint64(self._mt_bytes).tobytes())
        f["metadata"].write(meta_line)
        self._mt_bytes += len(meta_line)
        self.documents += 1
        self.tokens += int(ids.size)

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _temp_dir_for(out: Path) -> Path:
    return out.parent / f".{out.name}.tmp-{os.getpid()}"


def _remove_stale(out: Path) -> None:
    """Remove temporary build folders of ``out`` left by dead processes."""
    for p in out.parent.glob(f".{out.name}.tmp-*"):
        try:
            pid = int(p.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid == os.getpid() or not _pid_alive(pid):
            log.info("removing stale build folder %s", p)
            shutil.rmtree(p, ignore_errors=True)


def _tokenizer_ref(name: str | None) -> tuple[str, str]:
    """(name recorded in the manifest, name/path to load)."""
    from quco.models import canonical, tokenizer_dir

    alias = canonical(name)
    p = Path(alias)
    if p.exists():
        return str(p.resolve()), str(p.resolve())
    return alias, str(tokenizer_dir(alias))


def _eos_id(tokenizer: Any) -> int:
    for attr in ("eos_token_id", "sep_token_id", "pad_token_id"):
        v = getattr(tokenizer, attr, None)
        if isinstance(v, int) and v >= 0:
            return v
    return 0


def fast_tokenizer_info(recorded: str, load_ref: str) -> tuple[Any, str, int, int] | None:
    """A packaged model's tokenizer read with ``tokenizers`` alone (no transformers import).

    Returns:
        (``tokenizers.Tokenizer``, vocabulary hash, vocabulary size, eos id),
        the same figures the Hugging Face tokenizer gives (a test checks it);
        None for a tokenizer that is not packaged or lacks the files, which
        is then loaded through transformers.
    """
    from quco.models import PACKAGED, vocab_hash

    folder = Path(load_ref)
    if recorded not in PACKAGED or not (folder / "tokenizer.json").is_file():
        return None
    try:
        tokenizers = require("tokenizers")
        tk = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        conf = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (ImportError, OSError, ValueError, RuntimeError):
        return None
    vocab = tk.get_vocab(with_added_tokens=True)
    size = max(tk.get_vocab_size(with_added_tokens=True), max(vocab.values()) + 1)
    eos = 0
    for key in ("eos_token", "sep_token", "pad_token"):
        v = conf.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        i = tk.token_to_id(v) if isinstance(v, str) else None
        if i is not None and i >= 0:
            eos = int(i)
            break
    return tk, vocab_hash(tk), size, eos


def _batches(docs: Iterable[SourceDoc], size: int, max_chars: int = 8 << 20) -> Iterator[list[SourceDoc]]:
    batch: list[SourceDoc] = []
    chars = 0
    for d in docs:
        batch.append(d)
        chars += len(d.text)
        if len(batch) >= size or chars >= max_chars:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _available_mem_gib() -> int:
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # pragma: no cover - non-POSIX
        return 2
    return max(1, int(avail / 2**30 * 0.5))


def _run_builder(work: Path, token_width: int, cpus: int, mem_gib: int) -> tuple[int, str]:
    """Run infini-gram's builder on the single shard in ``work``: (exit code, last output line)."""
    cmd = [
        sys.executable, "-m", "infini_gram.indexing",
        "--data_dir", str(work), "--save_dir", str(work), "--temp_dir", str(work / "tmp"),
        "--token_dtype", "u16" if token_width == 2 else "u32",
        "--shards", "1", "--cpus", str(max(1, cpus)), "--mem", str(max(1, mem_gib)),
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
) -> None:
    """Build the suffix array ``table.<shard>`` of one shard of ``index_dir``.

    The shard's files are linked into the scratch folder
    ``index_dir/_sa_work.<shard>`` as shard 0 (removed afterwards), so that a
    small shard can use one process (the builder's parallel merge fails on
    shards of a few thousand tokens) and different shards of one folder can be
    built at the same time (:mod:`quco.corpus.build_parts`).

    Args:
        index_dir: the folder holding ``tokenized.<shard>`` and ``offset.<shard>``.
        shard: the shard number.
        token_width: 2 or 4 bytes per token.
        cpus: processes the builder may use.
        mem_gib: memory (GiB) the builder may use.

    Raises:
        EngineError: the builder failed.
    """
    index_dir = Path(index_dir)
    work = index_dir / f"_sa_work.{shard}"
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        for name in ("tokenized", "offset"):
            os.symlink(index_dir / f"{name}.{shard}", work / f"{name}.0")
        tok_cnt = (index_dir / f"tokenized.{shard}").stat().st_size // token_width
        n_cpus = cpus if tok_cnt >= SMALL_SHARD_TOKENS else 1
        rc, last = _run_builder(work, token_width, n_cpus, mem_gib)
        if rc != 0 and n_cpus > 1:
            log.info(
                "suffix-array build of shard %d failed with %d processes; retrying with one", shard, n_cpus
            )
            (work / "table.0").unlink(missing_ok=True)
            rc, last = _run_builder(work, token_width, 1, mem_gib)
        table = work / "table.0"
        if rc != 0 or not table.is_file():
            hint = " (its builder allocates ~32 GiB of RAM for 4-byte tokens)" if token_width == 4 else ""
            raise EngineError(
                f"the infini-gram suffix-array builder failed on shard {shard} (exit {rc}): {last}{hint}"
            )
        os.replace(table, index_dir / f"table.{shard}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_suffix_arrays(
    index_dir: Path, n_shards: int, token_width: int, *, cpus: int, mem_gib: int, progress: bool | None = None
) -> None:
    """Run infini-gram's builder to write each shard's suffix array ``table.s``, one after the other.

    Args:
        index_dir: folder holding ``tokenized.s``/``offset.s`` for every shard.
        n_shards: number of shards.
        token_width: 2 or 4 bytes per token.
        cpus: processes the builder may use.
        mem_gib: memory (GiB) the builder may use.
        progress: show a progress bar (None: only on a terminal).

    Raises:
        EngineError: the builder failed (see :func:`build_shard_table`).
    """
    from tqdm.auto import tqdm

    disable = None if progress is None else not progress
    for s in tqdm(range(n_shards), desc="suffix arrays", unit="shard", disable=disable, file=sys.stderr):
        build_shard_table(index_dir, s, token_width, cpus=cpus, mem_gib=mem_gib)


def build_index(
    corpus: Sequence[str | Path] | str | Path,
    out: str | Path,
    *,
    tokenizer: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int = 1,
    force: bool = False,
    batch_docs: int = BATCH_DOCS,
    mem_gib: int | None = None,
    progress: bool | None = None,
    token_width: int | None = None,
) -> BuildResult:
    """Tokenize a corpus and build a sharded infini-gram index with a manifest.

    Args:
        corpus: corpus files or directories (see :mod:`quco.corpus.reader`).
        out: the index directory to create.
        tokenizer: packaged alias, HF tokenizer folder or name (default: the
            default generator's, SmolLM2). A packaged tokenizer is read with
            ``tokenizers`` alone (:func:`fast_tokenizer_info`), others through transformers.
        shard_size: target tokens per shard (documents are never split, so a
            shard may exceed it by one document).
        workers: tokenizer processes (1: this process, with the word cache of
            :mod:`quco.corpus._tokenize` or the fast tokenizer's own threads).
        force: replace an existing index at ``out``.
        batch_docs: documents per tokenizer batch.
        mem_gib: memory for the suffix-array builder (default: half the free RAM).
        progress: show progress bars on stderr (None: only on a terminal).
        token_width: bytes per token on disk, 2 or 4 (default: 2 when the
            vocabulary fits 16 bits, else 4).

    Returns:
        The :class:`BuildResult`.

    Raises:
        CorpusError: missing corpus path, or no usable document.
        BadInputError: ``out`` exists and ``force`` is not set, or bad options.
        EngineError: the suffix-array builder failed.
    """
    from tqdm.auto import tqdm

    from quco.models import file_sha256

    t0 = time.monotonic()
    if shard_size < 1 or workers < 1 or batch_docs < 1:
        raise BadInputError("shard size, workers and batch size must be positive")
    paths = [corpus] if isinstance(corpus, str | Path) else list(corpus)
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise BadInputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise BadInputError(f"{out} already exists and is not empty; pass --force to replace it")
    report = ReadReport()
    docs = iter_documents(paths, report)  # checks the paths now
    first = next(docs)  # a corpus without a usable document fails here, before the tokenizer loads
    docs = itertools.chain([first], docs)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)

    recorded, load_ref = _tokenizer_ref(tokenizer)
    info = fast_tokenizer_info(recorded, load_ref)
    tok: Any
    if info is not None:
        tok, vhash, vocab_size, eos_id = info
    else:
        tok, vhash = cached_tokenizer(recorded)
        vocab = tok.get_vocab()
        vocab_size = max(len(tok), max(vocab.values()) + 1)
        eos_id = _eos_id(tok)
    width = token_width or (2 if vocab_size <= 0xFFFF else 4)
    if width not in (2, 4) or (width == 2 and vocab_size > 0xFFFF):
        raise BadInputError(f"token width {width} cannot hold a vocabulary of {vocab_size} (use 4)")
    dtype = np.uint16 if width == 2 else np.uint32

    tmp = _temp_dir_for(out)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        shards: list[_ShardWriter] = []
        writer: _ShardWriter | None = None
        auto = None if progress is None else not progress
        dbar = tqdm(desc="documents", unit="doc", disable=auto, file=sys.stderr, position=0)
        tbar = tqdm(desc="tokens", unit="tok", unit_scale=True, disable=auto, file=sys.stderr, position=1)
        try:
            batches = _batches(docs, batch_docs)
            doc_batches: collections.deque[list[SourceDoc]] = collections.deque()

            def texts() -> Iterator[list[str]]:
                for b in batches:
                    doc_batches.append(b)
                    yield [d.text for d in b]

            for enc in encode_stream(
                texts(), tokenizer=tok, tokenizer_path=load_ref, dtype=dtype, workers=workers
            ):
                batch = doc_batches.popleft()
                for d, ids in zip(batch, enc, strict=True):
                    if ids.size == 0:
                        report.bad_rows.append(BadRow(d.path, d.line, "text has no tokens"))
                        continue
                    if writer is None or writer.size_tokens >= shard_size:
                        if writer is not None:
                            writer.close()
                        writer = _ShardWriter(tmp, len(shards), width)
                        shards.append(writer)
                    meta = {"path": d.path, "line": d.line, "metadata": d.metadata}
                    writer.add(ids, (json.dumps(meta, ensure_ascii=False) + "\n").encode("utf-8"))
                    tbar.update(int(ids.size))
                dbar.update(len(batch))
        finally:
            if writer is not None:
                writer.close()
            dbar.close()
            tbar.close()
        if not shards:
            raise BadInputError("no document of the corpus has any token")

        build_suffix_arrays(
            tmp, len(shards), width, cpus=workers if workers > 1 else (os.cpu_count() or 1),
            mem_gib=mem_gib or _available_mem_gib(), progress=progress,
        )  # fmt: skip

        infos = tuple(
            ShardInfo(
                index=w.index,
                documents=w.documents,
                tokens=w.tokens,
                files={name: (tmp / f"{name}.{w.index}").stat().st_size for name in SHARD_FILES},
            )
            for w in shards
        )
        sources = tuple(SourceFile(str(p), p.stat().st_size, file_sha256(p)) for p in report.files)
        manifest = Manifest(
            tokenizer=recorded,
            vocab_sha256=vhash,
            vocab_size=vocab_size,
            token_width=width,
            eos_token_id=eos_id,
            separator=(1 << (8 * width)) - 1,
            shards=infos,
            sources=sources,
            bad_rows=len(report.bad_rows),
            quco_version=__version__,
            built_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            build_seconds=round(time.monotonic() - t0, 3),
        )
        problems = manifest.file_problems(tmp)
        if problems:
            raise EngineError(f"the built index is inconsistent: {problems[0]}")
        manifest.write(tmp)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("index built at %s: %d documents, %d tokens, %d shard(s)", out, manifest.documents,
             manifest.tokens, len(manifest.shards))  # fmt: skip
    return BuildResult(path=out, manifest=manifest, bad_rows=tuple(report.bad_rows))


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``, replacing an existing ``out``."""
    if not out.exists():
        os.replace(tmp, out)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    shutil.rmtree(old, ignore_errors=True)
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
