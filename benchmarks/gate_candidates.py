"""Judge the release gate by both of its errors: a baseline run, then candidates gated against it
(``pytest hypotheses --baseline``) of which the harmless must pass and the harmful must fail, naming
the damaged unit or the skill (docs/design.md, "Gating"; docs/gating.md has the measured table).

Harmless: the same weights rerun, with another batch size, in bfloat16, after a light fine-tune on
unrelated text, and with another seed for H5's subsample of pairs. Harmful: the baseline's most
selective head zeroed in the weights, its most selective neuron set (an organism's neuron block)
zeroed, and a fine-tune that breaks one skill (``candidates``).

Run from the repository root (the suite is ``hypotheses/``):

    python benchmarks/gate_candidates.py --model smollm2 --out /tmp/gate-smollm2 --jobs 2
    python benchmarks/gate_candidates.py --model organism --out /tmp/gate-organism

Writes ``results.json`` and ``table.md`` into --out; prints the table. Exit 0 when every candidate
met its target, 1 otherwise. ``--only NAME ...`` runs some candidates against an existing baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from circuitgate.ids import neuron_target, target_kind
from circuitgate.vocabulary import SKILLS

REPO = Path(__file__).resolve().parents[1]

# Unrelated text for a light fine-tune of a real model: plain sentences that name no country, capital
# or continent.
NEUTRAL = [
    "The weather was mild for most of the week.",
    "She folded the laundry and put it away before dinner.",
    "A good cup of tea takes a few minutes to brew.",
    "The train left the station on time this morning.",
    "He repaired the old bicycle in the garage.",
    "Children played in the park after school.",
    "The recipe calls for two eggs and a cup of flour.",
    "They painted the fence a pale shade of green.",
]


@dataclass(frozen=True)
class Candidate:
    name: str
    harmful: bool
    what: str
    args: tuple[str, ...] = ()  # options of its gated run
    build: Callable[[Path], None] | None = None  # writes its model directory (None: the baseline's model)
    names: tuple[str, ...] = ()  # harmful: the gate must name one of these (a unit or a skill)


@dataclass
class Outcome:
    name: str
    harmful: bool
    what: str
    exit_code: int
    failing: list[str]
    counts: dict[str, int]
    clean: dict[str, float]
    skills: list[dict[str, Any]]
    noise_floor: str
    seconds: float
    named: list[str] = field(default_factory=list)

    @property
    def met(self) -> bool:
        """Harmless: the gate passes. Harmful: it fails, naming the damage."""
        return self.exit_code == 0 if not self.harmful else self.exit_code == 1 and bool(self.named)


def suite(model: str, out: Path, *args: str) -> tuple[int, float, str]:
    """``python -m pytest hypotheses`` on ``model`` into ``out``: (exit code, seconds, its output's tail)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "hypotheses", "-p", "no:cacheprovider", "-q",
                           "--model", model, "--report-dir", str(out), *args],
                          cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    return proc.returncode, time.perf_counter() - start, (proc.stdout + proc.stderr)[-4000:]


def _wrong_answers(prompt_set: Any, task: str) -> list[str]:
    """Each prompt of a task followed by a wrong answer of the same kind (the next distinct answer of
    the prompt set's, in sorted order): a fine-tune on them breaks the task."""
    answers = sorted(set(prompt_set.answers(task)))
    return [f"{p} {answers[(answers.index(a) + 1) % len(answers)]}"
            for p, a in zip(prompt_set.prompts(task), prompt_set.answers(task))]


def _filler(prompt_set: Any) -> list[str]:
    """The organism's unrelated text: the symbol facts before eight recall questions (they name no
    country, capital or continent)."""
    return [p.rsplit(" . ", 1)[0] + " ." for p in prompt_set.prompts("recall")[:8]]


def _picks(baseline: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str, list[str]]]:
    """The baseline's most selective head (id, skill) and neuron set (id, skill, perturb targets): the
    largest |effect| among recall or reasoning targets (a set: among sets of any class but none)."""
    h5 = baseline["hypotheses"]["H5"]
    comps, summary = h5["components"], h5["summary"]
    heads = [(abs(c["effect"]), t, c["class"]) for t, c in comps.items()
             if target_kind(t) == "head" and c["class"] in SKILLS]
    if not heads:
        raise SystemExit("the baseline has no recall- or reasoning-selective head to zero")
    _, head, head_skill = max(heads)
    from circuitgate.encoding import unpack_mask

    sets = []
    for t, c in comps.items():
        if target_kind(t) != "neurons" or c["class"] == "none":
            continue
        rank = (c["class"] in SKILLS, abs(c["effect"]))
        if t in summary.get("neuron_sets", {}):
            sets.append((rank, t, c["class"], [t]))
        elif t in summary.get("h3_sets", {}):
            rec = summary["h3_sets"][t]
            ffn = baseline["model"]["shape"]["ffn"]
            sets.append((rank, t, c["class"], [neuron_target(rec["layer"], j) for j in unpack_mask(rec["neurons"], ffn)]))
    if not sets:
        raise SystemExit("the baseline has no neuron set that mattered to zero")
    _, block, block_class, zero = max(sets, key=lambda s: s[0])
    return (head, head_skill), (block, block_class, zero)


def candidates(model: str, source: Path, baseline: dict[str, Any], out: Path) -> list[Candidate]:
    from circuitgate.candidates import fine_tune
    from circuitgate.organism.perturb import perturb
    from circuitgate.prompts import load_prompt_set

    organism = baseline["expectations"].startswith("organism")
    ps = load_prompt_set(baseline["prompts"]["name"])
    (head, head_skill), (block, block_class, zero) = _picks(baseline)
    # Another seed draws another subsample of H5's pairs; a baseline that used every pair gets a
    # subsample of three quarters of them.
    h5 = baseline["config"]["h5"]
    cap = h5["max_pairs"] or (3 * baseline["hypotheses"]["H5"]["summary"]["pairs"]["n"]) // 4
    seed = out / "seed.yaml"
    seed.write_text(f"h5: {{seed: {h5['seed'] + 1}, max_pairs: {cap}}}\n")
    # A light fine-tune barely moves a model. The skill-breaking one breaks reasoning, measured
    # (docs/gating.md): on SmolLM2 teaching the reasoning prompts wrong continents, 5 steps at 3e-5
    # (reasoning 0.78 -> 0.03, recall 0.50 -> 0.38; wrong capitals broke both: 10 steps at 1e-4 left
    # 0.06 / 0.27); the organism's reasoning circuit breaks under any training, so there the light
    # fine-tune's own unrelated text at ten times its rate (recall 0.98, reasoning 0.23).
    light = dict(steps=30, lr=1e-5)
    unrelated = _filler(ps) if organism else NEUTRAL
    if organism:
        breaking, texts = dict(steps=30, lr=1e-4), unrelated
        how = f"the light fine-tune's text at lr {breaking['lr']:g}"
    else:
        breaking, texts = dict(steps=5, lr=3e-5), _wrong_answers(ps, "reasoning")
        how = f"every reasoning prompt taught a wrong continent, lr {breaking['lr']:g}"
    # The damage a set does shows on the skills it served: its own, or both for a mixed set.
    block_names = (f"H5 {block}",) + tuple(f"{s} accuracy" for s in SKILLS if block_class in (s, "mixed"))
    return [
        Candidate("rerun", False, "the same weights, run again"),
        Candidate("batch size 4", False, "--batch-size 4", ("--batch-size", "4")),
        Candidate("bfloat16", False, "--dtype bfloat16", ("--dtype", "bfloat16")),
        Candidate("light fine-tune", False, f"{light['steps']} AdamW steps at lr {light['lr']:g} on "
                                            f"{len(unrelated)} unrelated texts",
                  build=lambda d: fine_tune(source, d, unrelated, **light, force=True)),
        Candidate("another subsample seed", False, f"h5.seed {h5['seed'] + 1}, max_pairs {cap}: another subsample "
                                                   "of H5's pairs", ("--config", str(seed))),
        Candidate(f"{head} zeroed", True, f"the baseline's {head_skill}-selective head {head} zeroed in o_proj",
                  build=lambda d: perturb(source, d, [head], force=True, progress=False),
                  names=(f"H5 {head}", f"{head_skill} accuracy")),
        Candidate(f"{block} zeroed", True, f"the baseline's {block_class} neuron set {block} ({len(zero)} "
                                           f"{'block' if zero == [block] else 'neurons'}) zeroed in down_proj",
                  build=lambda d: perturb(source, d, zero, force=True, progress=False), names=block_names),
        Candidate("reasoning broken by fine-tune", True, f"{breaking['steps']} AdamW steps: {how}",
                  build=lambda d: fine_tune(source, d, texts, **breaking, force=True), names=("reasoning accuracy",)),
    ]


def gate(candidate: Candidate, model: str, baseline: Path, out: Path, rejudge: bool = False) -> Outcome:
    """Build the candidate, gate it against the baseline and read what the gate said; ``rejudge``:
    judge a candidate gated before anew from its files, by `circuitgate compare` (the same rule)."""
    report = out / candidate.name.replace(" ", "-")
    if rejudge:
        return _rejudged(candidate, baseline, report)
    target = model
    if candidate.build is not None:
        directory = out / "models" / candidate.name.replace(" ", "-")
        candidate.build(directory)
        target = str(directory)
    # A directory inherits everything from the baseline: its settings, pairs, targets and H4's twin.
    code, seconds, tail = suite(target, report, "--baseline", str(baseline), *candidate.args)
    try:
        doc = json.loads((report / "verdicts.json").read_text())
    except (OSError, ValueError):
        raise SystemExit(f"{candidate.name}: no verdicts.json (exit {code}):\n{tail}") from None
    (report / "seconds.txt").write_text(f"{seconds:.1f}\n")
    record = doc["baseline"]
    failing = record["regressions"]
    named = [n for n in candidate.names if n in failing]
    return Outcome(candidate.name, candidate.harmful, candidate.what, code, failing, record["counts"],
                   doc["clean_accuracy"], record["skills"], record["counts_line"], seconds, named)


def _rejudged(candidate: Candidate, baseline: Path, report: Path) -> Outcome:
    from circuitgate.compare import compare, counts_line, load_document

    doc = load_document(report / "verdicts.json")
    c = compare(load_document(baseline), doc, "baseline", "this run")
    failing = [c.label(d) for d in c.failing]
    seconds = float((report / "seconds.txt").read_text()) if (report / "seconds.txt").is_file() else float("nan")
    return Outcome(candidate.name, candidate.harmful, candidate.what, c.exit_code, failing, c.report.counts(),
                   doc["clean_accuracy"], [d.to_dict() for d in c.report.skills], counts_line(c.report), seconds,
                   [n for n in candidate.names if n in failing])


def markdown(outcomes: list[Outcome], model: str) -> str:
    rows = ["| candidate | kind | clean accuracy recall / reasoning | gate | failing (first 3) | damage named | "
            "units: regressed / unresolved / held | target met | time |", "|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        shown = ", ".join(o.failing[:3]) + (f" (+{len(o.failing) - 3})" if len(o.failing) > 3 else "")
        named = ", ".join(o.named) if o.harmful else ""
        rows.append(f"| {o.name} | {'harmful' if o.harmful else 'harmless'} | {o.clean['recall']:.2f} / "
                    f"{o.clean['reasoning']:.2f} | {'fail' if o.exit_code else 'pass'} | {shown or '-'} | "
                    f"{named or ('-' if o.harmful else '')} | {o.counts['regressed']} / {o.counts['unresolved']} / "
                    f"{o.counts['held']} | {'yes' if o.met else 'NO'} | {o.seconds:.0f} s |")
    return f"Gate candidates on {model}\n\n" + "\n".join(rows) + "\n"


def spread(outcomes: list[Outcome], out: Path) -> dict[str, dict[str, float]]:
    """How far harmless candidates moved each hypothesis's effects (and the skills): per hypothesis the
    largest |change| of any unit, its 95th percentile over units and candidates, and the largest
    |change| of a unit whose class changed (what a margin must stay above for a harmless change never
    to regress), against the margin. The margins' defaults are checked against this (docs/gating.md)."""
    from circuitgate.compare import compare, load_document

    base = load_document(out / "baseline" / "verdicts.json")
    moved: dict[str, list[tuple[float, bool]]] = {}
    margins: dict[str, float] = {}
    for o in outcomes:
        if o.harmful:
            continue
        c = compare(base, load_document(out / o.name.replace(" ", "-") / "verdicts.json"))
        for d in c.report.skills + c.report.units:
            if d.delta is not None:
                key = "clean accuracy" if d.hypothesis == "skills" else d.hypothesis
                moved.setdefault(key, []).append((abs(d.delta), d.hypothesis != "skills" and d.class_changed))
                margins[key] = d.margin
    rows = {}
    for k, v in sorted(moved.items()):
        sizes = sorted(x for x, _ in v)
        flipped = [x for x, changed in v if changed]
        rows[k] = {"max": sizes[-1], "p95": sizes[int(0.95 * (len(sizes) - 1))], "n": len(v),
                   "max_class_changed": max(flipped) if flipped else None, "n_class_changed": len(flipped),
                   "margin": margins[k]}
    return rows


def spread_table(rows: dict[str, dict[str, float]]) -> str:
    lines = ["| | unit changes | largest \\|change\\| | 95th percentile | classes changed | largest \\|change\\| of "
             "those | margin |", "|---|---|---|---|---|---|---|"]
    for k, v in rows.items():
        flipped = "-" if v["max_class_changed"] is None else f"{v['max_class_changed']:.3g}"
        lines.append(f"| {k} | {v['n']} | {v['max']:.3g} | {v['p95']:.3g} | {v['n_class_changed']} | {flipped} | "
                     f"{v['margin']:g} |")
    return "Harmless candidates' changes\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="organism", help="registry alias or directory (default: organism)")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--only", nargs="+", default=None, help="candidate names to run (default: all)")
    p.add_argument("--jobs", type=int, default=1, help="candidates gated at once (each runs on one CPU thread)")
    p.add_argument("--rejudge", action="store_true",
                   help="run nothing: judge the candidates already gated in --out anew, by circuitgate compare")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / "baseline"
    if not (base / "verdicts.json").is_file():
        code, seconds, tail = suite(args.model, base)
        if not (base / "verdicts.json").is_file():
            raise SystemExit(f"the baseline run wrote no verdicts.json (exit {code}):\n{tail}")
        (args.out / "baseline-seconds.txt").write_text(f"{seconds:.1f}\n")
    doc = json.loads((base / "verdicts.json").read_text())
    from circuitgate.models import resolve
    from circuitgate.models.loading import model_directory
    from circuitgate.organism import ensure_built

    spec = resolve(args.model)
    source = ensure_built(spec.builtin, progress=False) if spec.builtin else model_directory(spec, progress=False)
    chosen = [c for c in candidates(args.model, source, doc, args.out) if args.only is None or c.name in args.only]
    if args.rejudge:
        chosen = [c for c in chosen if (args.out / c.name.replace(" ", "-") / "verdicts.json").is_file()]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda c: gate(c, args.model, base / "verdicts.json", args.out, args.rejudge), chosen))
    rows = spread(outcomes, args.out)
    (args.out / "results.json").write_text(json.dumps({
        "model": args.model, "baseline": str(base / "verdicts.json"),
        "baseline_clean": doc["clean_accuracy"], "harmless_spread": rows,
        "outcomes": [{**asdict(o), "met": o.met} for o in outcomes]}, indent=2) + "\n")
    table = markdown(outcomes, args.model) + "\n" + spread_table(rows)
    (args.out / "table.md").write_text(table)
    print(table)
    return 0 if all(o.met for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
