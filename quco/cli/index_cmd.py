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
    b.add_argument("--workers", type=int, default=None, metavar="N",
                   help="local engine: tokenizer processes (default 1: the tokenizer's own threads); "
                   "ray engine: shard tasks at once (default: the cluster's CPUs)")  # fmt: skip
    b.add_argument("--split", type=int, default=1, metavar="N",
                   help="split the corpus by documents into N indexes, one per server: OUT/part-0 ... "
                   "and OUT/shards.json (document i goes to part i mod N; each part's manifest says "
                   "which part of which corpus it is)")  # fmt: skip
    b.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="ray: tokenize and build the shards in parallel as Ray tasks (extra 'distributed'), "
                   "then write the manifests once at the end (default: local)")  # fmt: skip
    b.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: the Ray cluster to join (default: a local Ray runtime); every "
                   "node must write OUT's folder at the same path")  # fmt: skip
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
    from quco.errors import BadInputError

    if args.split < 1:
        raise BadInputError(f"--split must be positive, got {args.split}")
    if args.workers is not None and args.workers < 1:
        raise BadInputError(f"--workers must be positive, got {args.workers}")
    if args.address and args.engine != "ray":
        raise BadInputError("--address goes with --engine ray")
    if args.engine == "ray" or args.split > 1:
        return _run_parts(args)
    res = build_index(
        args.corpus,
        args.out,
        tokenizer=args.tokenizer,
        shard_size=args.shard_size or DEFAULT_SHARD_SIZE,
        workers=args.workers or 1,
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


def _run_parts(args: argparse.Namespace) -> int:
    from quco.corpus.build import DEFAULT_SHARD_SIZE
    from quco.corpus.build_parts import build_parts

    res = build_parts(
        args.corpus,
        args.out,
        parts=args.split,
        engine=args.engine,
        address=args.address,
        workers=args.workers if args.engine == "ray" else None,
        tokenizer=args.tokenizer,
        shard_size=args.shard_size or DEFAULT_SHARD_SIZE,
        force=args.force,
        mem_gib=args.mem,
    )
    for row in res.bad_rows[:50]:
        sys.stderr.write(f"quco: warning: skipped bad row {row}\n")
    if len(res.bad_rows) > 50:
        sys.stderr.write(f"quco: warning: ... and {len(res.bad_rows) - 50} more bad rows\n")
    docs = sum(m.documents for m in res.manifests)
    tokens = sum(m.tokens for m in res.manifests)
    shards = sum(len(m.shards) for m in res.manifests)
    if args.json:
        body: dict[str, Any] = {"path": str(res.path), "seconds": res.seconds, "bad_rows": len(res.bad_rows)}
        if res.shard_map is None:
            body.update(res.manifests[0].to_dict())
        else:
            body["shard_map"] = str(res.shard_map)
            body["parts"] = [{"path": str(p), **m.to_dict()} for p, m in zip(res.part_paths, res.manifests)]
        sys.stdout.write(json.dumps(body) + "\n")
        return 0
    what = f"{len(res.manifests)} parts, " if res.shard_map is not None else ""
    sys.stdout.write(
        f"built {res.path}: {what}{docs} documents, {tokens} tokens, {shards} shard(s), "
        f"{len(res.bad_rows)} bad row(s) skipped, {res.seconds:.1f} s ({args.engine} engine)\n"
    )
    if res.shard_map is not None:
        sys.stdout.write(
            f"parts: {', '.join(str(p) for p in res.part_paths)}; shard map {res.shard_map}\n"
            "serve each part with 'quco serve PART --port P', then use --index URL0,URL1,... "
            "(or a shard map listing the URLs)\n"
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
        "thresholds": _thresholds(m.tokens),
    }


def _thresholds(tokens: int) -> dict[str, Any]:
    """The data side's thresholds for this index: the defaults in use (τ_entity: the paper's rate scaled to it)."""
    from quco.risk.thresholds import (
        ABSOLUTE_ENTITY,
        DEFAULT_COOC,
        DEFAULT_ENTITY,
        PAPER_ENTITY_RATE,
        Threshold,
    )

    paper = Threshold.parse(PAPER_ENTITY_RATE)
    return {
        "tau_entity_default": Threshold.parse(DEFAULT_ENTITY).effective(tokens) if tokens else None,
        "tau_entity_default_spec": DEFAULT_ENTITY,
        "tau_cooc_default": Threshold.parse(DEFAULT_COOC).effective(tokens),
        "paper_entity_rate": PAPER_ENTITY_RATE,
        "tau_entity_paper_rate": paper.effective(tokens) if tokens else None,
        "tau_entity_absolute": float(ABSOLUTE_ENTITY),
    }


def run_info(args: argparse.Namespace) -> int:
    d = info_dict(args.dir)
    if args.json:
        sys.stdout.write(json.dumps(d) + "\n")
    else:
        th = d["thresholds"]
        lines = [
            f"index        {d['path']}",
            f"format       {d['format_version']} (quco {d['quco_version']}, built {d['built_at']} "
            f"in {d['build_seconds']:.1f} s)",
            f"tokenizer    {d['tokenizer']} (vocab {d['vocab_size']}, sha256 {d['vocab_sha256'][:12]}..., "
            f"{d['token_width']} bytes/token, eos {d['eos_token_id']})",
            f"documents    {d['documents']}",
            f"tokens       {d['tokens']}",
            *(
                [
                    f"partition    part {p['part'] + 1} of {p['parts']} of corpus {p['corpus_id']} ({p['assignment']})"
                ]
                if (p := d.get("partition"))
                else []
            ),
            f"shards       {d['n_shards']}: "
            + ", ".join(f"{s['documents']} docs/{s['tokens']} tok" for s in d["shards"]),
            f"sources      {len(d['sources'])} file(s), {d['corpus_bytes']} bytes, "
            f"{d['corpus_bytes_per_token']} bytes/token; {d['bad_rows']} bad row(s) skipped",
            f"index size   {d['index_bytes']} bytes",
            "τ_entity     "
            + (f"{th['tau_entity_default']:.4g}" if th["tau_entity_default"] is not None else "undefined")
            + f" in use (the default: the paper's rate {th['tau_entity_default_spec']} scaled to this index; "
            f"--tau-entity {th['tau_entity_absolute']:g} for the paper's count unscaled)",
            f"τ_cooc       {th['tau_cooc_default']:g} in use (the default: a claim whose head and tail never co-occur)",
            "files        "
            + ("all present with the recorded sizes" if d["files_ok"] else "; ".join(d["problems"])),
        ]
        sys.stdout.write("\n".join(lines) + "\n")
    return 0 if d["files_ok"] else 1
