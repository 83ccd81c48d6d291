"""Generate chain-of-thought answers on HaluEval development rows and split them into sentences to label.

The sentences are the input of the hand-labelled claim set (``eval/claims_gold.jsonl``):
the generator answers with :func:`quco.prompts.cot_prompt` (even rows closed-book,
odd rows with the row's knowledge passage), sentence by sentence as the guard
does (policy ``none``), and every sentence of every answer is written out,
unlabelled, in order. Development rows only (0-1999).

    python scripts/sample_claim_sentences.py --rows 100-139 --out eval/claims_sentences_smollm2.jsonl
    python scripts/sample_claim_sentences.py --rows 140-151 --model gemma3-270m --out eval/claims_sentences_gemma.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from quco.datasets import check_fit_rows, load_halueval_qa, parse_rows
from quco.guard import Guard
from quco.lm.generator import HFGenerator
from quco.nlp.sentences import sentence_spans
from quco.types import Document


class _Passage:
    """A retriever that returns the row's own knowledge passage (the with-passage condition)."""

    def __init__(self) -> None:
        self.text = ""

    def retrieve(self, query: str, k: int = 3) -> list[Document]:
        return [Document("knowledge", self.text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", required=True, help="development rows A-B (0-1999)")
    ap.add_argument("--model", default=None, help="generator (default SmolLM2-135M-Instruct)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    rows = parse_rows(args.rows)
    check_fit_rows(rows)
    gen = HFGenerator(args.model)
    passage = _Passage()
    closed = Guard(gen, policy="none", prompt="cot", max_sentences=5, max_new_tokens=48)
    with_passage = Guard(gen, retriever=passage, policy="single", prompt="cot", max_sentences=5, max_new_tokens=48)
    t0 = time.perf_counter()
    n = 0
    with open(args.out, "w", encoding="utf-8") as f:
        for row in load_halueval_qa(rows):
            passage.text = row.knowledge
            guard = closed if row.row % 2 == 0 else with_passage
            res = guard.answer(row.question)
            for i, (a, b) in enumerate(sentence_spans(res.answer)):
                rec = {
                    "id": f"{gen.name}-{row.row}-{i}",
                    "row": row.row,
                    "model": gen.name,
                    "condition": "closed_book" if row.row % 2 == 0 else "with_passage",
                    "question": row.question,
                    "sentence": res.answer[a:b],
                }
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
    print(f"{n} sentences from {len(rows)} rows in {time.perf_counter() - t0:.0f}s -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
