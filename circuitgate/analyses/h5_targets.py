"""H5's choice of what to measure (docs/design.md, "H5 at scale"): H3's neuron sets with their random
controls, the fixed targets, the pairs (every pair or the known ones, the screen's half and the measured
half, a gate's baseline's), the screen path, and after an attribution screen the targets it picks (its
top per skill, a random share of the rest, a baseline's). ``analyses.h5`` measures and classifies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Collection, Mapping, Sequence

import numpy as np

from circuitgate import CircuitgateError
from circuitgate.config import H5Config
from circuitgate.encoding import unpack_mask
from circuitgate.ids import control_target, neuron_set_target, neuron_target
from circuitgate.interventions import Metrics, Target
from circuitgate.stats import stratified_subsample
from circuitgate.vocabulary import SKILLS

if TYPE_CHECKING:
    from circuitgate.analyses.base import Inputs
    from circuitgate.models import Shape


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
    prompts the clean model answers by ``scores`` (``clean.CleanScores``); with ``held_out`` (a screened
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


PAIR_SETTINGS = ("pairs", "max_pairs", "seed")


def baseline_pairs(inputs: "Inputs") -> np.ndarray | None:
    """The indices of the pairs the baseline's H5 ablated on, when the run chooses pairs as the
    baseline did; None otherwise (no baseline H5, or a setting of ``PAIR_SETTINGS`` changed)."""
    from circuitgate.analyses import baseline_entry

    entry = baseline_entry(inputs, "H5", None)
    if entry is None or not (entry.get("summary") or {}).get("pairs", {}).get("ids"):
        return None
    before = ((inputs.baseline.get("config") or {}).get("h5") or {})
    if any(before.get(k) != getattr(inputs.config.h5, k) for k in PAIR_SETTINGS):
        return None
    position = {pid: i for i, pid in enumerate(inputs.prompt_set.ids)}
    ids = entry["summary"]["pairs"]["ids"]
    missing = [pid for pid in ids if pid not in position]
    if missing:
        raise CircuitgateError(f"the baseline's H5 pairs are not in the prompt set {inputs.prompt_set.name}: "
                               f"{', '.join(missing[:3])}")
    return np.array(sorted(position[pid] for pid in ids), dtype=np.int64)


def fixed_neuron_sets(inputs: "Inputs") -> dict[str, tuple[int, tuple[int, ...]]]:
    """The neuron sets ablated as targets of their own: a baseline's, else the expectations source's
    (an organism's neuron blocks)."""
    from circuitgate.analyses import baseline_neuron_sets

    sets = baseline_neuron_sets(inputs)
    return sets if sets is not None else dict(inputs.expectations.neuron_sets)


def fixed_targets(shape: "Shape", neuron_sets: Mapping[str, tuple[int, tuple[int, ...]]]) -> list[Target]:
    """Every attention, MLP and head target, and the fixed neuron sets: the same under every method."""
    from circuitgate.interventions import standard_targets

    return standard_targets(shape) + [Target(tid, "neurons", layer, neurons=neurons)
                                          for tid, (layer, neurons) in neuron_sets.items()]


def screen_path(cfg: H5Config, shape: "Shape", remote: bool | str) -> str:
    """exact or attribution: which targets are measured exactly (``h5.screen``; auto: the screen once
    the exact sweep would ablate more than ``h5.exact_max`` attention, MLP and head targets, on local
    weights, not ``remote``: the screen does not run remotely)."""
    if cfg.screen != "auto":
        return cfg.screen
    small = len(fixed_targets(shape, {})) <= cfg.exact_max
    return "exact" if small or remote else "attribution"


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


@dataclass(frozen=True)
class Gated:
    """What a gate measures of H5: every target its baseline classified (under any method), the
    baseline's screen path, and this method's H3 neuron sets with their controls as the baseline drew
    them (None when the baseline did not record them: then this run's own H3 draws them)."""

    ids: frozenset[str]
    path: str
    sets: list[Target] | None
    controls: dict[str, str]


def gated_targets(inputs: "Inputs", method: str) -> Gated | None:
    """The baseline's H5 targets, or None without a baseline H5 that measured any."""
    from circuitgate.analyses import baseline_component_ids, baseline_entry

    ids = baseline_component_ids(inputs, "H5")
    entry = baseline_entry(inputs, "H5", method)
    if not ids or entry is None:
        return None
    summary = entry.get("summary") or {}
    path = (summary.get("screen") or {}).get("path", "exact")
    recorded = summary.get("h3_sets")
    if recorded is None:
        return Gated(frozenset(ids), path, None, {})
    ffn = inputs.shape.ffn
    sets, controls = [], {}
    for tid, rec in recorded.items():
        control = rec["control"]
        sets += [Target(tid, "neurons", rec["layer"], neurons=unpack_mask(rec["neurons"], ffn)),
                 Target(control["id"], "neurons", rec["layer"], neurons=unpack_mask(control["neurons"], ffn))]
        controls[tid] = control["id"]
    return Gated(frozenset(ids), path, sets, controls)
