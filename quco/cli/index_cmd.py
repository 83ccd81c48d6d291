"""``quco index build`` and ``quco index info``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("index", help="build or inspect a corpus index")
    sub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: _no_sub(p))

    b = sub.add_parser("build", help="build an infini-gram index of a corpus")
    b.add_argument("corpus", nargs="+", metavar="CORPUS",
                   help="JSONL (text field) or .txt files, .gz/.zst, or directories of them")  # fmt: skip
    b.add_argument("--out", required=True, metavar="DIR", help="index directory to create")
    b.add_argument("--tokenizer", default=None, metavar="NAME_OR_PATH",
                   help="packaged alias, HF tokenizer folder or name (default: smollm2-135m-instruct)")  # fmt: skip
    b.add_argument("--shard-size", type=int, default=None, metavar="N_TOKENS",
                   help="target tokens per shard (default: 250M)")  # fmt: skip
    b.add_argument("--workers", type=int, default=1, metavar="N",
                   help="tokenizer processes (default 1: the tokenizer's own threads)")  # fmt: skip
    b.add_argument("--mem", type=int, default=None, metavar="GIB", help="memory for the suffix-array builder")
    b.add_argument("--force", action="store_true", help="replace an existing index")
    b.add_argument("--json", action="store_true", help="print the manifest as JSON")
    b.set_defaults(func=run_build)

    i = sub.add_parser("info", help="show an index's manifest and check its files")
    i.add_argument("dir", metavar="DIR")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=run_info)


def _no_sub(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_build(args: argparse.Namespace) -> int:
    from quco.corpus.build import DEFAULT_SHARD_SIZE, build_index

    res = build_index(
        args.corpus,
        args.out,
        tokenizer=args.tokenizer,
        shard_size=args.shard_size or DEFAULT_SHARD_SIZE,
        workers=args.workers,
        force=args.force,
        mem_gib=args.mem,
    )
    m = res.manifest
    for row in res.bad_rows[:50]:
        sys.stderr.write(f"quco: warning: skipped bad row {row}\n")
    if len(res.bad_rows) > 50:
        sys.stderr.write(f"quco: warning: ... and {len(res.bad_rows) - 50} more bad rows\n")
    if args.json:
        sys.stdout.write(json.dumps({"path": str(res.path), **m.to_dict()}) + "\n")
    else:
        sys.stdout.write(
            f"built {res.path}: {m.documents} documents, {m.tokens} tokens, {len(m.shards)} shard(s), "
            f"{len(res.bad_rows)} bad row(s) skipped, {m.build_seconds:.1f} s\n"
        )
    return 0


def info_dict(index_dir: str) -> dict[str, Any]:
    """The manifest of an index with sanity figures (files present, bytes per token)."""
    from quco.corpus.manifest import Manifest

    m = Manifest.load(index_dir, check_files=False)
    problems = m.file_problems(index_dir)
    corpus_bytes = sum(s.size for s in m.sources)
    return {
        **m.to_dict(),
        "path": str(index_dir),
        "n_shards": len(m.shards),
        "index_bytes": m.index_bytes,
        "corpus_bytes": corpus_bytes,
        "corpus_bytes_per_token": round(corpus_bytes / m.tokens, 3) if m.tokens else None,
        "files_ok": not problems,
        "problems": problems,
    }


def run_info(args: argparse.Namespace) -> int:
    d = info_dict(args.dir)
    if args.json:
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        lines = [
            f"index        {d['path']}",
            f"format       {d['format_version']} (quco {d['quco_version']}, built {d['built_at']} "
            f"in {d['build_seconds']:.1f} s)",
            f"tokenizer    {d['tokenizer']} (vocab {d['vocab_size']}, sha256 {d['vocab_sha256'][:12]}..., "
            f"{d['token_width']} bytes/token, eos {d['eos_token_id']})",
            f"documents    {d['documents']}",
            f"tokens       {d['tokens']}",
            f"shards       {d['n_shards']}: "
            + ", ".join(f"{s['documents']} docs/{s['tokens']} tok" for s in d["shards"]),
            f"sources      {len(d['sources'])} file(s), {d['corpus_bytes']} bytes, "
            f"{d['corpus_bytes_per_token']} bytes/token; {d['bad_rows']} bad row(s) skipped",
            f"index size   {d['index_bytes']} bytes",
            "files        "
            + ("all present with the recorded sizes" if d["files_ok"] else "; ".join(d["problems"])),
        ]
        sys.stdout.write("\n".join(lines) + "\n")
    return 0 if d["files_ok"] else 1
