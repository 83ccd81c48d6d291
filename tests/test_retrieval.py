"""Retrievers: BM25 (bm25s), dense (sentence-transformers + FAISS), LangChain adapter, CLI."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from quco.errors import BadInputError, CorpusError, CorruptIndexError, IndexNotFoundError
from quco.protocols import Retriever
from quco.retrieval import (
    MAX_QUERY_CHARS,
    BM25Retriever,
    DenseRetriever,
    LangChainRetriever,
    Passage,
    build_retriever,
    open_retriever,
    passages_from_corpus,
    split_passages,
)
from quco.retrieval.collection import MANIFEST, PASSAGES

# query -> index of the obviously right passage in tests/fixtures/retrieval.py
OBVIOUS = {
    "Where was Marie Curie born?": 1,
    "Which engineer's company designed the Eiffel Tower?": 6,
    "What is the highest mountain in Africa?": 20,
    "Who created Python and when was it first released?": 36,
    "Where did Bach work as Thomaskantor?": 28,
    "Which mathematician worked with Charles Babbage on the Analytical Engine?": 16,
}


# --------------------------------------------------------------------------- passages


def test_split_passages_keeps_short_documents_whole_and_splits_long_ones_at_sentences() -> None:
    assert split_passages("  One short   document.  ", 100) == ["One short document."]
    assert split_passages("   ", 100) == []
    sentences = [f"Sentence number {i} has exactly seven words." for i in range(30)]
    text = " ".join(sentences)  # 210 words
    parts = split_passages(text, 50)
    assert len(parts) > 1
    assert " ".join(parts).split() == text.split()  # nothing lost, order kept
    for p in parts:
        assert len(p.split()) <= 50
        assert p.endswith("words.")  # cut at sentence ends only
    long_sentence = " ".join(["word"] * 250) + "."
    cut = split_passages(long_sentence, 100)
    assert [len(c.split()) for c in cut] == [100, 100, 50]
    # a tiny tail joins the passage before it
    assert len(split_passages(" ".join(["w"] * 100) + ". Tail end.", 100)) == 1
    tail = split_passages(" ".join(["w"] * 99) + ". x. Tail.", 50)
    assert all(len(p.split()) >= 12 for p in tail)
    with pytest.raises(BadInputError):
        split_passages("text", 0)


def test_passages_from_corpus_keeps_metadata_ids_and_reports_bad_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corpus = tmp_path / "c.jsonl"
    long_text = " ".join(f"Fact {i} is about the river." for i in range(60))  # 360 words
    corpus.write_text(
        json.dumps({"id": "doc-a", "title": "A", "text": "Short text."})
        + "\nnot json\n"
        + json.dumps({"title": "B", "text": long_text})
        + "\n",
        encoding="utf-8",
    )
    with caplog.at_level("WARNING"):
        ps = list(passages_from_corpus([corpus], passage_words=100))
    assert ps[0].id == "doc-a#0" and ps[0].text == "Short text."
    assert ps[0].metadata["title"] == "A" and ps[0].metadata["passage_id"] == "doc-a#0"
    rest = ps[1:]
    assert len(rest) == 4 and [p.id for p in rest] == [f"c.jsonl:3#{i}" for i in range(4)]
    assert all(p.metadata["title"] == "B" and p.metadata["line"] == 3 for p in rest)
    assert "c.jsonl:2" in caplog.text  # the bad row, with its line number
    with pytest.raises(CorpusError):
        list(passages_from_corpus([tmp_path / "missing.jsonl"]))


# --------------------------------------------------------------------------- BM25


def test_bm25_ranks_the_obvious_passage_first(bm25_retriever: BM25Retriever, passages: list[str]) -> None:
    assert isinstance(bm25_retriever, Retriever)
    for query, want in OBVIOUS.items():
        docs = bm25_retriever.retrieve(query, k=3)
        assert docs[0].text == passages[want], query
        assert docs[0].id == f"p{want}#0"
        assert docs[0].metadata["id"] == f"p{want}"
        scores = [d.score for d in docs]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0


def _lucene_bm25(corpus: list[list[str]], query: list[str], k1: float = 1.5, b: float = 0.75) -> np.ndarray:
    """Lucene's BM25 (as in Lucene >= 8 and bm25s: no (k1 + 1) factor in the numerator)."""
    n = len(corpus)
    avgdl = sum(len(d) for d in corpus) / n
    df = Counter(t for d in corpus for t in set(d))
    out = np.zeros(n)
    for i, d in enumerate(corpus):
        tf = Counter(d)
        for t in query:
            if t in tf:
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                out[i] += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(d) / avgdl))
    return out


def test_bm25_scores_equal_brute_force_lucene_bm25(
    bm25_retriever: BM25Retriever, passages: list[str]
) -> None:
    import bm25s

    corpus = bm25s.tokenize(passages, stopwords="en", return_ids=False, show_progress=False)
    for query in [*OBVIOUS, "river dolphins in Peru", "coral reef bleaching"]:
        q = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
        expected = _lucene_bm25(corpus, q)
        docs = bm25_retriever.retrieve(query, k=5)
        want = [i for i in sorted(range(len(passages)), key=lambda i: (-expected[i], i)) if expected[i] > 0][
            :5
        ]
        assert want and [d.id for d in docs] == [f"p{i}#0" for i in want]
        np.testing.assert_allclose([d.score for d in docs], [expected[i] for i in want], rtol=1e-5)


def test_results_drop_repeated_texts_and_respect_k() -> None:
    texts = [
        "The Nile is the longest river.",
        "The Nile is the longest river.",
        "The  Nile is the longest   river.",  # same words, other spacing
        "The Nile flows into the Mediterranean.",
        "Rivers of Africa include the Nile and the Congo.",
        "The Danube flows through Vienna.",
    ]
    r = BM25Retriever.from_texts(texts)
    docs = r.retrieve("Nile river", k=3)
    assert len(docs) == 3
    assert len({" ".join(d.text.split()) for d in docs}) == 3
    assert docs[0].id == "0"
    assert "Danube" not in " ".join(d.text for d in docs)
    assert len(r.retrieve("Nile", k=10)) == 3  # only three distinct passages mention it


def test_bad_queries_and_k(bm25_retriever: BM25Retriever) -> None:
    assert bm25_retriever.retrieve("", k=3) == []
    assert bm25_retriever.retrieve("   \n", k=3) == []
    assert bm25_retriever.retrieve("the of and", k=3) == []  # stop words only
    assert bm25_retriever.retrieve("zzzqqq unknownword", k=3) == []
    for bad_k in (0, -1, 2.5, "3", True):
        with pytest.raises(BadInputError):
            bm25_retriever.retrieve("Eiffel Tower", k=bad_k)  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        bm25_retriever.retrieve(None, k=3)  # type: ignore[arg-type]
    with pytest.raises(BadInputError):
        bm25_retriever.retrieve_many("Eiffel Tower", k=3)
    huge = "Where was Marie Curie born? " + "blah " * 20_000  # 100k+ characters
    assert len(huge) > 100_000 > MAX_QUERY_CHARS
    docs = bm25_retriever.retrieve(huge, k=3)
    assert 0 < len(docs) <= 3


def test_retrieve_many_equals_single_queries(bm25_retriever: BM25Retriever) -> None:
    queries = [*OBVIOUS, "", "Amazon River"]
    batched = bm25_retriever.retrieve_many(queries, k=4)
    assert batched == [bm25_retriever.retrieve(q, k=4) for q in queries]
    assert batched[-2] == []


# --------------------------------------------------------------------------- persistence


def test_bm25_round_trip_and_manifest(
    bm25_dir: Path, bm25_retriever: BM25Retriever, passages: list[str]
) -> None:
    fresh = BM25Retriever([Passage(f"p{i}#0", t, {}) for i, t in enumerate(passages)])
    for q in OBVIOUS:
        a, b = bm25_retriever.retrieve(q, k=5), fresh.retrieve(q, k=5)
        assert [d.id for d in a] == [d.id for d in b]
        np.testing.assert_allclose([d.score for d in a], [d.score for d in b], rtol=1e-6)
    m = json.loads((bm25_dir / MANIFEST).read_text())
    assert m["kind"] == "bm25" and m["kinds"] == ["bm25"] and m["passages"] == len(passages)
    src = Path(m["sources"][0]["path"])
    assert m["sources"][0]["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert m["quco_version"] and m["built_at"] and m["bm25"]["stopwords"] == "en"
    assert not [p for p in bm25_dir.parent.iterdir() if ".tmp-" in p.name]


def test_open_missing_or_corrupt_index(tmp_path: Path, bm25_dir: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="no retrieval index"):
        open_retriever(tmp_path / "nothing-here")
    with pytest.raises(BadInputError):
        open_retriever(bm25_dir, kind="dense")

    def broken(name: str) -> Path:
        d = tmp_path / name
        shutil.copytree(bm25_dir, d)
        return d

    d = broken("bad-manifest")
    (d / MANIFEST).write_text("{not json")
    with pytest.raises(CorruptIndexError):
        open_retriever(d)
    d = broken("short-passages")
    lines = (d / PASSAGES).read_text().splitlines()
    (d / PASSAGES).write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(CorruptIndexError):
        open_retriever(d)
    d = broken("garbled-passages")
    (d / PASSAGES).write_text("garbage\n" * len(lines))
    with pytest.raises(CorruptIndexError):
        open_retriever(d)
    d = broken("no-bm25")
    shutil.rmtree(d / "bm25")
    with pytest.raises(CorruptIndexError):
        open_retriever(d)
    d = broken("bm25-file-lost")
    next((d / "bm25").glob("*.npy")).unlink()
    with pytest.raises(CorruptIndexError):
        open_retriever(d)


def test_build_replaces_an_index_atomically_and_refuses_other_folders(
    tmp_path: Path, retrieval_corpus: Path
) -> None:
    out = tmp_path / "idx"
    build_retriever([retrieval_corpus], out, show_progress=False, passage_words=100)
    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"text": "Only one passage about the Nile."}) + "\n")
    m = build_retriever([small], out, show_progress=False)
    assert m["passages"] == 1 and len(open_retriever(out)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx", "small.jsonl"]  # no temp or old dirs
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("not an index")
    with pytest.raises(BadInputError):
        build_retriever([small], other, show_progress=False)
    assert (other / "keep.txt").read_text() == "not an index"
    with pytest.raises(BadInputError):
        build_retriever([small], tmp_path / "x", kind="sparse", show_progress=False)


# --------------------------------------------------------------------------- CLI


def test_cli_build_search_and_missing_dir(tmp_path: Path, retrieval_corpus: Path, capsys) -> None:
    from quco.cli import main

    out = tmp_path / "cli-idx"
    rc = main(
        [
            "retrieval",
            "build",
            str(retrieval_corpus),
            "--out",
            str(out),
            "--passage-words",
            "50",
            "--no-progress",
        ]
    )
    assert rc == 0
    assert "40 passages" in capsys.readouterr().out
    assert json.loads((out / MANIFEST).read_text())["passage_words"] == 50
    rc = main(["retrieval", "search", str(out), "Where was Marie Curie born?", "-k", "2", "--json"])
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    assert rc == 0 and row["documents"][0]["id"] == "p1#0" and len(row["documents"]) == 2
    # a missing index: one line on stderr, non-zero exit, no traceback (real process)
    proc = subprocess.run(
        [sys.executable, "-m", "quco", "retrieval", "search", str(tmp_path / "missing"), "query"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "no retrieval index" in proc.stderr


def test_import_is_light() -> None:
    code = (
        "import sys, quco.retrieval, quco.cli.retrieval_cmd\n"
        "heavy = [m for m in ('torch','faiss','bm25s','sentence_transformers','langchain_core','numpy') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == ""


# --------------------------------------------------------------------------- FAISS vs exact


def _exact_topk(emb: np.ndarray, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = q @ emb.T
    rows = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, rows, axis=1), rows


def _random_unit(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype("float32")
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_faiss_flat_and_hnsw_equal_exact_cosine_on_random_vectors(tmp_path: Path) -> None:
    emb, queries = _random_unit(3000, 32, 0), _random_unit(40, 32, 1)
    ps = [Passage(str(i), f"passage {i}", {}) for i in range(len(emb))]
    exact_s, exact_r = _exact_topk(emb, queries, 5)

    flat = DenseRetriever.from_embeddings(ps, emb, use_gpu=False)
    assert flat.index_type == "IndexFlatIP"
    s, r = flat.search_vectors(queries, 5)
    np.testing.assert_array_equal(r, exact_r)
    np.testing.assert_allclose(s, exact_s, atol=1e-5)

    hnsw = DenseRetriever.from_embeddings(ps, emb, hnsw_threshold=1000, use_gpu=False)
    assert hnsw.index_type == "IndexHNSWFlat"
    s, r = hnsw.search_vectors(queries, 5)
    hits = sum(len(set(a) & set(b)) for a, b in zip(r.tolist(), exact_r.tolist(), strict=True))
    assert hits / exact_r.size >= 0.98
    same = r == exact_r
    assert same.mean() >= 0.95
    np.testing.assert_allclose(s[same], exact_s[same], atol=1e-5)  # scores are exact cosines

    # save + load keeps the HNSW index and its answers
    section = hnsw.save(tmp_path)
    assert section["faiss_index"] == "IndexHNSWFlat" and section["dims"] == 32
    loaded = DenseRetriever.load(tmp_path, ps, section, use_gpu=False)
    s2, r2 = loaded.search_vectors(queries, 5)
    np.testing.assert_array_equal(r2, r)
    with pytest.raises(CorruptIndexError):
        DenseRetriever.load(tmp_path, ps[:-1], section, use_gpu=False)
    (tmp_path / "dense" / "index.faiss").write_bytes(b"not a faiss index")
    with pytest.raises(CorruptIndexError):
        DenseRetriever.load(tmp_path, ps, section, use_gpu=False)


# --------------------------------------------------------------------------- dense (real model)


@pytest.mark.slow
def test_dense_ranks_the_obvious_passage_first(dense_retriever: DenseRetriever, passages: list[str]) -> None:
    assert isinstance(dense_retriever, Retriever)
    assert dense_retriever.index_type == "IndexFlatIP" and dense_retriever.dims == 384
    batched = dense_retriever.retrieve_many(list(OBVIOUS), k=3)
    for (query, want), docs in zip(OBVIOUS.items(), batched, strict=True):
        assert docs[0].text == passages[want], query
        assert -1.0 <= docs[-1].score <= docs[0].score <= 1.0
    assert dense_retriever.retrieve("", k=3) == []
    assert len(dense_retriever.retrieve("Eiffel " * 30_000, k=2)) == 2
    with pytest.raises(BadInputError):
        dense_retriever.retrieve("Eiffel", k=0)


@pytest.mark.slow
def test_dense_faiss_equals_exact_cosine_over_fresh_embeddings(
    dense_retriever: DenseRetriever, passages: list[str]
) -> None:
    from quco.retrieval.dense import load_encoder

    model = load_encoder()  # the same (cached) model; the embeddings are computed afresh
    emb = model.encode(passages, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(dense_retriever.embeddings(), emb, atol=1e-5)
    queries = list(OBVIOUS)
    q = model.encode(queries, normalize_embeddings=True, convert_to_numpy=True)
    exact_s, exact_r = _exact_topk(emb, q, 5)
    for query, s_row, r_row in zip(queries, exact_s, exact_r, strict=True):
        docs = dense_retriever.retrieve(query, k=5)
        assert [d.id for d in docs] == [f"p{i}#0" for i in r_row]
        np.testing.assert_allclose([d.score for d in docs], s_row, atol=1e-4)


@pytest.mark.slow
def test_build_both_kinds_in_one_directory(tmp_path: Path, retrieval_corpus: Path) -> None:
    out = tmp_path / "both"
    m = build_retriever([retrieval_corpus], out, kind="both", show_progress=False)
    assert m["kind"] == "both" and m["kinds"] == ["bm25", "dense"]
    assert (
        m["embedding_model"] == "all-minilm-l6-v2" and m["dims"] == 384 and m["faiss_index"] == "IndexFlatIP"
    )
    assert isinstance(open_retriever(out), BM25Retriever)
    dense = open_retriever(out, kind="dense", use_gpu=False)
    assert isinstance(dense, DenseRetriever)
    assert dense.retrieve("Where was Marie Curie born?", k=1)[0].id == "p1#0"


# --------------------------------------------------------------------------- LangChain


def test_langchain_adapter_wraps_a_custom_base_retriever() -> None:
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document as LCDocument
    from langchain_core.retrievers import BaseRetriever

    class KeywordRetriever(BaseRetriever):
        docs: list[LCDocument]

        def _get_relevant_documents(
            self, query: str, *, run_manager: CallbackManagerForRetrieverRun
        ) -> list[LCDocument]:
            words = set(query.lower().split())
            return [d for d in self.docs if words & set(d.page_content.lower().rstrip(".").split())]

    lc = KeywordRetriever(
        docs=[
            LCDocument(page_content="Paris is the capital of France.", id="fr", metadata={"score": 0.9}),
            LCDocument(page_content="Paris is the capital of France.", id="dup"),
            LCDocument(page_content="Berlin is the capital of Germany.", metadata={"src": "wiki"}),
            LCDocument(page_content="Rome is the capital of Italy."),
        ]
    )
    r = LangChainRetriever(lc)
    assert isinstance(r, Retriever)
    docs = r.retrieve("capital", k=2)
    assert [d.text for d in docs] == ["Paris is the capital of France.", "Berlin is the capital of Germany."]
    assert docs[0].id == "fr" and docs[0].score == 0.9  # score from metadata
    assert docs[1].score == pytest.approx(1 / 3) and docs[1].metadata == {"src": "wiki"}  # 1/rank
    assert r.retrieve("germany", k=3)[0].text.startswith("Berlin")
    assert r.retrieve("  ", k=3) == []
    assert r.retrieve_many(["italy", "nothing"], k=1)[1] == []
    with pytest.raises(BadInputError):
        r.retrieve("capital", k=0)
    with pytest.raises(BadInputError):
        LangChainRetriever(object())
