"""Unit-level false discoveries of H5's classes on real-weight nulls (docs/validation, in
docs/method.md "H5's classes control false discoveries").

A target called recall- or reasoning-selective where no target can be is a false discovery. Two nulls
on a real model's own ablations:

- same task: each pair's two sides are the *same* task under two templates (the built-in set's
  controls: recall template k against recall template k+1, reasoning likewise), run through H5 as if
  they were recall and reasoning. Every selective class is false.
- label swap: on the real pairs, each pair's task labels swapped with probability 1/2 (its recall and
  reasoning drops exchanged, its control's too), ``--draws`` times. The interaction's sign is then
  noise in every target: every selective class is false.

Each is classified twice from the same drops: by the rule before the correction (a target's own 95%
interval of the interaction excludes 0) and by the current rule (its signed-rank p survives BH over
the run's targets, and the interval excludes 0). Under a complete null the false discovery rate is the
chance of one or more selective targets. Run from the repository root:

    python benchmarks/h5_nulls.py --model smollm2 --out /tmp/cg/nulls-smollm2

Writes ``results.json`` and ``table.md`` into --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from circuitgate.causal import classify_targets
from circuitgate.prompts.make_geography import COMPLETION_REASONING, COMPLETION_RECALL, facts, fill, slug
from circuitgate.vocabulary import SKILLS


def same_task_set(task: str, path: Path) -> Path:
    """The prompt set whose two sides are ``task`` under templates k and k + 1 (the controls' design)."""
    templates = COMPLETION_RECALL if task == "recall" else COMPLETION_REASONING
    keys = list(templates)
    lines = ["schema: 2", f"name: null-{task}", f"description: {task} against {task} under another template",
             "pairs:"]
    for i, (country, capital, continent) in enumerate(facts()):
        k, k2 = keys[i % 3], keys[(i + 1) % 3]
        answer = json.dumps(capital if task == "recall" else continent)
        lines += [f"  - id: {slug(country)}",
                  f"    recall:    {{prompt: {json.dumps(fill(templates[k], country, continent))}, answer: {answer}, "
                  f"template: {k}}}",
                  f"    reasoning: {{prompt: {json.dumps(fill(templates[k2], country, continent))}, answer: {answer}, "
                  f"template: {k2}-b}}"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def h5_drops(model: str, prompts: str | None) -> dict[str, Any]:
    """H5 on ``model`` (its registry settings) over ``prompts``: the per-pair drops it classified."""
    import circuitgate.analyses.h5 as h5
    from circuitgate.session import Run, Settings

    captured: dict[str, Any] = {}
    classify = h5.analyse_h5

    def spy(recall, reasoning, targets, controls, cfg, *args, **kwargs):
        captured["drops"] = h5.pair_drops(recall, reasoning, targets, controls, cfg.metric)
        captured["cfg"] = cfg
        return classify(recall, reasoning, targets, controls, cfg, *args, **kwargs)

    h5.analyse_h5 = spy
    try:
        run = Run(Settings(model=model, prompts=prompts, device="cpu", threads="1"))
        result = run.result("H5", "paired")
    finally:
        h5.analyse_h5 = classify
    ids, r, s, cr, cs = captured["drops"]
    return {"ids": ids, "r": r, "s": s, "cr": cr, "cs": cs, "cfg": captured["cfg"], "verdict": result.verdict,
            "clean": result.summary.get("clean_accuracy")}


def selective(d: dict[str, Any], r: np.ndarray, s: np.ndarray, cr: np.ndarray, cs: np.ndarray) -> dict[str, int]:
    """Selective targets under each rule from one set of drops."""
    cfg = d["cfg"]
    stats = classify_targets(r, s, tau=cfg.min_drop, level=cfg.level, n_boot=cfg.n_boot, seed=cfg.seed,
                             control_recall_drop=cr, control_reasoning_drop=cs, alpha=cfg.alpha,
                             correction=cfg.correction)
    hurts_r, hurts_s = stats.recall_drop.estimate >= cfg.min_drop - 1e-9, stats.reasoning_drop.estimate >= cfg.min_drop - 1e-9
    one_side = hurts_r ^ hurts_s
    interval = one_side & np.where(hurts_r, stats.interaction.ci_low > 0, stats.interaction.ci_high < 0)
    return {"interval": int(interval.sum()), "fdr": int(np.isin(stats.cls, SKILLS).sum())}


def swapped(d: dict[str, Any], draws: int, seed: int) -> list[dict[str, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):  # a few hundred draws of one vectorised classification each
        flip = rng.random(d["r"].shape[0]) < 0.5
        f = flip[:, None]
        r, s = np.where(f, d["s"], d["r"]), np.where(f, d["r"], d["s"])
        cr, cs = np.where(f, d["cs"], d["cr"]), np.where(f, d["cr"], d["cs"])
        out.append(selective(d, r, s, cr, cs))
    return out


def summary(counts: list[dict[str, int]], n_targets: int) -> dict[str, Any]:
    return {rule: {"mean_false": float(np.mean([c[rule] for c in counts])),
                   "runs_with_any": float(np.mean([c[rule] > 0 for c in counts])),
                   "max": int(max(c[rule] for c in counts))}
            for rule in ("interval", "fdr")} | {"n_targets": n_targets, "runs": len(counts)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--out", required=True)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    started = time.time()
    rows: dict[str, Any] = {}
    real = h5_drops(args.model, None)
    n = len(real["ids"])
    rows["real pairs (not a null: all found)"] = summary([selective(real, real["r"], real["s"], real["cr"], real["cs"])], n)
    rows["label swap"] = summary(swapped(real, args.draws, args.seed), n)
    for task in SKILLS:
        d = h5_drops(args.model, str(same_task_set(task, out / f"null-{task}.yaml")))
        rows[f"same task: {task} vs {task}"] = summary([selective(d, d["r"], d["s"], d["cr"], d["cs"])], len(d["ids"]))
        rows[f"same task: {task} vs {task}"]["clean"] = d["clean"]
    lines = [f"{args.model}: selective targets where none can be (interval: a target's own 95% interval; "
             f"fdr: signed-rank p through BH at h5.alpha over the run's targets, and the interval)", "",
             "| null | targets | runs | interval: mean false (runs with any) | fdr: mean false (runs with any) |",
             "|---|---|---|---|---|"]
    for name, row in rows.items():
        cells = [f"{row[k]['mean_false']:.2f} ({row[k]['runs_with_any']:.2f})" for k in ("interval", "fdr")]
        lines.append(f"| {name} | {row['n_targets']} | {row['runs']} | {cells[0]} | {cells[1]} |")
    lines.append(f"\n{time.time() - started:.0f} s")
    (out / "results.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
