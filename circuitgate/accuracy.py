"""Verdict accuracy: the suite's verdicts on organisms whose truth is known, scored against that truth.

Models: every member of the family, and damaged copies of the planted organism (each planted unit
zeroed in its weights in turn, and one unit outside the plan, ``circuitgate organism perturb``). A
member's truth is the one measured when it was built; a copy's is measured anew the same way (its
weights changed, so its truth did), with the plan of the organism it was copied from.

Scored, per method:
- hypothesis verdicts against the truth: H5 (the truth's classes by H5's rule; inconclusive where a
  skill is gone), H4 (the two ground truths, ``expectations.h4_from_ground_truths``), H1-H3 (supported
  when the planted activation units that still show their class meet the hypothesis's threshold; a
  model without planted activation units, the null, has no H1-H3 truth and is not scored there);
- H5 component classes: every target both the truth and the run have, precision and recall per class;
- planted units found by H1-H3: each unit planted to differ in activation, found when the run gives it
  the class its measured activation truth has, "opposite" when the run gives it the other skill.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from circuitgate import CircuitgateError
from circuitgate.config import Config, load_config
from circuitgate.causal import verdict_from_classes
from circuitgate.ids import target_kind
from circuitgate.models.adapters import Shape
from circuitgate.vocabulary import (ACTIVATION_HYPOTHESES, ANALYSIS_METHODS, CLASSES, HYPOTHESES, OTHER_SKILL,
                                    canonical_method)

TARGETS = {"verdicts": 1.0, "h5_classes": 0.95, "planted_found": 0.90}  # under paired (docs/organism.md)


@dataclass
class ModelScore:
    """One model under one method: its verdicts and the truth's, its H5 classes, its planted units."""

    model: str
    method: str
    verdicts: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # h -> (run, truth or None)
    h5: list[tuple[str, str, str]] = field(default_factory=list)  # (target, run class, truth class)
    planted: list[tuple[str, str, str, str]] = field(default_factory=list)  # (h, unit, run class, truth class)


@dataclass
class Report:
    scores: list[ModelScore]
    seconds: float = 0.0

    def by_method(self, method: str) -> list[ModelScore]:
        return [s for s in self.scores if s.method == method]

    def summary(self, method: str) -> dict[str, Any]:
        scores = self.by_method(method)
        verdicts = [(run, truth) for s in scores for run, truth in s.verdicts.values() if truth is not None]
        h5 = [(run, truth) for s in scores for _, run, truth in s.h5]
        planted = [(run, truth) for s in scores for _, _, run, truth in s.planted]
        per_class = {}
        for c in CLASSES:
            called = sum(run == c for run, _ in h5)
            actual = sum(truth == c for _, truth in h5)
            hit = sum(run == truth == c for run, truth in h5)
            per_class[c] = {"precision": hit / called if called else None, "recall": hit / actual if actual else None,
                            "n_truth": actual, "n_called": called}
        return {
            "verdicts_right": sum(r == t for r, t in verdicts), "verdicts": len(verdicts),
            "h5_right": sum(r == t for r, t in h5), "h5": len(h5), "h5_per_class": per_class,
            "planted_found": sum(r == t for r, t in planted), "planted": len(planted),
            "planted_opposite": sum(r == OTHER_SKILL.get(t) for r, t in planted),
        }

    def meets_targets(self, method: str = "paired") -> list[str]:
        """What falls short of the targets under ``method`` (empty: every target met)."""
        s = self.summary(method)
        short = []
        if s["verdicts_right"] < s["verdicts"]:
            short.append(f"{s['verdicts'] - s['verdicts_right']} hypothesis verdict(s) wrong")
        if s["h5"] and s["h5_right"] / s["h5"] < TARGETS["h5_classes"]:
            short.append(f"H5 classes right {s['h5_right']}/{s['h5']} < {TARGETS['h5_classes']:.0%}")
        if s["planted"] and s["planted_found"] / s["planted"] < TARGETS["planted_found"]:
            short.append(f"planted units found {s['planted_found']}/{s['planted']} < {TARGETS['planted_found']:.0%}")
        if s["planted_opposite"]:
            short.append(f"{s['planted_opposite']} planted unit(s) reported with the opposite class")
        return short


# -- the truth of a model ---------------------------------------------------------------------------
def _truth_of(directory: Path, source_info: Mapping[str, Any]) -> dict[str, Any]:
    """An organism's stored truth, or a damaged copy's measured anew with its source's plan."""
    from circuitgate.truth import is_organism_dir, read_info

    if is_organism_dir(directory):
        return read_info(directory)
    import torch
    from transformers import AutoModelForCausalLM

    from circuitgate.organism import groundtruth
    from circuitgate.organism.plan import PLANS
    from circuitgate.organism.tokenizer import load_tokenizer
    from circuitgate.organism.world import organism_prompt_set, world_for
    from circuitgate.organism.recipe import Recipe

    recipe = Recipe(**source_info["recipe"])
    plan = PLANS[recipe.plan]
    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(directory, attn_implementation="eager").eval()
    tokenizer = load_tokenizer(directory)
    pairs = organism_prompt_set(world_for(recipe))["pairs"]
    recall = [(p["recall"]["prompt"], p["recall"]["answer"]) for p in pairs]
    reasoning = [(p["reasoning"]["prompt"], p["reasoning"]["answer"]) for p in pairs]
    shape = Shape.from_config(model.config)
    targets = groundtruth.targets_of(shape, recipe.block_size, plan.block_layers())
    return {**source_info, "name": directory.name,
            "ground_truth": groundtruth.measure_causal(model, tokenizer, recall, reasoning, targets),
            "activation_truth": groundtruth.measure_activation(model, tokenizer, recall, reasoning, plan,
                                                               recipe.block_size)}


def _truth_verdicts(info: Mapping[str, Any], shape: Shape, config: Config, twin: tuple[Mapping[str, Any], Shape] | None
                    ) -> tuple[dict[str, str | None], dict[str, str]]:
    """(hypothesis -> true verdict or None, H5 target -> true class) of one model."""
    from circuitgate.expectations import h4_from_ground_truths, truth_classes

    classes = truth_classes(info, config)
    clean = info["ground_truth"]["clean"]
    weak = min(clean.values()) < config.h5.min_clean_accuracy
    verdicts: dict[str, str | None] = {"H5": "inconclusive" if weak else verdict_from_classes(classes, config.h5)}
    needed = {"H1": config.h1.min_layers.for_size(shape.n_layers),
              "H2": config.h2.min_heads.for_size(shape.n_layers * shape.n_heads),
              "H3": config.h3.min_layers.for_size(shape.n_layers)}
    planned = info["plan"]["activation"]
    for h in ACTIVATION_HYPOTHESES:
        if not planned.get(h):
            verdicts[h] = None  # no activation truth: not scored
            continue
        still = sum(info["activation_truth"][h][u]["class"] == c for u, c in planned[h].items())
        verdicts[h] = "supported" if still >= needed[h] else None
    if twin is not None:
        verdicts["H4"] = "inconclusive" if weak else h4_from_ground_truths((info, shape), twin, config)[0]
    return verdicts, classes


# -- damaged copies ---------------------------------------------------------------------------------
def damaged(source: Path, out: Path, seed: int = 0) -> Iterator[tuple[str, Path]]:
    """(label, directory) of copies of ``source`` with one planted unit zeroed each, then one unit outside
    the plan (drawn with ``seed``)."""
    from circuitgate.truth import read_info
    from circuitgate.organism.perturb import perturb

    info = read_info(source)
    planted = [u["id"] for u in info["plan"]["units"]]
    outside = sorted(t for t, c in info["plan"]["classes"].items()
                     if c == "none" and target_kind(t) in ("head", "neurons"))
    for target in [*planted, random.Random(seed).choice(outside)]:
        yield f"{info['name']} -{target}", perturb(source, out / target, [target], force=True, progress=False)


# -- running the suite ------------------------------------------------------------------------------
def score(model: str, directory: Path, info: Mapping[str, Any], twin_run: Any, twin_info: Mapping[str, Any] | None,
          method: str, config_file: str | None = None) -> ModelScore:
    """Run H1-H5 on ``directory`` (its H4 against ``twin_run``; ``config_file``: its YAML, None for the
    defaults) and score them against ``info``'s truth, judged by the thresholds the run itself used."""
    from circuitgate.session import Run, Settings

    # One twin run serves every model: its results are computed once.
    run = Run(Settings(model=str(directory), method=method, prompts="organism", progress=False,
                       config=config_file, h4_model=str(twin_run.model_dir)), twin=twin_run)
    shape = run.shape
    twin = (twin_info, twin_run.shape) if twin_info is not None else None
    truth, classes = _truth_verdicts(info, shape, run.config, twin)
    out = ModelScore(model, method)
    for h in HYPOTHESES:
        if h == "H4" and twin is None:
            continue
        out.verdicts[h] = (run.result(h, method).verdict, truth.get(h))
    h5 = run.result("H5", method)
    out.h5 = [(t, h5.components[t].cls, c) for t, c in classes.items() if t in h5.components]
    for h, units in info["plan"]["activation"].items():
        result = run.result(h, method)
        for unit in units:
            true = info["activation_truth"][h][unit]["class"]
            out.planted.append((h, unit, result.components[unit].cls, true))
    return out


def measure(methods: Sequence[str] = ANALYSIS_METHODS, cache: Path | None = None, seed: int = 0,
            workdir: Path | None = None, config: str | Path | None = None) -> Report:
    """Score the suite on the family and on damaged copies of the planted organism, per method;
    ``config``: a config file every run (and the truth's thresholds) takes, None for the defaults."""
    import time

    from circuitgate.organism.builder import ensure_built
    from circuitgate.truth import read_info
    from circuitgate.session import Run, Settings

    start = time.perf_counter()
    config_file = None if config is None else str(config)
    load_config(config_file)  # a missing or invalid file: its one line before any build
    family = {name: ensure_built(name, cache_root=cache, progress=False)
              for name in ("organism", "organism-llama", "organism-null")}
    infos = {name: read_info(path) for name, path in family.items()}
    tmp = Path(tempfile.mkdtemp(prefix="circuitgate-accuracy-", dir=workdir))
    try:
        models = [(name, path, infos[name]) for name, path in family.items()]
        models += [(label, path, _truth_of(path, infos["organism"]))
                   for label, path in damaged(family["organism"], tmp, seed)]
        scores = []
        for method in methods:
            twins = {}
            for name, path, info in models:
                twin_name = "organism" if name == "organism-llama" else "organism-llama"
                if twin_name not in twins:
                    twins[twin_name] = Run(Settings(model=str(family[twin_name]), method=method, prompts="organism",
                                                    config=config_file, progress=False))
                scores.append(score(name, path, info, twins[twin_name], infos[twin_name], method, config_file))
        return Report(scores, time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- the table --------------------------------------------------------------------------------------
def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({n / d:.0%})" if d else "-"


def markdown(report: Report) -> str:
    """The accuracy table as docs/validation.md shows it."""
    lines = []
    for method in dict.fromkeys(s.method for s in report.scores):
        s = report.summary(method)
        lines += [f"**{method}**: hypothesis verdicts right {_pct(s['verdicts_right'], s['verdicts'])}; "
                  f"H5 component classes right {_pct(s['h5_right'], s['h5'])}; planted units found by H1-H3 "
                  f"{_pct(s['planted_found'], s['planted'])}, with the opposite class {s['planted_opposite']}", ""]
        lines += ["| model | H1 | H2 | H3 | H4 | H5 | H5 classes right | planted found |",
                  "|---|---|---|---|---|---|---|---|"]
        for m in report.by_method(method):
            cells = []
            for h in HYPOTHESES:
                run, truth = m.verdicts.get(h, ("-", None))
                cells.append(run if truth is None else (run if run == truth else f"**{run}** (truth {truth})"))
            right = sum(r == t for _, r, t in m.h5)
            found = sum(r == t for _, _, r, t in m.planted)
            lines.append(f"| {m.model} | " + " | ".join(cells) + f" | {right}/{len(m.h5)} | "
                         f"{found}/{len(m.planted) if m.planted else '-'} |")
        lines += ["", "| H5 class | precision | recall | targets (truth) |", "|---|---|---|---|"]
        for c, v in s["h5_per_class"].items():
            p = "-" if v["precision"] is None else f"{v['precision']:.2f}"
            r = "-" if v["recall"] is None else f"{v['recall']:.2f}"
            lines.append(f"| {c} | {p} | {r} | {v['n_truth']} |")
        lines.append("")
    return "\n".join(lines)


def check_methods(methods: Sequence[str]) -> list[str]:
    methods = [canonical_method(m) for m in methods]
    bad = [m for m in methods if m not in ANALYSIS_METHODS]
    if bad:
        raise CircuitgateError(f"unknown method(s) {', '.join(bad)} (known: {', '.join(ANALYSIS_METHODS)})")
    return list(methods)


