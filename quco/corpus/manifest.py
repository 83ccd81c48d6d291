"""The manifest of a quco index (``quco-index.json``).

An index directory holds infini-gram's files for each shard ``s``
(``tokenized.s``, ``offset.s``, ``table.s``, ``metadata.s``, ``metaoff.s``)
and this manifest, written last: a directory without a valid manifest is not
an index. :meth:`Manifest.load` validates the manifest and checks that every
file it lists exists with the recorded size.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quco.errors import CorruptIndexError, IndexNotFoundError

FORMAT_VERSION = 1
MANIFEST_NAME = "quco-index.json"
#: the per-shard files, in the order infini-gram's engine needs them
SHARD_FILES = ("tokenized", "offset", "table", "metadata", "metaoff")


def pointer_width(token_bytes: int) -> int:
    """Bytes per suffix-array entry of a shard whose token file has ``token_bytes`` bytes.

    infini-gram's builder's rule, ``ceil(log2(bytes) / 8)``: the fewest bytes
    that hold every byte offset into the token file.
    """
    return max(1, math.ceil(math.log2(max(2, token_bytes)) / 8))


@dataclass(frozen=True)
class ShardInfo:
    """One shard: its documents, tokens (separators excluded) and file sizes."""

    index: int
    documents: int
    tokens: int
    files: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "documents": self.documents,
            "tokens": self.tokens,
            "files": dict(self.files),
        }


@dataclass(frozen=True)
class SourceFile:
    """A corpus file the index was built from."""

    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Partition:
    """This index is one part of a corpus split by documents over several indexes (servers).

    Every document of the corpus is in exactly one part, so a count or a
    co-occurrence over the whole corpus is the sum of the parts' (see
    :class:`quco.corpus.sharded.ShardedStats`).

    Attributes:
        corpus_id: the same for every part of one split, different for any other.
        part: this part's number, 0-based.
        parts: how many parts the corpus was split into.
        assignment: how documents were given to parts.
    """

    corpus_id: str
    part: int
    parts: int
    assignment: str = "round-robin"

    def to_dict(self) -> dict[str, Any]:
        return {
            "corpus_id": self.corpus_id,
            "part": self.part,
            "parts": self.parts,
            "assignment": self.assignment,
        }

    @classmethod
    def from_dict(cls, d: Any, *, where: str = "manifest") -> Partition:
        """Validate a partition record.

        Raises:
            CorruptIndexError: a field is missing or out of range.
        """
        if not isinstance(d, Mapping):
            raise CorruptIndexError(f"{where}: 'partition' must be an object")
        cid, part, parts = d.get("corpus_id"), d.get("part"), d.get("parts")
        ints = all(isinstance(x, int) and not isinstance(x, bool) for x in (part, parts))
        if not isinstance(cid, str) or not cid or not ints or not 0 <= part < parts:  # type: ignore[operator]
            raise CorruptIndexError(f"{where}: 'partition' needs a corpus_id and 0 <= part < parts")
        return cls(cid, int(part), int(parts), str(d.get("assignment", "round-robin")))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Manifest:
    """What an index holds and how it was built.

    Attributes:
        format_version: version of this layout (:data:`FORMAT_VERSION`).
        tokenizer: the tokenizer name or path given at build time.
        vocab_sha256: :func:`quco.models.vocab_hash` of that tokenizer.
        vocab_size: one past the largest token id.
        token_width: bytes per token id on disk (2 or 4).
        eos_token_id: the tokenizer's end-of-text id (given to the engine).
        separator: the document separator id (``0xFFFF`` or ``0xFFFFFFFF``).
        shards: the shards, in order.
        sources: the corpus files, with sizes and sha256.
        bad_rows: rows skipped while reading the corpus.
        quco_version: the quco version that built it.
        built_at: ISO-8601 UTC time the build finished.
        build_seconds: wall time of the build.
        partition: which part of a corpus split over several indexes this
            one is (``None``: a whole corpus).
    """

    tokenizer: str
    vocab_sha256: str
    vocab_size: int
    token_width: int
    eos_token_id: int
    separator: int
    shards: tuple[ShardInfo, ...]
    sources: tuple[SourceFile, ...] = ()
    bad_rows: int = 0
    quco_version: str = ""
    built_at: str = ""
    build_seconds: float = 0.0
    format_version: int = FORMAT_VERSION
    partition: Partition | None = None

    @property
    def documents(self) -> int:
        return sum(s.documents for s in self.shards)

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.shards)

    @property
    def token_dtype(self) -> str:
        """infini-gram's name of the on-disk token type (``"u16"`` or ``"u32"``)."""
        return "u16" if self.token_width == 2 else "u32"

    @property
    def index_bytes(self) -> int:
        return sum(sum(s.files.values()) for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        d = self._to_dict()
        if self.partition is not None:
            d["partition"] = self.partition.to_dict()
        return d

    def _to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "tokenizer": self.tokenizer,
            "vocab_sha256": self.vocab_sha256,
            "vocab_size": self.vocab_size,
            "token_width": self.token_width,
            "eos_token_id": self.eos_token_id,
            "separator": self.separator,
            "documents": self.documents,
            "tokens": self.tokens,
            "shards": [s.to_dict() for s in self.shards],
            "sources": [s.to_dict() for s in self.sources],
            "bad_rows": self.bad_rows,
            "quco_version": self.quco_version,
            "built_at": self.built_at,
            "build_seconds": self.build_seconds,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "manifest") -> Manifest:
        """Validate and build a manifest from its JSON form.

        Raises:
            CorruptIndexError: a field is missing or has a wrong type or value.
        """

        def get(obj: Mapping[str, Any], key: str, typ: type | tuple[type, ...], ctx: str = "") -> Any:
            if not isinstance(obj, Mapping) or key not in obj:
                raise CorruptIndexError(f"{where}: missing field {ctx}{key!r}")
            v = obj[key]
            if not isinstance(v, typ) or (isinstance(v, bool) and typ is int):
                raise CorruptIndexError(f"{where}: field {ctx}{key!r} has a wrong type")
            return v

        version = get(d, "format_version", int)
        if version != FORMAT_VERSION:
            raise CorruptIndexError(
                f"{where}: format version {version} is not supported (this quco reads {FORMAT_VERSION})"
            )
        width = get(d, "token_width", int)
        if width not in (2, 4):
            raise CorruptIndexError(f"{where}: token_width must be 2 or 4, not {width}")
        shards = []
        for i, s in enumerate(get(d, "shards", list)):
            ctx = f"shards[{i}]."
            files = get(s, "files", dict, ctx)
            if set(files) != set(SHARD_FILES) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in files.values()
            ):
                raise CorruptIndexError(f"{where}: {ctx}files must give the size of {', '.join(SHARD_FILES)}")
            shard = ShardInfo(
                index=get(s, "index", int, ctx),
                documents=get(s, "documents", int, ctx),
                tokens=get(s, "tokens", int, ctx),
                files=dict(files),
            )
            if shard.index != i or shard.documents <= 0 or shard.tokens < 0:
                raise CorruptIndexError(f"{where}: {ctx} has a wrong index or count")
            shards.append(shard)
        if not shards:
            raise CorruptIndexError(f"{where}: the index has no shard")
        sources = tuple(
            SourceFile(
                path=get(s, "path", str, f"sources[{i}]."),
                size=get(s, "size", int, f"sources[{i}]."),
                sha256=get(s, "sha256", str, f"sources[{i}]."),
            )
            for i, s in enumerate(get(d, "sources", list))
        )
        m = cls(
            format_version=version,
            tokenizer=get(d, "tokenizer", str),
            vocab_sha256=get(d, "vocab_sha256", str),
            vocab_size=get(d, "vocab_size", int),
            token_width=width,
            eos_token_id=get(d, "eos_token_id", int),
            separator=get(d, "separator", int),
            shards=tuple(shards),
            sources=sources,
            bad_rows=get(d, "bad_rows", int),
            quco_version=get(d, "quco_version", str),
            built_at=get(d, "built_at", str),
            build_seconds=float(get(d, "build_seconds", (int, float))),
            partition=None
            if d.get("partition") is None
            else Partition.from_dict(d["partition"], where=where),
        )
        if m.separator != (1 << (8 * width)) - 1:
            raise CorruptIndexError(f"{where}: separator {m.separator} does not match token_width {width}")
        if not 0 < m.vocab_size <= m.separator or not 0 <= m.eos_token_id < m.vocab_size:
            raise CorruptIndexError(f"{where}: vocab_size or eos_token_id out of range")
        return m

    def file_problems(self, index_dir: str | Path) -> list[str]:
        """Files of ``index_dir`` that are missing or have the wrong size (empty when all is well)."""
        d = Path(index_dir)
        problems = []
        for shard in self.shards:
            for name, size in shard.files.items():
                p = d / f"{name}.{shard.index}"
                try:
                    actual = p.stat().st_size
                except OSError:
                    problems.append(f"{p.name} is missing")
                    continue
                if actual != size:
                    problems.append(f"{p.name} has {actual} bytes, expected {size}")
            expected = (shard.tokens + shard.documents) * self.token_width
            if shard.files.get("tokenized") != expected:
                problems.append(f"tokenized.{shard.index}: recorded size disagrees with the token count")
            if shard.files.get("offset") != 8 * shard.documents:
                problems.append(f"offset.{shard.index}: recorded size disagrees with the document count")
            tok_cnt = shard.tokens + shard.documents
            table = shard.files.get("table", 0)
            width = pointer_width(tok_cnt * self.token_width)
            if tok_cnt and table != tok_cnt * width:
                problems.append(
                    f"table.{shard.index}: {table} bytes, not {tok_cnt} tokens x {width}-byte pointers"
                )
        return problems

    @classmethod
    def load(cls, index_dir: str | Path, *, check_files: bool = True) -> Manifest:
        """Read, validate and (by default) check the files of an index.

        Args:
            index_dir: the index directory.
            check_files: also check that every listed file exists with its size.

        Raises:
            IndexNotFoundError: no such directory, or no manifest in it.
            CorruptIndexError: a bad or truncated manifest, or a missing or
                truncated index file.
        """
        d = Path(index_dir)
        if not d.is_dir():
            raise IndexNotFoundError(f"no index at {d}: the directory does not exist")
        path = d / MANIFEST_NAME
        if not path.is_file():
            raise IndexNotFoundError(
                f"{d} is not a quco index (no {MANIFEST_NAME}); build one with 'quco index build'"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptIndexError(f"{path}: unreadable manifest ({exc})") from exc
        if not isinstance(data, dict):
            raise CorruptIndexError(f"{path}: the manifest is not a JSON object")
        m = cls.from_dict(data, where=str(path))
        if check_files:
            problems = m.file_problems(d)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise CorruptIndexError(f"index {d} is damaged: {problems[0]}{more}")
        return m

    def write(self, index_dir: str | Path) -> Path:
        """Write the manifest into ``index_dir`` (atomically, fsynced)."""
        path = Path(index_dir) / MANIFEST_NAME
        tmp = path.with_name(path.name + ".part")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path
