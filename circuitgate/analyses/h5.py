"""H5: causal interventions on a circuit selectively impair its own capability.

The original repository never ran an intervention (docs/method.md "H4 and H5"). Here every target
(each layer's attention and MLP output, each head, and H3's task-specific neuron sets with random
same-size controls) is ablated on both tasks' prompts (``circuitgate.interventions``), and the
verdict is the task x target interaction (docs/method.md flaw 7): per prompt pair, the drop on the
recall prompt minus the drop on the reasoning prompt, with paired bootstrap intervals over pairs and,
for neuron sets, net of the random control's interaction (``causal.classify_targets``).

At scale (more than ``h5.exact_max`` targets, or ``h5.screen: attribution``) an attribution screen
(``circuitgate.attribution``) estimates every target's drop first, single neurons included, and only
its top targets per skill and a random share of the rest are ablated and classified (``screened``,
``screened_neurons``; docs/design.md "H5 at scale"). The pairs ablated on are ``h5.pairs`` (all, or
those the clean model answers), capped by ``h5.max_pairs``; the clean accuracy every run reports is
measured here (``clean_scores``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Collection, Mapping, Sequence

import numpy as np

from circuitgate import CircuitgateError
from circuitgate.analyses.base import Analysis
from circuitgate.causal import classify_targets, verdict_from_classes
from circuitgate.config import GateConfig, H5Config
from circuitgate.ids import control_target, neuron_set_target, neuron_target, parse_target
from circuitgate.encoding import pack_mask, unpack_mask
from circuitgate.interventions import Metrics, PatchResult, SweepResult, Target
from circuitgate.plan import Plan, peak_bytes
from circuitgate.results import ComponentResult, HypothesisResult
from circuitgate.stats import noise_floor, resample_rows, stratified_subsample
from circuitgate.vocabulary import METRICS, SKILLS

if TYPE_CHECKING:
    from circuitgate.session import Run


def neuron_targets(specific: np.ndarray, d: np.ndarray, seed: int) -> tuple[list[Target], dict[str, str]]:
    """H3's task-specific neurons as ablation targets, one set per layer and type, each with a random
    control set of the same size from the same layer.

    specific, d: H3's [L, F] mask and effect sizes (d < 0: recall-specific). A control is drawn from
    the layer's other neurons when there are enough of them, else from all of the layer's neurons.
    Returns the targets (sets and controls) and set id -> control id.
    """
    rng = np.random.default_rng(seed)
    n_neurons = specific.shape[1]
    targets, controls = [], {}
    for layer in range(specific.shape[0]):
        for skill, sign in (("recall", -1.0), ("reasoning", 1.0)):
            chosen = np.flatnonzero(specific[layer] & (np.sign(d[layer]) == sign))
            if chosen.size == 0:
                continue
            others = np.setdiff1d(np.arange(n_neurons), chosen)
            pool = others if others.size >= chosen.size else np.arange(n_neurons)
            control = np.sort(rng.choice(pool, size=chosen.size, replace=False))
            tid = neuron_set_target(layer, skill)
            targets += [Target(tid, "neurons", layer, neurons=tuple(chosen)),
                        Target(control_target(tid), "neurons", layer, neurons=tuple(control))]
            controls[tid] = control_target(tid)
    return targets, controls


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
def clean_scores(run: "Run") -> dict[str, Metrics]:
    """task -> the clean model's whole-answer metrics on every pair of the prompt set: the clean accuracy
    every run reports, and what ``h5.pairs: known`` selects by. Computed once per run."""
    return _clean_forward(run)[0]


def _clean_forward(run: "Run") -> tuple[dict[str, Metrics], float]:
    """``clean_scores`` and the seconds they took: one plain forward of every prompt, by which H5's
    plan times this machine (``h5_plan``)."""
    from circuitgate.interventions import ablation_sweep

    ps = run.prompt_set

    def measure() -> tuple[dict[str, Metrics], float]:
        start = time.perf_counter()
        # No target: each pass is one copy of one batch.
        scores = {side: ablation_sweep(run.loaded, ps.prompts(side), ps.answers(side), [], candidates=ps.answers(side),
                                       desc=f"clean {side} answers", **_intervention_args(run, run.batch_size)).clean
                  for side in SKILLS}
        return scores, time.perf_counter() - start

    return run.memo("clean scores", measure)


def clean_accuracy(run: "Run") -> dict[str, float]:
    return {side: float(m.accuracy.mean()) for side, m in clean_scores(run).items()}


def _pool(ps: Any, pairs: str, scores: Mapping[str, Metrics] | None) -> np.ndarray:
    """Every pair, or (``pairs`` known) those whose two prompts the clean model answers by ``scores``."""
    if pairs == "known":
        return np.flatnonzero((scores["recall"].accuracy == 1) & (scores["reasoning"].accuracy == 1))
    return np.arange(len(ps.pairs))


def _strata(ps: Any, rows: np.ndarray) -> np.ndarray:
    return np.array([f"{ps.pairs[i].recall.template}|{ps.pairs[i].reasoning.template}" for i in rows])


def _capped(ps: Any, rows: np.ndarray, max_pairs: int, seed: int) -> np.ndarray:
    """``rows``, or a subsample of ``max_pairs`` of them (0: no cap) stratified by template pair."""
    if max_pairs and len(rows) > max_pairs:
        rows = rows[stratified_subsample(_strata(ps, rows), max_pairs, seed)]
    return rows


def _halves(ps: Any, pool: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(screen half, measured half) of the pool, disjoint, each stratified by template pair: the
    screen ranks targets on pairs the exact ablations never see, so the targets it picks are
    confirmed on pairs it did not rank (no double dipping; docs/method.md, "H5's classes control
    false discoveries")."""
    if len(pool) < 2:
        return pool[:0], pool
    screen = pool[stratified_subsample(_strata(ps, pool), len(pool) // 2, seed + 1)]
    return screen, np.setdiff1d(pool, screen)


def chosen_pairs(ps: Any, pairs: str, max_pairs: int, seed: int,
                 scores: Mapping[str, Metrics] | None = None, held_out: bool = False) -> np.ndarray:
    """Indices of the pairs to ablate on, sorted: every pair, or (``pairs`` known) those whose two
    prompts the clean model answers by ``scores`` (``clean_scores``); with ``held_out`` (a screened
    run) only the measured half of them (``_halves``); then a subsample of ``max_pairs`` (0: no cap)
    stratified by template pair."""
    pool = _pool(ps, pairs, scores)
    if held_out:
        pool = _halves(ps, pool, seed)[1]
    return _capped(ps, pool, max_pairs, seed)


def screen_pairs(ps: Any, pairs: str, max_pairs: int, seed: int,
                 scores: Mapping[str, Metrics] | None = None) -> np.ndarray:
    """Indices of the pairs the attribution screen ranks on: the other half of ``chosen_pairs``' pool,
    capped alike."""
    return _capped(ps, _halves(ps, _pool(ps, pairs, scores), seed)[0], max_pairs, seed)


def swept_pairs(run: "Run") -> np.ndarray:
    """Indices of the pairs H5 ablates on, sorted: a gate's baseline's (the same pairs, compared pair by
    pair), unless the run changed how they are chosen (``h5.pairs``, ``h5.max_pairs``, ``h5.seed``);
    else chosen by those settings, from the half of the pool the screen does not rank when the run
    screens (``screen_path``)."""
    cfg = run.config.h5

    def choose() -> np.ndarray:
        kept = baseline_pairs(run)
        if kept is not None:
            return kept
        return chosen_pairs(run.prompt_set, cfg.pairs, cfg.max_pairs, cfg.seed,
                            clean_scores(run) if cfg.pairs == "known" else None,
                            held_out=screen_path(run) == "attribution")

    return run.memo("H5 pairs", choose)


def screened_pairs(run: "Run") -> np.ndarray:
    """Indices of the pairs the attribution screen ranks on (``screen_pairs``), never ablated exactly
    in a fresh run."""
    cfg = run.config.h5
    return run.memo("H5 screen pairs", lambda: screen_pairs(
        run.prompt_set, cfg.pairs, cfg.max_pairs, cfg.seed, clean_scores(run) if cfg.pairs == "known" else None))


PAIR_SETTINGS = ("pairs", "max_pairs", "seed")


def baseline_pairs(run: "Run") -> np.ndarray | None:
    """The indices of the pairs the baseline's H5 ablated on, when the run chooses pairs as the
    baseline did; None otherwise (no baseline H5, or a setting of ``PAIR_SETTINGS`` changed)."""
    from circuitgate.analyses import baseline_entry

    entry = baseline_entry(run, "H5", None)
    if entry is None or not (entry.get("summary") or {}).get("pairs", {}).get("ids"):
        return None
    before = ((run.baseline.get("config") or {}).get("h5") or {})
    if any(before.get(k) != getattr(run.config.h5, k) for k in PAIR_SETTINGS):
        return None
    position = {pid: i for i, pid in enumerate(run.prompt_set.ids)}
    ids = entry["summary"]["pairs"]["ids"]
    missing = [pid for pid in ids if pid not in position]
    if missing:
        raise CircuitgateError(f"the baseline's H5 pairs are not in the prompt set {run.prompt_set.name}: "
                               f"{', '.join(missing[:3])}")
    return np.array(sorted(position[pid] for pid in ids), dtype=np.int64)


def swept(run: "Run", rows: np.ndarray | None = None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """task -> the prompts and task -> the answers of the pairs ``rows`` (default: those H5 ablates
    on, ``swept_pairs``)."""
    ps = run.prompt_set
    rows = swept_pairs(run) if rows is None else rows
    return ({side: [ps.prompts(side)[i] for i in rows] for side in SKILLS},
            {side: [ps.answers(side)[i] for i in rows] for side in SKILLS})


def _intervention_args(run: "Run", max_rows: int) -> dict[str, Any]:
    return {"batch_size": run.batch_size, "max_rows": max_rows,
            "progress": run.settings.progress}


def _sweep(run: "Run", targets: list[Target], desc: str, max_rows: int) -> dict[str, SweepResult]:
    """Both tasks' ablation sweeps over ``targets``, ``max_rows`` rows a pass (the plan's)."""
    from circuitgate.interventions import ablation_sweep

    cfg, ps = run.config.h5, run.prompt_set
    prompts, answers = swept(run)
    reference = prompts["recall"] + prompts["reasoning"]  # mean ablation: both tasks alike
    return {side: ablation_sweep(run.loaded, prompts[side], answers[side], targets,
                                 ablation=cfg.ablation, reference=reference, candidates=ps.answers(side),
                                 desc=f"{desc} ({side})", **_intervention_args(run, max_rows))
            for side in SKILLS}


def fixed_neuron_sets(run: "Run") -> dict[str, tuple[int, tuple[int, ...]]]:
    """The neuron sets ablated as targets of their own: a baseline's, else the expectations source's
    (an organism's neuron blocks)."""
    from circuitgate.analyses import baseline_neuron_sets

    sets = baseline_neuron_sets(run)
    return sets if sets is not None else dict(run.expectations.neuron_sets)


def fixed_targets(run: "Run", neuron_sets: dict[str, tuple[int, tuple[int, ...]]]) -> list[Target]:
    """Every attention, MLP and head target, and the fixed neuron sets: the same under every method."""
    from circuitgate.interventions import standard_targets

    return standard_targets(run.shape) + [Target(tid, "neurons", layer, neurons=neurons)
                                          for tid, (layer, neurons) in neuron_sets.items()]


def _patch_residuals(run: "Run", max_rows: int) -> dict[str, PatchResult]:
    """The last-token residual of the paired prompt patched in at every layer, both directions."""
    from circuitgate.interventions import patch_residual

    ps, common, rows = run.prompt_set, _intervention_args(run, max_rows), swept_pairs(run)
    recall_acts, reasoning_acts = run.activations
    prompts, answers = swept(run)
    return {
        "recall_into_reasoning": patch_residual(run.loaded, prompts["reasoning"], answers["reasoning"],
                                                recall_acts.resid[rows], answers["recall"],
                                                candidates=ps.answers("reasoning"), desc="H5 patching", **common),
        "reasoning_into_recall": patch_residual(run.loaded, prompts["recall"], answers["recall"],
                                                reasoning_acts.resid[rows], answers["reasoning"],
                                                candidates=ps.answers("recall"), desc="H5 patching", **common),
    }


def screen_path(run: "Run") -> str:
    """exact or attribution: which targets are measured exactly (``h5.screen``; auto: the screen once
    the exact sweep would ablate more than ``h5.exact_max`` attention, MLP and head targets, on local
    weights: the screen does not run remotely)."""
    cfg = run.config.h5
    if cfg.screen != "auto":
        return cfg.screen
    small = len(fixed_targets(run, {})) <= cfg.exact_max
    return "exact" if small or run.loaded.remote else "attribution"


def _screens(run: "Run", max_rows: int) -> dict[str, Any]:
    """Both tasks' attribution screens over the screen's own pairs (``screened_pairs``): every head,
    sublayer and neuron, ``max_rows`` rows a pass (the plan's)."""
    from circuitgate.attribution import SCREEN_ABLATIONS, attribution_screen

    cfg, ps = run.config.h5, run.prompt_set
    prompts, answers = swept(run, screened_pairs(run))
    # Resample has no first-order path of its own: the screen ranks by the mean ablation, which the
    # exact confirmation then replaces by the configured one.
    ablation = cfg.ablation if cfg.ablation in SCREEN_ABLATIONS else "mean"
    return {side: attribution_screen(run.loaded, prompts[side], answers[side],
                                     ablation=ablation, reference=prompts["recall"] + prompts["reasoning"],
                                     candidates=ps.answers(side), steps=cfg.screen_steps, groups=cfg.screen_groups,
                                     seed=cfg.seed,
                                     desc=f"H5 screen ({side})", **_intervention_args(run, max_rows))
            for side in SKILLS}


def _planned_sweeps(run: "Run", path: str, fixed: Sequence[Target], sets: Sequence[Target],
                    controls: Mapping[str, str], gated: "Gated | None") -> tuple[list[int], bool]:
    """The targets of each exact sweep per task (the fixed ones once, H3's sets once per method), and
    whether they are a bound (a fresh screen picks them): what ``compute`` will measure."""
    from circuitgate.plan import measured_targets

    methods = len(run.settings.methods)
    if gated is None:
        components, per_method = measured_targets(path, run.config.h5, len(fixed), run.shape.n_layers * run.shape.ffn,
                                                  len(controls))
        return [components] + [per_method] * methods, path == "attribution"
    components = sum(t.id in gated.ids for t in fixed)
    if path == "attribution":
        components += sum(parse_target(t).kind == "neuron" for t in gated.ids)
        per_method = len(sets) if gated.sets is not None else 2 * sum(t in gated.ids for t in controls)
    else:
        per_method = len(sets)
    return [components] + [per_method] * methods, False


def h5_plan(run: "Run", path: str, sweeps: Sequence[int], at_most: bool) -> tuple[Plan, float]:
    """H5's plan on this machine (``circuitgate.plan``), shown where progress goes, and when it was made:
    the prompts' token counts, the model's shape and dtype, the memory held and available now, and
    the seconds per token of the clean forward (``_clean_forward``), made once per run."""
    from circuitgate.extract import tokenize
    from circuitgate.interventions import answer_tokens
    from circuitgate.plan import Prompts, memory_now, padded_tokens, plan_h5
    from circuitgate.progress import note

    def make() -> tuple[Plan, float]:
        loaded, ps = run.loaded, run.prompt_set

        def prompts(rows: np.ndarray) -> list[Prompts]:
            chosen = swept(run, rows)
            # A tokenizer refuses an empty list (the screen has no pair of its own in a pool of one).
            return [Prompts(tuple(len(t) for t in tokenize(loaded, chosen[0][side])) if len(rows) else (),
                            tuple(len(a) for a in answer_tokens(loaded.tokenizer, chosen[1][side])))
                    for side in SKILLS]

        everything = prompts(np.arange(len(ps.pairs)))
        seconds = _clean_forward(run)[1]
        fed = sum(padded_tokens(task.fed, run.batch_size) for task in everything)
        screen = [p.prompt for p in prompts(screened_pairs(run))] if path == "attribution" else []
        params = list(loaded.hf.parameters())
        held, available = memory_now(loaded.device)
        plan = plan_h5(loaded.shape, vocab=int(loaded.hf.get_output_embeddings().weight.shape[0]),
                       dtype_bytes=params[0].element_size(), weights_bytes=sum(p.numel() * p.element_size() for p in params),
                       swept=prompts(swept_pairs(run)), screened=screen, batch_size=run.batch_size,
                       device=loaded.device, path=path, cfg=run.config.h5, sweeps=sweeps,
                       seconds_per_token=seconds / fed if fed else None, held_bytes=held,
                       # Under --remote the passes run on NDIF: nothing here to fit.
                       available_bytes=None if loaded.remote is True else available, at_most=at_most)
        note(f"H5 plan: {plan.describe()}", enabled=run.settings.progress)
        return plan, time.perf_counter()

    return run.memo("H5 plan", make)


def screened(screens: Mapping[str, Any], targets: Sequence[Target], controls: Mapping[str, str], cfg: H5Config,
             salt: int = 0, keep: Collection[str] = (), fresh: bool = True) -> tuple[list[Target], dict[str, Any]]:
    """The targets to measure exactly: per skill the 2 * top_k with the largest mean estimated drop on
    it, plus ``random_fraction`` of the rest drawn at random (to catch what the screen missed), plus
    those named in ``keep`` (a baseline's), each neuron set with its control; not ``fresh`` (a gate):
    only those in ``keep``. Returns them (in ``targets``' order) and the screen's record: each
    candidate's estimated mean drop per skill and why it was chosen."""
    control_ids = set(controls.values())
    candidates = [t for t in targets if t.id not in control_ids]
    if not candidates:
        return [], {}
    estimate = {side: screens[side].estimates(candidates).mean(0) for side in SKILLS}
    top: set[str] = set()
    random: set[str] = set()
    if fresh:
        for side in SKILLS:
            top.update(candidates[j].id for j in np.argsort(-estimate[side], kind="stable")[:2 * cfg.top_k])
        rest = [t.id for t in candidates if t.id not in top]
        rng = np.random.default_rng(cfg.seed + salt)
        n_random = min(len(rest), int(np.ceil(cfg.random_fraction * len(rest))))
        random = set(rng.choice(rest, size=n_random, replace=False).tolist()) if n_random else set()
    kept = {t.id for t in candidates if t.id in keep} - top - random
    chosen = top | random | kept
    chosen |= {controls[t] for t in chosen if t in controls}
    why = {**{t: "baseline" for t in kept}, **{t: "random" for t in random}, **{t: "top" for t in top}}
    record = {t.id: {"recall": float(estimate["recall"][j]), "reasoning": float(estimate["reasoning"][j]),
                     "chosen": why.get(t.id)}
              for j, t in enumerate(candidates)}
    return [t for t in targets if t.id in chosen], record


def screened_neurons(screens: Mapping[str, Any], cfg: H5Config, keep: Sequence[tuple[int, int]] = (),
                     fresh: bool = True) -> tuple[list[Target], dict[str, Any]]:
    """The single neurons to measure exactly: per skill the 2 * top_k with the largest mean estimated
    drop on it, plus ``neuron_random_fraction`` of the rest drawn at random, plus the (layer, neuron)s
    in ``keep`` (a baseline's), in layer order; not ``fresh`` (a gate): only those in ``keep``. Returns
    them and their record as ``screened``'s (the unchosen are not listed: 530k on a 7B model)."""
    means = {side: screens[side].neurons.mean(axis=0, dtype=np.float64) for side in SKILLS}  # [L, F]
    n_layers, ffn = means["recall"].shape
    flat = {side: m.reshape(-1) for side, m in means.items()}
    top = np.zeros(0, dtype=np.int64)
    random = np.zeros(0, dtype=np.int64)
    if fresh:
        top = np.unique(np.concatenate([np.argsort(-flat[side], kind="stable")[:2 * cfg.top_k] for side in SKILLS]))
        rest = np.setdiff1d(np.arange(flat["recall"].size), top, assume_unique=True)
        n_random = min(rest.size, int(np.ceil(cfg.neuron_random_fraction * rest.size)))
        random = np.random.default_rng(cfg.seed + 2).choice(rest, size=n_random, replace=False)
    kept = np.array([layer * ffn + j for layer, j in keep if layer < n_layers and j < ffn], dtype=np.int64)
    kept = np.setdiff1d(kept, np.concatenate([top, random]))
    chosen = np.concatenate([top, random, kept])
    reasons = np.array(["top"] * top.size + ["random"] * random.size + ["baseline"] * kept.size)
    order = np.argsort(chosen, kind="stable")
    targets, record = [], {}
    for i, why in zip(chosen[order], reasons[order]):
        layer, j = int(i // ffn), int(i % ffn)
        tid = neuron_target(layer, j)
        targets.append(Target(tid, "neurons", layer, neurons=(j,)))
        record[tid] = {"recall": float(flat["recall"][i]), "reasoning": float(flat["reasoning"][i]),
                       "chosen": str(why)}
    return targets, record


class H5Analysis(Analysis):
    """Ablate the fixed targets on both tasks (once per run: the same under every method), and the
    method's H3 neuron sets with their random controls; patch residuals across tasks; classify. Beyond
    ``h5.exact_max`` targets (or under ``h5.screen: attribution``) an attribution screen picks which of
    them are measured exactly, and only those are classified. A gate (``--baseline``) measures exactly
    the targets its baseline classified, its neuron sets as the baseline drew them, on its pairs
    (``gated_targets``): the same units on the same pairs, compared pair by pair."""

    hypothesis = "H5"

    def compute(self, run: "Run", method: str) -> HypothesisResult:
        cfg, ps, rows = run.config.h5, run.prompt_set, swept_pairs(run)
        pairs = {"selection": cfg.pairs, "n": len(rows), "of": len(ps.pairs), "ids": [ps.ids[i] for i in rows]}
        reason = unmeasurable(clean_accuracy(run), len(rows), cfg, screen_path(run) == "attribution")
        if len(rows) < cfg.min_pairs:  # too few to sweep: say why without running an ablation
            summary = {"clean_accuracy": clean_accuracy(run), "pairs": pairs, "reason": reason,
                       "headline": f"not measured: {reason}"}
            return HypothesisResult("H5", "inconclusive", "causal", summary, {})
        gated = gated_targets(run, method)
        if gated is not None and gated.sets is not None:
            sets, controls = gated.sets, gated.controls
        else:
            h3 = run.result("H3", method)
            sets, controls = neuron_targets(h3.arrays["specific"], h3.arrays["d"], cfg.seed)
        neuron_sets = fixed_neuron_sets(run)
        fixed = fixed_targets(run, neuron_sets)
        path = gated.path if gated is not None else screen_path(run)
        # Before any pass: what they will take, and the rows each may hold (a run that cannot fit stops here).
        plan, planned = h5_plan(run, path, *_planned_sweeps(run, path, fixed, sets, controls, gated))
        screen: dict[str, Any] = {"path": path}
        if gated is not None:
            screen["chosen"] = "baseline"
        if path == "attribution":
            pairs["screen_ids"] = [ps.ids[i] for i in screened_pairs(run)]
            screens = run.memo("H5 screen", lambda: _screens(run, plan.screen_max_rows))
            keep = gated.ids if gated is not None else ()
            fresh = gated is None

            def screen_fixed() -> tuple[list[Target], dict[str, Any]]:
                components, record = screened(screens, fixed, {}, cfg, keep=keep, fresh=fresh)
                ids = [parse_target(t) for t in keep if parse_target(t).kind == "neuron"]
                neurons, neuron_record = screened_neurons(screens, cfg, [(n.layer, n.neuron) for n in ids], fresh=fresh)
                return components + neurons, {**record, **neuron_record}

            fixed, fixed_record = run.memo("H5 screened", screen_fixed)
            sets, set_record = screened(screens, sets, controls, cfg, salt=1,
                                        keep=keep if gated is None or gated.sets is None else [t.id for t in sets],
                                        fresh=fresh)
            controls = {t: c for t, c in controls.items() if any(s.id == t for s in sets)}
            first = next(iter(screens.values()))
            n_neurons = int(np.prod(first.neurons.shape[1:]))
            screen.update(method=first.method, steps=first.steps, groups=first.groups, metric=first.metric,
                          ablation=first.ablation,
                          top_k=cfg.top_k, random_fraction=cfg.random_fraction,
                          neuron_random_fraction=cfg.neuron_random_fraction, n_neurons=n_neurons,
                          estimates={**fixed_record, **set_record})
            screen["n_screened"] = n_neurons + sum(parse_target(t).kind != "neuron" for t in screen["estimates"])
        elif gated is not None:
            fixed = [t for t in fixed if t.id in gated.ids]
        sweeps = run.memo("H5 sweeps", lambda: _sweep(run, fixed, "H5 ablations", plan.sweep_max_rows))
        if sets:
            extra = _sweep(run, sets, f"H5 {method} neuron ablations", plan.sweep_max_rows)
            sweeps = {side: SweepResult(sweeps[side].clean, {**sweeps[side].ablated, **extra[side].ablated},
                                        sweeps[side].ablation) for side in SKILLS}
        result = analyse_h5(sweeps["recall"], sweeps["reasoning"], fixed + sets, controls, cfg,
                            run.memo("H5 patching", lambda: _patch_residuals(run, plan.sweep_max_rows)), clean_accuracy(run),
                            run.config.gate)
        if path == "attribution":
            screen.update(_confirmed(result, screen["estimates"]))
        recorded = {tid: {"layer": layer, "neurons": list(neurons)} for tid, (layer, neurons) in neuron_sets.items()}
        # The plan beside what H5 took since it was made (verdicts.json's one record of this machine).
        measured = {"seconds": time.perf_counter() - planned, "peak_bytes": peak_bytes(run.loaded.device)}
        summary = {**result.summary, "neuron_sets": recorded, "h3_sets": _h3_sets(sets, controls, run.shape.ffn),
                   "pairs": pairs, "screen": screen, "plan": {**plan.to_dict(), "measured": measured}}
        return replace(result, summary=summary, uncertainty={**result.uncertainty, "pairs": pairs["ids"]})


def _h3_sets(sets: Sequence[Target], controls: Mapping[str, str], ffn: int) -> dict[str, Any]:
    """H3's neuron sets that were ablated, each with its random control, as a gate redraws nothing:
    neuron masks over the layer (``encoding.pack_mask``)."""
    by_id = {t.id: t for t in sets}
    return {tid: {"layer": by_id[tid].layer, "neurons": pack_mask(by_id[tid].neurons, ffn),
                  "control": {"id": cid, "neurons": pack_mask(by_id[cid].neurons, ffn)}}
            for tid, cid in controls.items() if tid in by_id and cid in by_id}


@dataclass(frozen=True)
class Gated:
    """What a gate measures of H5: every target its baseline classified (under any method), the
    baseline's screen path, and this method's H3 neuron sets with their controls as the baseline drew
    them (None when the baseline did not record them: then this run's own H3 draws them)."""

    ids: frozenset[str]
    path: str
    sets: list[Target] | None
    controls: dict[str, str]


def gated_targets(run: "Run", method: str) -> Gated | None:
    """The baseline's H5 targets, or None without a baseline H5 that measured any."""
    from circuitgate.analyses import baseline_component_ids, baseline_entry

    ids = baseline_component_ids(run, "H5")
    entry = baseline_entry(run, "H5", method)
    if not ids or entry is None:
        return None
    summary = entry.get("summary") or {}
    path = (summary.get("screen") or {}).get("path", "exact")
    recorded = summary.get("h3_sets")
    if recorded is None:
        return Gated(frozenset(ids), path, None, {})
    ffn = run.shape.ffn
    sets, controls = [], {}
    for tid, rec in recorded.items():
        control = rec["control"]
        sets += [Target(tid, "neurons", rec["layer"], neurons=unpack_mask(rec["neurons"], ffn)),
                 Target(control["id"], "neurons", rec["layer"], neurons=unpack_mask(control["neurons"], ffn))]
        controls[tid] = control["id"]
    return Gated(frozenset(ids), path, sets, controls)


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
