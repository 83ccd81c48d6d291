"""Reproduce (or rule out) the small-corpus build failure of issue 14.

Writes synthetic JSONL corpora of ``--docs`` documents of 20-120 random
words each (one corpus per seed), builds each with ``quco.corpus.build``, and
records which build and which fail, with the token count and the error:

    python scripts/build_band.py [--seeds 0-10] [--docs 200-500] [--label NAME]

Each run is stored under its label in ``eval/results/build_band.json`` (other
labels are kept), so the same corpora can be built by today's code and by an
older checkout (``PYTHONPATH=OLD_CHECKOUT python scripts/build_band.py --label before``).

Before the fix (issue 14), corpora of 17k-45k tokens (200-500 documents)
often failed with "the built index is inconsistent: table.0: size is not a
whole number of pointers": infini-gram's builder, run with several processes
on a shard of a few tens of thousands of tokens, exits 0 with a wrong table.
Every built index is also checked: counts of a few words against a brute-force
count over the token ids (the build must never leave a wrong table).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.append(str(REPO))  # after PYTHONPATH, so that an older checkout can be measured

#: words the corpora are drawn from (common words, names, numbers)
WORDS = (
    "the of and to in is was for on that with as by at from his her he she it they were are be this "
    "which or an had not but first one two three new after city river state team film album year "
    "season war party school church club music game house world life family group series league "
    "Paris France London England Berlin Germany Tokyo Japan Rome Italy Madrid Spain Vienna Austria "
    "Einstein Curie Newton Darwin Mozart Beethoven Tolkien Obama Lincoln Napoleon Cleopatra "
    "university company station village county district island mountain lake bridge tower museum "
    "1990 2001 1875 1066 42 seventeen hundred thousand million born died founded played released "
    "became moved joined won lost built opened closed named called known used made found"
).split()


def parse_range(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b or a) + 1))
    return out


def write_corpus(path: Path, seed: int, docs: tuple[int, int]) -> int:
    rng = random.Random(seed)
    n = rng.randint(*docs)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            words = [rng.choice(WORDS) for _ in range(rng.randint(20, 120))]
            words[0] = words[0].capitalize()
            f.write(json.dumps({"text": " ".join(words) + ".", "id": i}) + "\n")
    return n


def corpus_tokens(path: Path) -> int:
    """Tokens of a corpus in the default tokenizer (separators excluded), as the build counts them."""
    from quco.corpus.build import _tokenizer_ref, fast_tokenizer_info

    info = fast_tokenizer_info(*_tokenizer_ref(None))
    assert info is not None
    tk = info[0]
    texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]
    return sum(len(e.ids) for e in tk.encode_batch(texts, add_special_tokens=False))


def brute_count(index_dir: Path, ids: list[int]) -> int:
    """Occurrences of a token sequence, counted over the raw token files."""
    import numpy as np

    from quco.corpus.manifest import Manifest

    m = Manifest.load(index_dir)
    total = 0
    for s in m.shards:
        ds = np.fromfile(index_dir / f"tokenized.{s.index}", dtype="<u2" if m.token_width == 2 else "<u4")
        k = len(ids)
        if ds.size < k:
            continue
        win = np.lib.stride_tricks.sliding_window_view(ds, k)
        total += int(np.all(win == np.asarray(ids, dtype=ds.dtype), axis=1).sum())
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="0-10", help="corpus seeds, e.g. 0-10 or 3,5,7 (default 0-10)")
    ap.add_argument("--docs", default="200-500", help="documents per corpus, MIN-MAX (default 200-500)")
    ap.add_argument("--out", default=str(REPO / "eval/results/build_band.json"))
    ap.add_argument("--label", default="now", help="the key of this run in the JSON (default: now)")
    args = ap.parse_args()
    lo, _, hi = args.docs.partition("-")
    docs = (int(lo), int(hi or lo))

    from quco.corpus.build import build_index
    from quco.corpus.local import LocalStats
    from quco.errors import QucoError

    rows = []
    with tempfile.TemporaryDirectory(prefix="quco-band-") as tmp:
        for seed in parse_range(args.seeds):
            corpus = Path(tmp) / f"c{seed}.jsonl"
            n_docs = write_corpus(corpus, seed, docs)
            out = Path(tmp) / f"idx{seed}"
            t0 = time.monotonic()
            row: dict = {"seed": seed, "documents": n_docs}
            try:
                res = build_index([corpus], out, progress=False)
            except QucoError as exc:
                row.update(ok=False, error=str(exc))
            else:
                m = res.manifest
                row.update(ok=True, tokens=m.tokens, tok_cnt=m.tokens + m.documents)
                with LocalStats(out) as st:
                    wrong = []
                    for w in ("the", "Paris", "Einstein", "river", "1990"):
                        for v in st.variants(w):
                            got, want = st.count_ids(v).value, brute_count(out, v)
                            if got != want:
                                wrong.append(f"{w}{v}: {got} != {want}")
                row["wrong_counts"] = wrong
                row["ok"] = not wrong
            row["seconds"] = round(time.monotonic() - t0, 2)
            if "tokens" not in row:  # count the tokens of a failed build from its corpus
                row["tokens"] = corpus_tokens(corpus)
            rows.append(row)
            status = "ok  " if row["ok"] else "FAIL"
            print(f"seed {seed:3d}  docs {n_docs:4d}  tokens {row['tokens']!s:>7}  {status}  "
                  f"{row.get('error') or '; '.join(row.get('wrong_counts', []))}", flush=True)  # fmt: skip
    failed = sum(not r["ok"] for r in rows)
    print(f"{failed} of {len(rows)} corpora failed to build or counted wrong (cpus: {os.cpu_count()})")
    import quco.corpus.build as build_mod

    out = Path(args.out)
    runs = json.loads(out.read_text()) if out.is_file() else {}
    runs[args.label] = {
        "command": " ".join(["python", "scripts/build_band.py", *sys.argv[1:]]),
        "quco": str(Path(build_mod.__file__).resolve().parent.parent.parent),
        "cpus": os.cpu_count(),
        "failed": failed,
        "built": len(rows) - failed,
        "corpora": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
