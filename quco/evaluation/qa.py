"""Guarded QA benchmark: HaluEval QA questions answered under each guard policy.

For every row and policy the guard answers the question. Its **final answer**
(:func:`quco.prompts.final_answer`: what follows the last "the answer is", else
the last sentence) is scored against HaluEval's ``right_answer`` with SQuAD
normalization (:mod:`quco.evaluation.labels`), whatever the prompt:

- ``em``: exact match after normalization (**primary**, greater is better);
- ``f1``: token F1 (greater is better);
- ``accuracy``: quco's correctness rule (gold span contained, or F1 >= 0.5);
- cost (smaller is better): ``retrievals_per_question``,
  ``llm_calls_per_question``, ``tokens_per_question``, ``seconds_per_question``,
  and ``overhead_share`` (the guard's own checks over generation time).

Uncertainty: ``em_ci``, ``accuracy_ci`` and ``f1_ci`` are 95% bootstrap
intervals over questions; ``differences`` gives, for every pair of policies,
the EM, accuracy and F1 difference with a paired bootstrap interval (the same
resampled questions for both), so "A beats B" can be read off as an interval
that excludes 0; ``headline`` repeats ``quco - single`` and ``quco - flare``
(the comparisons the paper makes) and ``seconds_ratio_to_none`` each policy's
seconds per question over the ``none`` policy's.

Per-row results are appended to ``qa_rows.jsonl`` as they are made, so an
interrupted run resumes where it stopped. ``qa.json`` and ``qa.md`` summarize the
rows that every policy has answered.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quco.datasets import QARow
from quco.errors import BadInputError
from quco.evaluation.labels import is_correct, normalize_answer, token_f1
from quco.prompts import final_answer

log = logging.getLogger(__name__)

ROWS_FILE = "qa_rows.jsonl"
CONFIG_FILE = "qa_config.json"
METRICS = ("em", "f1", "accuracy")
COSTS = (
    "retrievals_per_question",
    "llm_calls_per_question",
    "tokens_per_question",
    "seconds_per_question",
)


def exact_match(answer: str, gold: str) -> float:
    """1.0 when the normalized answer equals the normalized gold answer (SQuAD EM)."""
    return float(normalize_answer(answer) == normalize_answer(gold))


@dataclass(frozen=True)
class QARecord:
    """One answered question under one policy."""

    row: int
    policy: str
    question: str
    gold: str
    answer: str
    final_answer: str
    em: float
    f1: float
    accuracy: float
    retrievals: int
    llm_calls: int
    tokens: int
    seconds: float
    generation_seconds: float
    overhead_seconds: float
    stage1_retrieved: bool
    sentences_retrieved: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def score_result(row: QARow, policy: str, result: Any) -> QARecord:
    """A :class:`QARecord` from a guard result (``quco.guard.GuardResult``), scored on its final answer."""
    ans = final_answer(result.answer)
    return QARecord(
        row=row.row,
        policy=policy,
        question=row.question,
        gold=row.right_answer,
        answer=result.answer,
        final_answer=ans,
        em=exact_match(ans, row.right_answer),
        f1=float(token_f1(ans, row.right_answer)),
        accuracy=float(is_correct(ans, row.right_answer)),
        retrievals=int(result.retrievals),
        llm_calls=int(result.llm_calls),
        tokens=int(result.tokens_generated),
        seconds=float(result.seconds),
        generation_seconds=float(result.timings.generation),
        overhead_seconds=float(result.timings.overhead),
        stage1_retrieved=bool(result.stage1.retrieved),
        sentences_retrieved=sum(1 for s in result.sentences if s.retrieved),
    )


def load_records(path: Path) -> list[dict[str, Any]]:
    """Records already written to ``qa_rows.jsonl`` (a torn last line is ignored)."""
    if not path.exists():
        return []
    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("ignoring a torn line in %s", path)
    return out


#: bootstrap resamples for the intervals in the summary
N_BOOT = 2000


def _interval(per_boot: Any) -> list[float]:
    lo, hi = np.percentile(per_boot, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def summarize(records: Iterable[Mapping[str, Any]], policies: Sequence[str]) -> dict[str, Any]:
    """Per-policy means over the rows that every policy in ``policies`` has answered, with bootstrap intervals."""
    by: dict[str, dict[int, Mapping[str, Any]]] = {p: {} for p in policies}
    for r in records:
        if r["policy"] in by:
            by[r["policy"]][int(r["row"])] = r
    common = set.intersection(*(set(v) for v in by.values())) if by else set()
    rows = sorted(common)
    n = len(rows)
    out: dict[str, Any] = {"n": n, "rows": [rows[0], rows[-1]] if rows else [], "policies": {}}
    for p in policies:
        rs = [by[p][i] for i in rows]

        def mean(key: str, rs: list[Mapping[str, Any]] = rs) -> float:
            return round(sum(float(r[key]) for r in rs) / len(rs), 6) if rs else float("nan")

        gen = sum(float(r["generation_seconds"]) for r in rs)
        out["policies"][p] = {
            "em": mean("em"),
            "f1": mean("f1"),
            "accuracy": mean("accuracy"),
            "retrievals_per_question": mean("retrievals"),
            "llm_calls_per_question": mean("llm_calls"),
            "tokens_per_question": mean("tokens"),
            "seconds_per_question": mean("seconds"),
            "overhead_share": round(sum(float(r["overhead_seconds"]) for r in rs) / gen, 6)
            if gen > 0
            else None,
            "stage1_retrieval_rate": mean("stage1_retrieved"),
        }
    if n == 0:
        return out
    idx = np.random.default_rng(0).integers(0, n, (N_BOOT, n))
    vals = {(p, m): np.array([float(by[p][i][m]) for i in rows]) for p in policies for m in METRICS}
    boots = {k: v[idx].mean(axis=1) for k, v in vals.items()}
    for p in policies:
        for m in METRICS:
            out["policies"][p][f"{m}_ci"] = _interval(boots[p, m])

    def diff(a: str, b: str) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for m in METRICS:
            d[m] = round(float(vals[a, m].mean() - vals[b, m].mean()), 6)
            d[f"{m}_ci"] = _interval(boots[a, m] - boots[b, m])
        return d

    out["differences"] = {f"{a} - {b}": diff(a, b) for i, a in enumerate(policies) for b in policies[i + 1 :]}
    out["headline"] = {f"quco - {b}": diff("quco", b) for b in ("single", "flare") if "quco" in policies and b in policies}
    none_s = out["policies"].get("none", {}).get("seconds_per_question")
    if none_s:
        out["seconds_ratio_to_none"] = {
            p: round(m["seconds_per_question"] / none_s, 3) for p, m in out["policies"].items()
        }
    return out


def _with_ci(m: Mapping[str, Any], key: str) -> str:
    ci = m.get(f"{key}_ci")
    return f"{m[key]:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def markdown_table(summary: Mapping[str, Any], *, command: str = "") -> str:
    """The summary as markdown: one row per policy, then quco's paired differences with single and flare."""
    head = "| policy | EM [95% CI] | F1 [95% CI] | accuracy [95% CI] | retrievals/q | LLM calls/q | tokens/q | s/q | s/q ÷ none |"
    lines = [head, "|" + "---|" * 9]
    ratio = summary.get("seconds_ratio_to_none") or {}
    for p, m in summary["policies"].items():
        r = ratio.get(p)
        lines.append(
            f"| {p} | {_with_ci(m, 'em')} | {_with_ci(m, 'f1')} | {_with_ci(m, 'accuracy')} | "
            f"{m['retrievals_per_question']:.2f} | {m['llm_calls_per_question']:.2f} | {m['tokens_per_question']:.1f} | "
            f"{m['seconds_per_question']:.2f} | {'–' if r is None else f'{r:.2f}'} |"
        )
    rows = summary.get("rows") or []
    cfg = summary.get("config") or {}
    what = ", ".join(f"{k} {cfg[k]}" for k in ("model", "prompt", "claims") if cfg.get(k))
    note = f"\n{summary['n']} HaluEval QA questions" + (f" (rows {rows[0]}-{rows[1]})" if rows else "")
    note += f"; {what}" if what else ""
    note += "; EM/F1/accuracy on the final answer (after \"the answer is\", else the last sentence)"
    if command:
        note += f"; made with `{command}`"
    out = "\n".join(lines) + "\n" + note + ".\n"
    head2 = summary.get("headline") or {}
    if head2:
        out += "\n| paired difference | EM [95% CI] | F1 [95% CI] | accuracy [95% CI] |\n|---|---|---|---|\n"
        for k, d in head2.items():
            out += f"| {k} | " + " | ".join(f"{d[m]:+.3f} [{d[m + '_ci'][0]:+.3f}, {d[m + '_ci'][1]:+.3f}]" for m in METRICS) + " |\n"
    return out


def _check_config(out: Path, config: Mapping[str, Any], fresh: bool) -> None:
    cfg_path = out / CONFIG_FILE
    rows_path = out / ROWS_FILE
    if fresh:
        rows_path.unlink(missing_ok=True)
    elif cfg_path.exists() and rows_path.exists():
        old = json.loads(cfg_path.read_text(encoding="utf-8"))
        # a setting the earlier policies did not use is recorded as null (the index, when
        # none of them was quco or combined): a later run that adds such policies may set it
        # the rows and policies of a run may grow or shrink: records are kept per (policy, row)
        # and the summary covers the rows asked for now
        free = {"policies", "rows"}
        diff = sorted(k for k in config if k not in free and old.get(k) is not None and old.get(k) != config[k])
        diff += sorted(k for k in config if k not in old and k not in free)
        if diff:
            raise BadInputError(
                f"{out} holds results made with other settings ({', '.join(diff)}): use another --out or --fresh"
            )
    tmp = cfg_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config, indent=2), encoding="utf-8")
    os.replace(tmp, cfg_path)


def run_qa(
    rows: Sequence[QARow],
    guards: Mapping[str, Any],
    out_dir: str | Path,
    *,
    config: Mapping[str, Any] | None = None,
    command: str = "",
    fresh: bool = False,
    progress: bool = True,
    on_record: Callable[[QARecord], None] | None = None,
) -> dict[str, Any]:
    """Answer every row under every policy, appending to ``qa_rows.jsonl``; write ``qa.json`` and ``qa.md``.

    Args:
        rows: HaluEval QA rows.
        guards: policy name -> guard (anything with ``answer(question)``).
        out_dir: output folder (created).
        config: settings recorded in ``qa_config.json``; a resumed run must match them (its rows and policies may differ: records are kept per policy and row).
        command: the command line, quoted in ``qa.md``.
        fresh: discard earlier per-row results instead of resuming.
        progress: show a progress bar on stderr.
        on_record: called with each new record.

    Returns:
        The summary written to ``qa.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    policies = list(guards)
    _check_config(out, {**(config or {}), "policies": policies}, fresh)
    rows_path = out / ROWS_FILE
    done = {(r["policy"], int(r["row"])) for r in load_records(rows_path)}
    todo = [(row, p) for row in rows for p in policies if (p, row.row) not in done]
    bar = None
    if progress:
        from quco._deps import require

        bar = require("tqdm").tqdm(total=len(todo), desc="quco eval qa", unit="answer", dynamic_ncols=True)
    try:
        with open(rows_path, "a", encoding="utf-8") as f:
            for row, p in todo:
                rec = score_result(row, p, guards[p].answer(row.question))
                f.write(json.dumps(rec.to_dict(), ensure_ascii=False) + "\n")
                f.flush()
                if on_record:
                    on_record(rec)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(f"row {row.row} {p}")
    finally:
        if bar is not None:
            bar.close()
    wanted = {r.row for r in rows}
    recs = [r for r in load_records(rows_path) if int(r["row"]) in wanted]
    summary = summarize(recs, policies)
    summary["config"] = dict(config or {})
    if command:
        summary["command"] = command
    (out / "qa.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out / "qa.md").write_text(markdown_table(summary, command=command), encoding="utf-8")
    return summary
