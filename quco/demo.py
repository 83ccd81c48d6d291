"""The demo corpora and indexes, built from packaged data when missing.

Recipe (also in ``indexes/README.md``): three corpora exported as JSONL —

- ``halueval_qa_knowledge.jsonl``: HaluEval QA knowledge passages (deduplicated);
- ``halueval_news.jsonl``: HaluEval summarization news articles;
- ``wiki_summaries.jsonl``: ~10k English Wikipedia vital-article summaries —

then a corpus index over all three (``index/``), a retrieval collection over the
same passages (``retrieval/``), and, for the corpus-coverage ablation only, an
index without the HaluEval knowledge passages (``index-noknowledge/``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from quco.datasets import halueval_path, wiki_summaries_path

log = logging.getLogger(__name__)

KNOWLEDGE = "halueval_qa_knowledge.jsonl"
NEWS = "halueval_news.jsonl"
WIKI = "wiki_summaries.jsonl"


@dataclass(frozen=True)
class DemoPaths:
    """Where the demo artefacts live under one base folder."""

    base: Path

    @property
    def corpus(self) -> Path:
        return self.base / "corpus"

    @property
    def index(self) -> Path:
        return self.base / "index"

    @property
    def index_noknowledge(self) -> Path:
        return self.base / "index-noknowledge"

    @property
    def retrieval(self) -> Path:
        return self.base / "retrieval"

    def corpus_files(self, *, knowledge: bool = True) -> list[Path]:
        names = [KNOWLEDGE, NEWS, WIKI] if knowledge else [NEWS, WIKI]
        return [self.corpus / n for n in names]


def default_base() -> Path:
    """``$QUCO_DEMO_DIR``, else ``indexes/built`` in the working directory."""
    return Path(os.environ.get("QUCO_DEMO_DIR", "indexes/built"))


def _write_jsonl(path: Path, rows: list[dict[str, object]]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def export_demo_corpus(out_dir: str | Path) -> list[Path]:
    """Write the three demo corpora as JSONL (``text`` + metadata); skip files already there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / KNOWLEDGE, out / NEWS, out / WIKI]
    if not paths[0].exists():
        seen: set[str] = set()
        rows: list[dict[str, object]] = []
        with open(halueval_path("qa"), encoding="utf-8") as f:
            for i, line in enumerate(f):
                k = json.loads(line)["knowledge"].strip()
                if k and k not in seen:
                    seen.add(k)
                    rows.append({"text": k, "source": "halueval_qa", "row": i})
        _write_jsonl(paths[0], rows)
    if not paths[1].exists():
        seen = set()
        rows = []
        with open(halueval_path("summarization"), encoding="utf-8") as f:
            for i, line in enumerate(f):
                d = json.loads(line)["document"].strip()
                if d and d not in seen:
                    seen.add(d)
                    rows.append({"text": d, "source": "halueval_news", "row": i})
        _write_jsonl(paths[1], rows)
    if not paths[2].exists():
        with open(wiki_summaries_path(), encoding="utf-8") as f:
            data = json.load(f)
        rows = [
            {"text": v["extract"].strip(), "title": v.get("title", k), "source": "wikipedia"}
            for k, v in sorted(data.items())
            if isinstance(v, dict) and v.get("extract", "").strip()
        ]
        _write_jsonl(paths[2], rows)
    return paths
