"""H5: causal interventions on a circuit selectively impair its own capability.

The original repository never ran an intervention (docs/method.md "H4 and H5"). Here every target
(each layer's attention and MLP output, each head, and H3's task-specific neuron sets with random
same-size controls) is ablated on both tasks' prompts (``circuitgate.interventions``), and the
verdict is the task x target interaction (docs/method.md flaw 7): per prompt pair, the drop on the
recall prompt minus the drop on the reasoning prompt, with paired bootstrap intervals over pairs and,
for neuron sets, net of the random control's interaction (``causal.classify_targets``).

At scale (more than ``h5.exact_max`` targets, or ``h5.screen: attribution``) an attribution screen
(``circuitgate.attribution``) estimates every target's drop first, single neurons included, and only
its top targets per skill and a random share of the rest are ablated and classified (docs/design.md
"H5 at scale"). The pairs ablated on are ``h5.pairs`` (all, or those the clean model answers, by the
session's clean scores), capped by ``h5.max_pairs``. What to measure is chosen in
``analyses.h5_targets``; here it is measured (``H5Steps``) and classified (``analyse_h5``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, Collection, Mapping, Sequence

import numpy as np

from circuitgate.analyses.base import Analysis, Inputs
from circuitgate.analyses.h5_targets import (Gated, baseline_pairs, chosen_pairs, fixed_neuron_sets, fixed_targets,
                                             gated_targets, neuron_targets, screen_path, screen_pairs, screened,
                                             screened_neurons)
from circuitgate.causal import classify_targets, verdict_from_classes
from circuitgate.config import GateConfig, H5Config
from circuitgate.encoding import pack_mask
from circuitgate.ids import parse_target
from circuitgate.interventions import Metrics, PatchResult, SweepResult, Target
from circuitgate.plan import Plan, peak_bytes
from circuitgate.results import ComponentResult, HypothesisResult
from circuitgate.stats import noise_floor, resample_rows
from circuitgate.vocabulary import METRICS, SKILLS





def _drops(sweep: SweepResult, ids: Sequence[str], metric: str) -> np.ndarray:
    """[P, T] per-prompt drop of ``metric`` (clean minus ablated: > 0 the ablation hurts)."""
    clean = sweep.clean.get(metric)
    return np.stack([clean - sweep.ablated[t].get(metric) for t in ids], axis=1)


def _interval(iv: Any, t: int) -> list[float]:
    return [float(iv.estimate[t]), float(iv.ci_low[t]), float(iv.ci_high[t])]


def _patching(patch: Mapping[str, PatchResult]) -> dict[str, Any]:
    """Per direction and layer: how often the patched prompt keeps its own answer and how often its
    top token becomes the paired prompt's answer (a read-out, not a verdict)."""
    out = {}
    for direction, pr in patch.items():
        out[direction] = {
            "own_accuracy": [float(m.accuracy.mean()) for m in pr.own],
            "other_accuracy": [float(m.accuracy.mean()) for m in pr.other],
            "own_prob": [float(m.prob.mean()) for m in pr.own],
            "other_prob": [float(m.prob.mean()) for m in pr.other],
            "clean_own_accuracy": float(pr.clean.accuracy.mean()),
            "clean_other_accuracy": float(pr.clean_other.accuracy.mean()),
        }
    return out


def unmeasurable(clean: Mapping[str, float], n_pairs: int, cfg: H5Config, held_out: bool = False) -> str | None:
    """Why ablations cannot show an impairment here, or None: a task the clean model cannot do (below
    ``min_clean_accuracy``), or too few pairs to ablate on (``held_out``: half the pool went to the
    attribution screen)."""
    weak = [side for side, acc in clean.items() if acc < cfg.min_clean_accuracy]
    if weak:
        return (f"clean accuracy on {' and '.join(weak)} below h5.min_clean_accuracy {cfg.min_clean_accuracy}: "
                "an ablation cannot impair a skill the model lacks")
    if n_pairs < cfg.min_pairs:
        held = "; the other half of the pool is the attribution screen's" if held_out else ""
        return (f"{n_pairs} pairs to ablate on (h5.pairs {cfg.pairs}{held}), fewer than h5.min_pairs "
                f"{cfg.min_pairs}")
    return None


def pair_drops(recall: SweepResult, reasoning: SweepResult, targets: Sequence[Target], controls: Mapping[str, str],
               metric: str) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(component ids, recall drops, reasoning drops, their controls' recall and reasoning drops), each
    [P, T] over the components (``targets`` less the controls named in ``controls``); a component
    without a control has all-NaN control columns. What ``classify_targets`` classifies."""
    control_ids = set(controls.values())
    ids = [t.id for t in targets if t.id not in control_ids]
    r, s = _drops(recall, ids, metric), _drops(reasoning, ids, metric)
    cr, cs = np.full_like(r, np.nan), np.full_like(s, np.nan)
    for j, t in enumerate(ids):
        if t in controls:
            cr[:, j] = _drops(recall, [controls[t]], metric)[:, 0]
            cs[:, j] = _drops(reasoning, [controls[t]], metric)[:, 0]
    return ids, r, s, cr, cs


def analyse_h5(recall: SweepResult, reasoning: SweepResult, targets: Sequence[Target], controls: Mapping[str, str],
               cfg: H5Config, patch: Mapping[str, PatchResult] | None = None,
               clean_accuracy: Mapping[str, float] | None = None, gate: GateConfig = GateConfig()) -> HypothesisResult:
    """H5 from the two tasks' ablation sweeps (prompt i of each is pair i).

    ``targets`` are all swept targets; those named as a value in ``controls`` are controls, the rest
    are components. A model that cannot do a task (clean accuracy below ``min_clean_accuracy``, over
    every pair of the prompt set: ``clean_accuracy``, default the swept pairs') gives ``inconclusive``:
    ablating a skill it lacks cannot show an impairment; so do fewer than ``min_pairs`` swept pairs.
    Each target keeps its per-pair interaction (what a gate compares), and the run its noise floor:
    the classes rerun on ``gate.resamples`` bootstrap resamples of the pairs.
    """
    sizes = {t.id: (len(t.neurons) if t.neurons else 1) for t in targets}
    ids, r, s, cr, cs = pair_drops(recall, reasoning, targets, controls, cfg.metric)
    drops = {m: (_drops(recall, ids, m), _drops(reasoning, ids, m)) for m in METRICS}
    n_pairs = r.shape[0]
    stats = classify_targets(r, s, tau=cfg.min_drop, level=cfg.level, n_boot=cfg.n_boot, seed=cfg.seed,
                             control_recall_drop=cr, control_reasoning_drop=cs, alpha=cfg.alpha,
                             correction=cfg.correction)
    components = {}
    for j, t in enumerate(ids):
        details: dict[str, Any] = {
            "recall_drop": _interval(stats.recall_drop, j),
            "reasoning_drop": _interval(stats.reasoning_drop, j),
            "interaction": float(stats.interaction.estimate[j]),
            "interaction_ci": [float(stats.interaction.ci_low[j]), float(stats.interaction.ci_high[j])],
            "p": float(stats.p[j]),
            "p_adj": float(stats.p_adj[j]),
            # Every metric's mean drops, so a reader sees whether the metric changes the answer.
            "mean_drops": {m: {"recall": float(drops[m][0][:, j].mean()), "reasoning": float(drops[m][1][:, j].mean())}
                           for m in METRICS},
            "size": sizes[t],
        }
        if t in controls:
            c = controls[t]
            details["control"] = {"id": c, "size": sizes[c],
                                  "recall_drop": float(np.nanmean(cr[:, j])), "reasoning_drop": float(np.nanmean(cs[:, j]))}
        # The effect is the interaction (> 0: hurts recall more); p its signed-rank p adjusted over the targets.
        components[t] = ComponentResult(t, str(stats.cls[j]), float(stats.interaction.estimate[j]),
                                        float(stats.p_adj[j]), details,
                                        effect_ci=(float(stats.interaction.ci_low[j]), float(stats.interaction.ci_high[j])),
                                        pair_values=stats.pair_interaction[:, j])

    classes = {t: c.cls for t, c in components.items()}
    swept = {"recall": float(recall.clean.accuracy.mean()), "reasoning": float(reasoning.clean.accuracy.mean())}
    clean = dict(clean_accuracy) if clean_accuracy is not None else swept
    selective = {skill: [t for t, c in classes.items() if c == skill] for skill in SKILLS}
    summary: dict[str, Any] = {
        "ablation": cfg.ablation,
        "metric": cfg.metric,
        "min_drop": cfg.min_drop,
        "level": cfg.level,
        "n_boot": cfg.n_boot,
        "method": stats.method,
        "alpha": cfg.alpha,
        "correction": cfg.correction,
        "n_pairs": n_pairs,
        "n_targets": len(ids),
        "clean_accuracy": clean,
        "swept_clean_accuracy": swept,
        "n_recall": len(selective["recall"]),
        "n_reasoning": len(selective["reasoning"]),
        "n_mixed": sum(c == "mixed" for c in classes.values()),
        "n_none": sum(c == "none" for c in classes.values()),
        "recall_targets": selective["recall"],
        "reasoning_targets": selective["reasoning"],
        "threshold": cfg.min_per_skill,
    }
    if ids:
        resampled = [classify_targets(r[rows], s[rows], tau=cfg.min_drop, level=cfg.level, n_boot=cfg.n_boot,
                                      seed=cfg.seed, control_recall_drop=cr[rows], control_reasoning_drop=cs[rows],
                                      alpha=cfg.alpha, correction=cfg.correction).cls
                     for rows in resample_rows(n_pairs, gate.resamples, gate.seed)]  # a few resamples
        summary["noise_floor"] = noise_floor(stats.cls, np.array(resampled),
                                             "the classes rerun on bootstrap resamples of the prompt pairs")._asdict()
    if patch:
        summary["patching"] = _patching(patch)
    reason = unmeasurable(clean, n_pairs, cfg)
    if reason:
        summary["reason"] = reason
        verdict = "inconclusive"
    else:
        verdict = verdict_from_classes(classes, cfg)
    summary["headline"] = (f"{summary['n_recall']} recall-selective, {summary['n_reasoning']} reasoning-selective "
                           f"of {len(ids)} targets ({cfg.ablation} ablation, {cfg.metric}, {n_pairs} pairs; "
                           f"clean accuracy recall {clean['recall']:.2f}, reasoning {clean['reasoning']:.2f})")
    return HypothesisResult("H5", verdict, "causal", summary, components,
                            uncertainty={"kind": "pairs", "statistic": "mean"})


# -- on a run ---------------------------------------------------------------------------------------
class H5Steps:
    """H5's steps on one run, each made once and shared by every method (the fixed targets and the
    pairs are the same under each): the pairs, the screen path, the plan, the screens, the screen's
    pick of the fixed targets, their sweeps and the residual patching. ``analyses.h5_targets`` decides
    what to measure; these measure it."""

    def __init__(self, inputs: Inputs) -> None:
        self.inputs = inputs
        self.cfg = inputs.config.h5
        self._plan: tuple[Plan, float] | None = None
        self._screened_fixed: tuple[list[Target], dict[str, Any]] | None = None
        self._fixed_sweeps: dict[str, SweepResult] | None = None

    @cached_property
    def path(self) -> str:
        """This run's own screen path (``h5_targets.screen_path``); a gate measures as its baseline did."""
        return screen_path(self.cfg, self.inputs.shape, self.inputs.model.remote)

    @cached_property
    def _known(self) -> Mapping[str, Metrics] | None:
        """The clean scores ``h5.pairs: known`` selects by (None: every pair)."""
        return self.inputs.clean.scores if self.cfg.pairs == "known" else None

    @cached_property
    def pairs(self) -> np.ndarray:
        """Indices of the pairs H5 ablates on, sorted: a gate's baseline's (the same pairs, compared pair
        by pair), unless the run changed how they are chosen (``h5.pairs``, ``h5.max_pairs``,
        ``h5.seed``); else chosen by those settings, from the half of the pool the screen does not rank
        when the run screens (``path``)."""
        kept = baseline_pairs(self.inputs)
        if kept is not None:
            return kept
        cfg = self.cfg
        return chosen_pairs(self.inputs.prompt_set, cfg.pairs, cfg.max_pairs, cfg.seed, self._known,
                            held_out=self.path == "attribution")

    @cached_property
    def screen_pairs(self) -> np.ndarray:
        """Indices of the pairs the attribution screen ranks on, never ablated exactly in a fresh run."""
        cfg = self.cfg
        return screen_pairs(self.inputs.prompt_set, cfg.pairs, cfg.max_pairs, cfg.seed, self._known)

    @cached_property
    def neuron_sets(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        return fixed_neuron_sets(self.inputs)

    @cached_property
    def fixed(self) -> list[Target]:
        return fixed_targets(self.inputs.shape, self.neuron_sets)

    def swept(self, rows: np.ndarray | None = None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """task -> the prompts and task -> the answers of the pairs ``rows`` (default: ``pairs``)."""
        ps = self.inputs.prompt_set
        rows = self.pairs if rows is None else rows
        return ({side: [ps.prompts(side)[i] for i in rows] for side in SKILLS},
                {side: [ps.answers(side)[i] for i in rows] for side in SKILLS})

    def _common(self, max_rows: int) -> dict[str, Any]:
        return {"batch_size": self.inputs.batch_size, "max_rows": max_rows, "progress": self.inputs.progress}

    def plan(self, path: str, sweeps: Sequence[int], at_most: bool) -> tuple[Plan, float]:
        """H5's plan on this machine (``circuitgate.plan``), shown where progress goes, and when it was
        made: the prompts' token counts, the model's shape and dtype, the memory held and available
        now, and the seconds per token of the clean forward. Made on the first method's call, for the
        whole run."""
        if self._plan is None:
            self._plan = self._make_plan(path, sweeps, at_most)
        return self._plan

    def _make_plan(self, path: str, sweeps: Sequence[int], at_most: bool) -> tuple[Plan, float]:
        from circuitgate.extract import tokenize
        from circuitgate.interventions import answer_tokens
        from circuitgate.plan import Prompts, memory_now, padded_tokens, plan_h5
        from circuitgate.progress import note

        loaded, ps, batch_size = self.inputs.model, self.inputs.prompt_set, self.inputs.batch_size

        def prompts(rows: np.ndarray) -> list[Prompts]:
            chosen = self.swept(rows)
            # A tokenizer refuses an empty list (the screen has no pair of its own in a pool of one).
            return [Prompts(tuple(len(t) for t in tokenize(loaded, chosen[0][side])) if len(rows) else (),
                            tuple(len(a) for a in answer_tokens(loaded.tokenizer, chosen[1][side])))
                    for side in SKILLS]

        everything = prompts(np.arange(len(ps.pairs)))
        seconds = self.inputs.clean.seconds
        fed = sum(padded_tokens(task.fed, batch_size) for task in everything)
        screen = [p.prompt for p in prompts(self.screen_pairs)] if path == "attribution" else []
        params = list(loaded.hf.parameters())
        held, available = memory_now(loaded.device)
        plan = plan_h5(loaded.shape, vocab=int(loaded.hf.get_output_embeddings().weight.shape[0]),
                       dtype_bytes=params[0].element_size(), weights_bytes=sum(p.numel() * p.element_size() for p in params),
                       swept=prompts(self.pairs), screened=screen, batch_size=batch_size,
                       device=loaded.device, path=path, cfg=self.cfg, sweeps=sweeps,
                       seconds_per_token=seconds / fed if fed else None, held_bytes=held,
                       # Under --remote the passes run on NDIF: nothing here to fit.
                       available_bytes=None if loaded.remote is True else available, at_most=at_most)
        note(f"H5 plan: {plan.describe()}", enabled=self.inputs.progress)
        return plan, time.perf_counter()

    @property
    def planned(self) -> Plan:
        """The plan (``plan``), which every pass after it follows for its rows."""
        if self._plan is None:
            raise RuntimeError("H5 measured before its plan was made")
        return self._plan[0]

    @cached_property
    def screens(self) -> dict[str, Any]:
        """Both tasks' attribution screens over the screen's own pairs: every head, sublayer and neuron,
        the plan's rows a pass."""
        from circuitgate.attribution import SCREEN_ABLATIONS, attribution_screen

        cfg, ps = self.cfg, self.inputs.prompt_set
        prompts, answers = self.swept(self.screen_pairs)
        # Resample has no first-order path of its own: the screen ranks by the mean ablation, which the
        # exact confirmation then replaces by the configured one.
        ablation = cfg.ablation if cfg.ablation in SCREEN_ABLATIONS else "mean"
        return {side: attribution_screen(self.inputs.model, prompts[side], answers[side],
                                         ablation=ablation, reference=prompts["recall"] + prompts["reasoning"],
                                         candidates=ps.answers(side), steps=cfg.screen_steps,
                                         groups=cfg.screen_groups, seed=cfg.seed, desc=f"H5 screen ({side})",
                                         **self._common(self.planned.screen_max_rows))
                for side in SKILLS}

    def screened_fixed(self, keep: Collection[str], fresh: bool) -> tuple[list[Target], dict[str, Any]]:
        """The fixed targets and single neurons the screen picks (``h5_targets.screened``,
        ``screened_neurons``) and its record of them; made on the first method's call."""
        if self._screened_fixed is None:
            components, record = screened(self.screens, self.fixed, {}, self.cfg, keep=keep, fresh=fresh)
            ids = [parse_target(t) for t in keep if parse_target(t).kind == "neuron"]
            neurons, neuron_record = screened_neurons(self.screens, self.cfg, [(n.layer, n.neuron) for n in ids],
                                                      fresh=fresh)
            self._screened_fixed = components + neurons, {**record, **neuron_record}
        return self._screened_fixed

    def sweep(self, targets: Sequence[Target], desc: str) -> dict[str, SweepResult]:
        """Both tasks' ablation sweeps over ``targets``, the plan's rows a pass."""
        from circuitgate.interventions import ablation_sweep

        ps = self.inputs.prompt_set
        prompts, answers = self.swept()
        reference = prompts["recall"] + prompts["reasoning"]  # mean ablation: both tasks alike
        return {side: ablation_sweep(self.inputs.model, prompts[side], answers[side], list(targets),
                                     ablation=self.cfg.ablation, reference=reference, candidates=ps.answers(side),
                                     desc=f"{desc} ({side})", **self._common(self.planned.sweep_max_rows))
                for side in SKILLS}

    def fixed_sweeps(self, fixed: Sequence[Target]) -> dict[str, SweepResult]:
        """The fixed targets' sweeps (``fixed``: those measured), made on the first method's call."""
        if self._fixed_sweeps is None:
            self._fixed_sweeps = self.sweep(fixed, "H5 ablations")
        return self._fixed_sweeps

    @cached_property
    def patching(self) -> dict[str, PatchResult]:
        """The last-token residual of the paired prompt patched in at every layer, both directions."""
        from circuitgate.interventions import patch_residual

        ps, common, rows = self.inputs.prompt_set, self._common(self.planned.sweep_max_rows), self.pairs
        recall_acts, reasoning_acts = self.inputs.activations
        prompts, answers = self.swept()
        loaded = self.inputs.model
        return {
            "recall_into_reasoning": patch_residual(loaded, prompts["reasoning"], answers["reasoning"],
                                                    recall_acts.resid[rows], answers["recall"],
                                                    candidates=ps.answers("reasoning"), desc="H5 patching", **common),
            "reasoning_into_recall": patch_residual(loaded, prompts["recall"], answers["recall"],
                                                    reasoning_acts.resid[rows], answers["reasoning"],
                                                    candidates=ps.answers("recall"), desc="H5 patching", **common),
        }


def planned_sweeps(path: str, cfg: H5Config, shape: Any, n_methods: int, fixed: Sequence[Target],
                   sets: Sequence[Target], controls: Mapping[str, str], gated: Gated | None) -> tuple[list[int], bool]:
    """The targets of each exact sweep per task (the fixed ones once, H3's sets once per method), and
    whether they are a bound (a fresh screen picks them): what ``compute`` will measure."""
    from circuitgate.plan import measured_targets

    if gated is None:
        components, per_method = measured_targets(path, cfg, len(fixed), shape.n_layers * shape.ffn, len(controls))
        return [components] + [per_method] * n_methods, path == "attribution"
    components = sum(t.id in gated.ids for t in fixed)
    if path == "attribution":
        components += sum(parse_target(t).kind == "neuron" for t in gated.ids)
        per_method = len(sets) if gated.sets is not None else 2 * sum(t in gated.ids for t in controls)
    else:
        per_method = len(sets)
    return [components] + [per_method] * n_methods, False


@dataclass(frozen=True)
class Chosen:
    """What one method's H5 measures (``H5Analysis.choose``): the fixed targets and H3's neuron sets
    with their controls, the path that picked them, and the screen's record (path, estimates)."""

    fixed: list[Target]
    sets: list[Target]
    controls: dict[str, str]
    path: str
    screen: dict[str, Any]
    pairs: dict[str, Any]


class H5Analysis(Analysis):
    """Ablate the fixed targets on both tasks (once per run: the same under every method), and the
    method's H3 neuron sets with their random controls; patch residuals across tasks; classify. Beyond
    ``h5.exact_max`` targets (or under ``h5.screen: attribution``) an attribution screen picks which of
    them are measured exactly, and only those are classified. A gate (``--baseline``) measures exactly
    the targets its baseline classified, its neuron sets as the baseline drew them, on its pairs
    (``gated_targets``): the same units on the same pairs, compared pair by pair."""

    hypothesis = "H5"
    needs = ("H3", "model", "activations", "clean")

    def steps(self, inputs: Inputs) -> H5Steps:
        return H5Steps(inputs)

    def hypotheses_needed(self, inputs: Inputs, method: str) -> tuple[str, ...]:
        """H3, for its neuron sets: not when too few pairs leave H5 unmeasured, nor in a gate whose
        baseline recorded the sets it ablated."""
        gated = gated_targets(inputs, method)
        if len(inputs.steps.pairs) < inputs.config.h5.min_pairs or (gated is not None and gated.sets is not None):
            return ()
        return ("H3",)

    def compute(self, inputs: Inputs, method: str) -> HypothesisResult:
        steps: H5Steps = inputs.steps
        cfg, ps, rows, clean = inputs.config.h5, inputs.prompt_set, steps.pairs, inputs.clean.accuracy
        pairs = {"selection": cfg.pairs, "n": len(rows), "of": len(ps.pairs), "ids": [ps.ids[i] for i in rows]}
        if len(rows) < cfg.min_pairs:  # too few to sweep: say why without running an ablation
            reason = unmeasurable(clean, len(rows), cfg, steps.path == "attribution")
            summary = {"clean_accuracy": clean, "pairs": pairs, "reason": reason, "headline": f"not measured: {reason}"}
            return HypothesisResult("H5", "inconclusive", "causal", summary, {})
        chosen, plan, planned = self.choose(inputs, method, pairs)
        sweeps = steps.fixed_sweeps(chosen.fixed)
        if chosen.sets:
            extra = steps.sweep(chosen.sets, f"H5 {method} neuron ablations")
            sweeps = {side: SweepResult(sweeps[side].clean, {**sweeps[side].ablated, **extra[side].ablated},
                                        sweeps[side].ablation) for side in SKILLS}
        result = analyse_h5(sweeps["recall"], sweeps["reasoning"], chosen.fixed + chosen.sets, chosen.controls, cfg,
                            steps.patching, clean, inputs.config.gate)
        screen = {**chosen.screen, **(_confirmed(result, chosen.screen["estimates"])
                                      if chosen.path == "attribution" else {})}
        recorded = {tid: {"layer": layer, "neurons": list(neurons)} for tid, (layer, neurons) in steps.neuron_sets.items()}
        # The plan beside what H5 took since it was made (verdicts.json's one record of this machine).
        measured = {"seconds": time.perf_counter() - planned, "peak_bytes": peak_bytes(inputs.model.device)}
        summary = {**result.summary, "neuron_sets": recorded,
                   "h3_sets": _h3_sets(chosen.sets, chosen.controls, inputs.shape.ffn),
                   "pairs": chosen.pairs, "screen": screen, "plan": {**plan.to_dict(), "measured": measured}}
        return replace(result, summary=summary, uncertainty={**result.uncertainty, "pairs": pairs["ids"]})

    def choose(self, inputs: Inputs, method: str, pairs: dict[str, Any]) -> tuple[Chosen, Plan, float]:
        """The targets this method measures (``h5_targets``), with the plan made before any pass (a run
        that cannot fit stops here) and when it was made: a gate's baseline's; else H3's neuron sets
        with their controls and the fixed targets, all of them or, screened, those the screen picks."""
        steps: H5Steps = inputs.steps
        cfg = inputs.config.h5
        gated = gated_targets(inputs, method)
        if gated is not None and gated.sets is not None:
            sets, controls = gated.sets, gated.controls
        else:
            h3 = inputs.results["H3"]
            sets, controls = neuron_targets(h3.arrays["specific"], h3.arrays["d"], cfg.seed)
        fixed = steps.fixed
        path = gated.path if gated is not None else steps.path
        plan, planned = steps.plan(path, *planned_sweeps(path, cfg, inputs.shape, len(inputs.methods), fixed, sets,
                                                         controls, gated))
        screen: dict[str, Any] = {"path": path}
        if gated is not None:
            screen["chosen"] = "baseline"
        if path == "attribution":
            pairs = {**pairs, "screen_ids": [inputs.prompt_set.ids[i] for i in steps.screen_pairs]}
            keep = gated.ids if gated is not None else ()
            fixed, fixed_record = steps.screened_fixed(keep, fresh=gated is None)
            sets, set_record = screened(steps.screens, sets, controls, cfg, salt=1,
                                        keep=keep if gated is None or gated.sets is None else [t.id for t in sets],
                                        fresh=gated is None)
            controls = {t: c for t, c in controls.items() if any(s.id == t for s in sets)}
            first = next(iter(steps.screens.values()))
            n_neurons = int(np.prod(first.neurons.shape[1:]))
            screen.update(method=first.method, steps=first.steps, groups=first.groups, metric=first.metric,
                          ablation=first.ablation,
                          top_k=cfg.top_k, random_fraction=cfg.random_fraction,
                          neuron_random_fraction=cfg.neuron_random_fraction, n_neurons=n_neurons,
                          estimates={**fixed_record, **set_record})
            screen["n_screened"] = n_neurons + sum(parse_target(t).kind != "neuron" for t in screen["estimates"])
        elif gated is not None:
            fixed = [t for t in fixed if t.id in gated.ids]
        return Chosen(fixed, sets, controls, path, screen, pairs), plan, planned


def _h3_sets(sets: Sequence[Target], controls: Mapping[str, str], ffn: int) -> dict[str, Any]:
    """H3's neuron sets that were ablated, each with its random control, as a gate redraws nothing:
    neuron masks over the layer (``encoding.pack_mask``)."""
    by_id = {t.id: t for t in sets}
    return {tid: {"layer": by_id[tid].layer, "neurons": pack_mask(by_id[tid].neurons, ffn),
                  "control": {"id": cid, "neurons": pack_mask(by_id[cid].neurons, ffn)}}
            for tid, cid in controls.items() if tid in by_id and cid in by_id}


def _confirmed(result: HypothesisResult, estimates: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The screen beside the exact measurement: each confirmed target's estimated and exact mean drops,
    and how many of the random checks (not in the screen's top) turned out to matter."""
    rows = {}
    for tid, c in result.components.items():
        e = estimates[tid]
        rows[tid] = {"chosen": e["chosen"], "class": c.cls,
                     "estimate": {"recall": e["recall"], "reasoning": e["reasoning"]},
                     "exact": {side: c.details["recall_drop" if side == "recall" else "reasoning_drop"][0]
                               for side in SKILLS}}
    random = [t for t, r in rows.items() if r["chosen"] == "random"]
    neurons = {t for t in random if parse_target(t).kind == "neuron"}
    checks = {kind: {"n": len(ids), "mattered": [t for t in ids if rows[t]["class"] != "none"]}
              for kind, ids in (("components", [t for t in random if t not in neurons]),
                                ("neurons", [t for t in random if t in neurons]))}
    return {"confirmed": rows, "n_confirmed": len(rows),
            "random_checks": {"n": len(random), "mattered": [t for t in random if rows[t]["class"] != "none"],
                              **checks}}


ANALYSIS = H5Analysis()
