"""The rows a detector evaluation rates, under each protocol.

- ``self`` (the headline): the generator answers HaluEval QA questions itself,
  closed-book and with the row's knowledge passage, from
  :func:`quco.prompts.qa_prompt`; its answer is labelled by
  :mod:`quco.evaluation.labels`, and its confidence comes from the generation.
  Generations are cached per (model, row, condition) in a JSONL file so that
  ablations and re-runs reuse them.
- ``paired``: HaluEval's given right (label 0) and hallucinated (label 1)
  answers, scored by a :class:`~quco.protocols.Scorer` under ``qa_prompt``.
- ``summarization``: HaluEval summarization's given right (label 0) and
  hallucinated (label 1) summaries of a news article; the "question" is
  :func:`summary_question` (the instruction and the article's first
  :data:`SUMMARY_WORDS` words), which is also the scorer's prompt.
- a user JSONL with ``question``, ``answer``, ``label`` (1 = hallucinated).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quco.datasets import QARow, SummaryRow
from quco.errors import BadInputError
from quco.evaluation.labels import is_comparison, self_label
from quco.protocols import Generator, Scorer
from quco.types import Confidence, Generation, TokenConfidence

log = logging.getLogger(__name__)

CLOSED = "closed_book"
PASSAGE = "with_passage"
CONDITIONS = (CLOSED, PASSAGE)
#: generation length cap for the short answers of the ``self`` protocol
MAX_NEW_TOKENS = 24

#: article words kept in a ``summarization`` question (most CNN/DailyMail articles are longer: their
#: first part carries most of what a summary says, and the whole article makes a ~1,000-token prompt)
SUMMARY_WORDS = 400

PromptFn = Callable[[str, Sequence[str]], str]


@dataclass(frozen=True)
class EvalItem:
    """One rated answer.

    Attributes:
        row: source row (HaluEval row number or line number of a user file).
        group: cross-validation group (the question): rows of one group share a fold.
        condition: ``closed_book``, ``with_passage``, ``paired`` or ``user``.
        question: the question.
        answer: the answer rated.
        label: 1 = hallucinated (wrong), 0 = correct.
        gold: the reference answer ("" when unknown).
        comparison: the gold answer appears in the question (reported separately).
        confidence: the model's token confidences for ``answer`` (None without a model).
        prompt: the prompt the answer was produced or scored under.
    """

    row: int
    group: str
    condition: str
    question: str
    answer: str
    label: int
    gold: str = ""
    comparison: bool = False
    confidence: Confidence | None = None
    prompt: str | None = None


def _conf_to_json(c: Confidence) -> list[list[Any]]:
    return [[t.token, t.token_id, round(t.logprob, 6), round(t.entropy, 6)] for t in c.tokens]


def _conf_from_json(rows: Iterable[Sequence[Any]]) -> Confidence:
    return Confidence(tuple(TokenConfidence(str(a), int(b), float(c), float(d)) for a, b, c, d in rows))


class GenerationCache:
    """Generations of one model, keyed by (row, condition), in an append-only JSONL file."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path else None
        self._data: dict[tuple[int, str], Generation] = {}
        if self.path and self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        d = json.loads(line)
                        self._data[(int(d["row"]), str(d["condition"]))] = Generation(
                            d["text"], _conf_from_json(d["tokens"]), d.get("finish_reason", "stop")
                        )
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        continue  # a torn last line from an interrupted run

    def get(self, row: int, condition: str) -> Generation | None:
        return self._data.get((row, condition))

    def put(self, row: int, condition: str, gen: Generation) -> None:
        self._data[(row, condition)] = gen
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rec = {
            "row": row,
            "condition": condition,
            "text": gen.text,
            "finish_reason": gen.finish_reason,
            "tokens": _conf_to_json(gen.confidence),
        }
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def __len__(self) -> int:
        return len(self._data)


def clean_answer(gen: Generation) -> tuple[str, Confidence]:
    """The first line of a generation, with the confidences of the tokens that make it up."""
    text = gen.text
    toks = list(gen.confidence.tokens)
    cut = text.find("\n")
    if cut >= 0:
        kept, pos = [], 0
        for t in toks:
            if pos >= cut:
                break
            kept.append(t)
            pos += len(t.token)
        toks = kept
        text = text[:cut]
    # leading white space belongs to the first token(s): strip the text, keep the tokens
    return text.strip(), Confidence(tuple(toks))


def collect_self(
    rows: Sequence[QARow],
    generator: Generator,
    prompt_fn: PromptFn,
    *,
    cache: GenerationCache | None = None,
    conditions: Sequence[str] = CONDITIONS,
    max_new_tokens: int = MAX_NEW_TOKENS,
    progress: bool = True,
) -> list[EvalItem]:
    """The generator's own answers, labelled against ``right_answer``.

    Args:
        rows: HaluEval QA rows.
        generator: produces the answers (and their token confidences).
        prompt_fn: (question, evidence) -> prompt.
        cache: generation cache (reused answers are not generated again).
        conditions: ``closed_book`` and/or ``with_passage``.
        max_new_tokens: generation cap.
        progress: show a progress bar on stderr.

    Returns:
        One item per (row, condition), in row order.
    """
    cache = cache if cache is not None else GenerationCache(None)
    todo = [(r, c) for r in rows for c in conditions]
    bar = _bar(len(todo), "generating answers", progress and any(cache.get(r.row, c) is None for r, c in todo))
    out = []
    for r, c in todo:
        evidence = [r.knowledge] if c == PASSAGE else []
        prompt = prompt_fn(r.question, evidence)
        gen = cache.get(r.row, c)
        if gen is None:
            gen = generator.generate(prompt, max_new_tokens=max_new_tokens, stop=("\n",))
            cache.put(r.row, c, gen)
        if bar is not None:
            bar.update(1)
        answer, conf = clean_answer(gen)
        out.append(
            EvalItem(
                row=r.row,
                group=f"q{r.row}",
                condition=c,
                question=r.question,
                answer=answer,
                label=self_label(answer, r.right_answer),
                gold=r.right_answer,
                comparison=is_comparison(r.question, r.right_answer),
                confidence=conf,
                prompt=prompt,
            )
        )
    if bar is not None:
        bar.close()
    return out


def collect_paired(
    rows: Sequence[QARow], scorer: Scorer | None, prompt_fn: PromptFn, *, progress: bool = True
) -> list[EvalItem]:
    """HaluEval's given answers: ``right_answer`` (label 0) and ``hallucinated_answer`` (label 1)."""
    out = []
    bar = _bar(2 * len(rows), "scoring given answers", progress and scorer is not None)
    for r in rows:
        prompt = prompt_fn(r.question, [])
        for ans, lab in ((r.right_answer, 0), (r.hallucinated_answer, 1)):
            conf = scorer.score(prompt, ans) if scorer is not None else None
            if bar is not None:
                bar.update(1)
            out.append(
                EvalItem(r.row, f"q{r.row}", "paired", r.question, ans, lab, r.right_answer,
                         is_comparison(r.question, r.right_answer), conf, prompt)
            )
    if bar is not None:
        bar.close()
    return out


def summary_question(document: str, max_words: int = SUMMARY_WORDS) -> str:
    """``"Summarize this article: <the article's first max_words words>"`` (white space collapsed).

    A cut article ends in `` ...``.
    """
    words = document.split()
    text = " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")
    return f"Summarize this article: {text}"


def collect_summarization(
    rows: Sequence[SummaryRow],
    scorer: Scorer | None,
    prompt_fn: PromptFn,
    *,
    max_words: int = SUMMARY_WORDS,
    progress: bool = True,
) -> list[EvalItem]:
    """HaluEval's given summaries: ``right_summary`` (label 0) and ``hallucinated_summary`` (label 1).

    Args:
        rows: HaluEval summarization rows.
        scorer: scores each summary under ``prompt_fn(question, [])``; None = data side only.
        prompt_fn: (question, evidence) -> prompt.
        max_words: article words kept in the question (:func:`summary_question`).
        progress: show a progress bar on stderr.

    Returns:
        Two items per row (right first), grouped by row (``s<row>``: a pair shares a fold).
    """
    out = []
    bar = _bar(2 * len(rows), "scoring given summaries", progress and scorer is not None)
    for r in rows:
        question = summary_question(r.document, max_words)
        prompt = prompt_fn(question, [])
        for summary, lab in ((r.right_summary, 0), (r.hallucinated_summary, 1)):
            conf = scorer.score(prompt, summary) if scorer is not None and summary.strip() else None
            if bar is not None:
                bar.update(1)
            out.append(EvalItem(r.row, f"s{r.row}", "paired", question, summary, lab, "", False, conf, prompt))
    if bar is not None:
        bar.close()
    return out


def read_labeled_jsonl(path: str | Path) -> list[tuple[int, str, str, int]]:
    """(line, question, answer, label) rows of a labelled JSONL file; a bad row raises with its line number."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"no such file: {p}")
    out = []
    with open(p, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError as exc:
                raise BadInputError(f"{p}:{i}: not valid JSON ({exc.msg})") from exc
            if not isinstance(d, dict):
                raise BadInputError(f"{p}:{i}: a row must be a JSON object")
            for k in ("question", "answer", "label"):
                if k not in d:
                    raise BadInputError(f"{p}:{i}: missing field {k!r} (need question, answer, label)")
            q, a, lab = d["question"], d["answer"], d["label"]
            if not isinstance(q, str) or not q.strip() or not isinstance(a, str):
                raise BadInputError(f"{p}:{i}: question must be a non-empty string and answer a string")
            if isinstance(lab, bool) or lab not in (0, 1):
                raise BadInputError(f"{p}:{i}: label must be 0 (correct) or 1 (hallucinated), got {lab!r}")
            out.append((i, q, a, int(lab)))
    if not out:
        raise BadInputError(f"{p} holds no rows")
    return out


def collect_user(
    path: str | Path, scorer: Scorer | None, prompt_fn: PromptFn, *, progress: bool = True
) -> list[EvalItem]:
    """Rows of a user's labelled JSONL, scored by ``scorer`` under ``qa_prompt(question)`` when given."""
    rows = read_labeled_jsonl(path)
    out = []
    bar = _bar(len(rows), "scoring answers", progress and scorer is not None)
    for i, q, a, lab in rows:
        prompt = prompt_fn(q, [])
        conf = scorer.score(prompt, a) if scorer is not None and a.strip() else None
        if bar is not None:
            bar.update(1)
        out.append(EvalItem(i, " ".join(q.lower().split()), "user", q, a, lab, "", False, conf, prompt))
    if bar is not None:
        bar.close()
    return out


def _bar(total: int, desc: str, enabled: bool) -> Any:
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="ans", leave=False)
