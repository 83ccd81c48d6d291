"""``quco ask "QUESTION"``: answer a question under a guard policy.

Prints the answer; ``--trace`` renders each sentence with its risk, reasons and
retrieved passages; ``--json`` prints the whole trace as one JSON object. The
demo index and retrieval collection are used unless ``--index`` /
``--retriever`` point elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from quco._deps import require
from quco.cli._data_options import add_data_options, data_kwargs
from quco.errors import BadInputError, QucoError
from quco.guard.rules import POLICIES
from quco.prompts import PROMPTS


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "ask",
        help="answer a question with the hallucination guard",
        description="Answer a question; retrieve evidence when the policy finds the question or a "
        "sentence risky (QuCo: rare question entities; a sentence's claims whose head and tail never "
        "co-occur in the corpus, or whose head is rare).",
    )
    p.add_argument("question", help="the question (quote it)")
    p.add_argument("--policy", choices=POLICIES, default="quco", help="guard policy (default: quco)")
    p.add_argument("--prompt", choices=PROMPTS, default="short",
                   help="answer format: a short phrase, or step by step ending 'So the answer is X.' (default: short)")
    p.add_argument("--claims", choices=("triplets", "pairs"), default="triplets",
                   help="stage 2 checks each sentence's claims (triplets and tuples, default) or every entity pair")
    p.add_argument("--trace", action="store_true", help="show each sentence with risk, reasons and passages")
    p.add_argument("--json", action="store_true", help="print the trace as one JSON object")
    p.add_argument("--index", help="corpus index directory or server URL (default: the demo index)")
    p.add_argument("--retriever", help="retrieval collection directory (default: the demo collection)")
    p.add_argument("--model", help="generator model: packaged alias, HF id or path (default: SmolLM2-135M-Instruct)")
    p.add_argument("-k", type=int, default=3, help="passages per retrieval (default: 3)")
    p.add_argument("--max-sentences", type=int, default=None, help="most sentences in the answer (default: 4; 6 with --prompt cot)")
    p.add_argument("--max-new-tokens", type=int, default=64, help="most tokens per sentence (default: 64)")
    p.add_argument(
        "--on-backend-error",
        choices=("open", "closed", "raise"),
        default="open",
        help="corpus failures: skip the check (open), treat as risky (closed) or stop (raise)",
    )
    add_data_options(p)
    p.set_defaults(func=run)


def resolve_locations(policy: str, index: str | None, retriever: str | None) -> tuple[str | None, str | None]:
    """The index and retriever to use, defaulting to the demo ones; a missing demo is one clear error."""
    from quco.demo import DemoPaths, default_base

    demo = DemoPaths(default_base())
    need_ret = policy != "none"
    need_index = policy in ("quco", "combined")
    missing = []
    if need_index and index is None:
        index = str(demo.index)
        if not Path(index).exists():
            missing.append(f"index {index}")
    if need_ret and retriever is None:
        retriever = str(demo.retrieval)
        if not Path(retriever).exists():
            missing.append(f"retrieval collection {retriever}")
    if missing:
        raise QucoError(
            f"the demo {' and '.join(missing)} is missing: run `make demo` or `quco demo` to build it "
            "(or pass --index/--retriever)"
        )
    return (index if need_index else None), (retriever if need_ret else None)


def run(args: argparse.Namespace) -> int:
    from quco.guard import build_guard

    if not args.question.strip():
        raise BadInputError("the question is empty")
    data = data_kwargs(args)  # a bad spec fails before any model is loaded
    index, retriever = resolve_locations(args.policy, args.index, args.retriever)
    guard = build_guard(
        policy=args.policy,
        index=index,
        retriever=retriever,
        model=args.model,
        k=args.k,
        max_sentences=args.max_sentences or (6 if args.prompt == "cot" else 4),
        max_new_tokens=args.max_new_tokens,
        on_backend_error=args.on_backend_error,
        prompt=args.prompt,
        claims=args.claims,
        **data,
    )
    result = guard.answer(args.question)
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
    elif args.trace:
        render_trace(result)
    else:
        sys.stdout.write(result.answer + "\n")
    return 0


def _risk_text(risk: Any) -> str:
    if risk is None:
        return "not checked"
    mark = "RISKY" if risk.flagged else "ok"
    return f"{mark} (p={risk.probability:.2f})"


def render_trace(result: Any, *, console: Any = None, passage_chars: int = 160) -> None:
    """Print ``result`` (a :class:`~quco.guard.GuardResult`) with rich formatting on stdout."""
    rich_console = require("rich.console")
    rich_table = require("rich.table")
    rich_panel = require("rich.panel")
    con = console or rich_console.Console()
    con.print(f"[bold]Question:[/bold] {result.question}" + (" [dim](truncated)[/dim]" if result.truncated else ""))
    con.print(
        f"[bold]Policy:[/bold] {result.policy}   [bold]Model:[/bold] {result.model}   "
        f"[bold]Prompt:[/bold] {result.prompt}   [bold]Claims:[/bold] {result.claims}"
    )

    if result.thresholds is not None:
        con.print(f"[bold]Thresholds:[/bold] {result.thresholds.describe()}")
        con.print(f"[bold]Out of coverage:[/bold] {result.on_out_of_coverage}")

    s1 = result.stage1
    if s1.risk is not None:
        ents = ", ".join(f"{e.entity.text} ({e.count.value}{'~' if e.count.approx else ''})" for e in s1.entities) or "none"
        lines = [f"entities: {ents}", f"risk: {_risk_text(s1.risk)}"]
        if s1.coverage is not None:
            lines.append(f"coverage: {s1.coverage.describe()}")
        lines += [f"  - {r.message}" for r in s1.risk.reasons]
        if s1.retrieval is not None:
            lines.append(f"retrieved with: {s1.retrieval.query!r}")
            lines += [f"  [{i}] {' '.join(d.text.split())[:passage_chars]}" for i, d in enumerate(s1.retrieval.documents, 1)]
        con.print(rich_panel.Panel("\n".join(lines), title="stage 1 (question)"))

    table = rich_table.Table(title="sentences", show_lines=True)
    for col in ("#", "sentence", "claims", "risk", "reasons", "retrieval"):
        table.add_column(col, overflow="fold")
    for s in result.sentences:
        reasons = "\n".join(f"- {r.message}" for r in (s.risk.reasons if s.risk else ()))
        if s.coverage is not None and s.coverage.out_of_coverage and "out_of_coverage" not in reasons:
            reasons = f"- {s.coverage.describe()}\n{reasons}".strip()
        claims = "\n".join(f"{c.claim.describe()} ({c.count.value}{'~' if c.count.approx else ''})" for c in s.claims) or "-"
        text = s.text if not s.rewritten else f"{s.text}\n[dim]draft: {s.draft}[/dim]"
        if s.retrieval is not None:
            docs = "\n".join(f"[{i}] {' '.join(d.text.split())[:passage_chars]}" for i, d in enumerate(s.retrieval.documents, 1))
            ret = f"query: {s.retrieval.query!r}\n{docs}"
        else:
            ret = "-"
        table.add_row(str(s.index), text, claims, _risk_text(s.risk), reasons, ret)
    con.print(table)
    for e in result.backend_errors:
        con.print(f"[yellow]backend error[/yellow] at {e.where} ({e.component}, fail-{e.action}): {e.error}")
    t = result.timings
    con.print(
        f"[dim]{result.retrievals} retrievals, {result.llm_calls} LLM calls, {result.tokens_generated} tokens, "
        f"{result.seconds:.2f}s (generation {t.generation:.2f}s, guard overhead {t.overhead:.3f}s, "
        f"retrieval {t.retrieval:.3f}s), stop: {result.stop_reason}[/dim]"
    )
    con.print(f"[bold]Answer:[/bold] {result.answer}")
    if result.final_answer != result.answer:
        con.print(f"[bold]Final answer:[/bold] {result.final_answer}")
