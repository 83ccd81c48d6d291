"""The demo corpora and indexes, built from packaged data when missing.

Recipe (also in ``indexes/README.md``): three corpora exported as JSONL —

- ``halueval_qa_knowledge.jsonl``: HaluEval QA knowledge passages (deduplicated);
- ``halueval_news.jsonl``: HaluEval summarization news articles;
- ``wiki_summaries.jsonl``: ~10k English Wikipedia vital-article summaries —

then a corpus index over all three (``index/``), a retrieval collection over the
same passages (``retrieval/``), and, for ablations only, an index without the
HaluEval knowledge passages (``index-noknowledge/``, the corpus-coverage
ablation) and one without the news articles (``index-nonews/``, the
unseen-domain run of the ``summarization`` protocol).
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
    def index_nonews(self) -> Path:
        return self.base / "index-nonews"

    @property
    def retrieval(self) -> Path:
        return self.base / "retrieval"

    def corpus_files(self, *, knowledge: bool = True, news: bool = True) -> list[Path]:
        """The corpus files of an index: all three, or without the knowledge passages and/or the news."""
        names = [n for n, keep in ((KNOWLEDGE, knowledge), (NEWS, news), (WIKI, True)) if keep]
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


def _unique_rows(path: Path, field: str, source: str) -> list[dict[str, object]]:
    """Corpus rows from one text field of a JSONL file, empty and repeated texts dropped."""
    seen: set[str] = set()
    rows: list[dict[str, object]] = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            text = json.loads(line)[field].strip()
            if text and text not in seen:
                seen.add(text)
                rows.append({"text": text, "source": source, "row": i})
    return rows


def export_demo_corpus(out_dir: str | Path) -> list[Path]:
    """Write the three demo corpora as JSONL (``text`` + metadata); skip files already there."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / KNOWLEDGE, out / NEWS, out / WIKI]
    if not paths[0].exists():
        _write_jsonl(paths[0], _unique_rows(halueval_path("qa"), "knowledge", "halueval_qa"))
    if not paths[1].exists():
        _write_jsonl(paths[1], _unique_rows(halueval_path("summarization"), "document", "halueval_news"))
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


def _log_step(msg: str) -> None:
    import sys

    sys.stderr.write(f"quco demo: {msg}\n")


def ensure_demo(
    base: str | Path | None = None, *, dense: bool = False, noknowledge: bool = False, nonews: bool = False
) -> DemoPaths:
    """Build whatever of the demo artefacts is missing; return their paths.

    Args:
        base: base folder (default :func:`default_base`).
        dense: also build the dense (FAISS) retriever beside BM25.
        noknowledge: also build the ablation index without the HaluEval knowledge passages.
        nonews: also build the ablation index without the HaluEval news articles.
    """
    from quco.corpus.build import build_index
    from quco.corpus.manifest import MANIFEST_NAME
    from quco.retrieval import build_retriever

    paths = DemoPaths(Path(base) if base is not None else default_base())
    export_demo_corpus(paths.corpus)
    if not (paths.index / MANIFEST_NAME).exists():
        _log_step(f"building the corpus index in {paths.index} (a few minutes, once)")
        build_index(paths.corpus_files(), paths.index, force=True)
    if not (paths.retrieval / "quco-retrieval.json").exists():
        _log_step(f"building the retrieval collection in {paths.retrieval} (about a minute, once)")
        build_retriever(paths.corpus_files(), paths.retrieval, kind="both" if dense else "bm25")
    if noknowledge and not (paths.index_noknowledge / MANIFEST_NAME).exists():
        _log_step(f"building the ablation index without HaluEval knowledge in {paths.index_noknowledge}")
        build_index(paths.corpus_files(knowledge=False), paths.index_noknowledge, force=True)
    if nonews and not (paths.index_nonews / MANIFEST_NAME).exists():
        _log_step(f"building the ablation index without the HaluEval news articles in {paths.index_nonews}")
        build_index(paths.corpus_files(news=False), paths.index_nonews, force=True)
    return paths


def write_demo_audit_input(path: str | Path, rows: int = 10) -> Path:
    """A small labelled audit input: HaluEval QA dev rows with their right (0) and hallucinated (1) answers."""
    from quco.datasets import iter_halueval_qa

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    recs = []
    for r in iter_halueval_qa(range(0, rows)):
        recs.append({"id": f"{r.row}-right", "question": r.question, "answer": r.right_answer, "label": 0})
        recs.append({"id": f"{r.row}-hallucinated", "question": r.question, "answer": r.hallucinated_answer, "label": 1})
    _write_jsonl(out, recs)  # type: ignore[arg-type]
    return out
