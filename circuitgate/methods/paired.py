"""``--method paired``: the sound default, fixing docs/method.md, flaws 1-8.

Per pair, the difference reasoning - recall of every feature of every unit (layer, head, neuron):
1. paired tests: Wilcoxon signed-rank on the differences (exact up to 50 pairs), effect size d_z,
   paired bootstrap intervals over pairs; no |d| capping (flaws 1, 6);
2. one FDR family over all features x units (BH, or BY under any dependence), and a verdict that
   is ``inconclusive`` when the family's bar lies below the smallest p the pairs can give (flaw 5);
3. no double dipping: over repeated random half splits of the pairs, units are selected on one half
   and confirmed on the other; a unit counts only when a share ``stability`` of the splits confirms
   the same class (flaw 3);
4. controls (the same task under two templates) go through the same analysis; a hypothesis whose
   controls come out specialised is ``inconclusive``, "confounded by template" (flaw 2);
5. each feature votes once: concentration = 1/(1 + entropy) is left out (flaw 4), and features are
   oriented so that a class means the same thing whichever feature shows it.

Classes: a unit is ``reasoning`` when its oriented features are larger on reasoning prompts (more
active residual/MLP, more focused attention, a more active neuron), ``recall`` when larger on recall,
``mixed`` when confirmed features point both ways. The only Python loops run over the splits and over
the assembly of the per-component records.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np
import torch

from circuitgate import CircuitgateError
from circuitgate.activations import Activations, validate_sides
from circuitgate.config import Config, PairedConfig
from circuitgate.features import h1_layer_features, h2_head_metrics
from circuitgate.ids import head_id, layer_id, neuron_id
from circuitgate.results import ComponentResult, HypothesisResult, class_counts, feature_details
from circuitgate.stats import d_z, fdr_correction, min_attainable_p, noise_floor, pair_splits, paired_bootstrap_dz, \
    resample_rows, \
    wilcoxon_signed_rank

METHOD = "paired"
# +1: larger means more engaged; -1: larger means less (entropy: diffuse attention; sparsity: idle
# neurons). Concentration, a monotone transform of entropy, is not a second feature (flaw 4).
H1_ORIENTATION: dict[str, float] = {"norm": 1.0, "mean": 1.0, "entropy": -1.0, "magnitude": 1.0, "sparsity": -1.0}
H2_ORIENTATION: dict[str, float] = {"entropy": -1.0, "max": 1.0, "focus": 1.0, "spread": 1.0, "gini": 1.0}
CLASS_NAMES = np.array(["none", "recall", "reasoning", "mixed"])
MIN_PAIRS = 4  # fewer cannot be split into two halves that each hold a test
TOP_NEURONS = 20  # neurons listed in H3's summary, by stability then |d_z|


class Family(NamedTuple):
    """One family of paired tests (features x units) through the split-half procedure."""

    cls: np.ndarray  # [U] class names
    stability: np.ndarray  # [U] share of splits confirming that class (0 for "none": the top class's share)
    counts: np.ndarray  # [3, U] splits confirming recall, reasoning, mixed
    dz: np.ndarray  # [F, U] oriented d_z on all pairs
    p_adj: np.ndarray  # [F, U] adjusted p on all pairs, one family (descriptive: classes come from the splits)
    n_pairs: int
    n_tests: int
    bar: float  # the selection family's smallest rejection threshold
    min_p: float  # the smallest p the selection half can give
    selected: float  # mean number of tests selected per split

    @property
    def feasible(self) -> bool:
        return self.min_p <= self.bar

    @property
    def specialised(self) -> np.ndarray:
        return self.cls != "none"


def _split_classes(confirmed: np.ndarray, sign: np.ndarray) -> np.ndarray:
    """[U] class codes (0 none, 1 recall, 2 reasoning, 3 mixed) from confirmed tests [F, U]."""
    up = (confirmed & (sign > 0)).any(axis=0)
    down = (confirmed & (sign < 0)).any(axis=0)
    return np.select([up & down, up, down], [3, 2, 1], 0)


def _splits(n_pairs: int, cfg: PairedConfig, groups: np.ndarray | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (select, confirm) row splits; with ``groups`` (the pair each row copies, in a bootstrap
    resample) whole groups are split, so a pair drawn twice never sits on both sides."""
    if groups is None:
        return pair_splits(n_pairs, cfg.n_splits, cfg.seed)
    distinct = np.unique(groups)
    return [(np.flatnonzero(np.isin(groups, distinct[s])), np.flatnonzero(np.isin(groups, distinct[c])))
            for s, c in pair_splits(len(distinct), cfg.n_splits, cfg.seed)]


def family(diff: np.ndarray, cfg: PairedConfig, device: str | torch.device = "cpu",
           groups: np.ndarray | None = None) -> Family:
    """Split-half selection and confirmation of a family of oriented differences ``diff`` [P, F, U].

    In each split, a test is selected on one half when the family-wide correction rejects it and
    |d_z| >= d_min; it is confirmed on the other half by a one-sided test in the selected direction,
    corrected over the selected tests, with |d_z| >= d_min in the same direction. A unit's class in a
    split comes from its confirmed tests; over the splits, the class confirmed most often counts when
    its share reaches ``stability``. ``groups``: the pair each row is a copy of (``_splits``).
    """
    n_pairs, n_feat, n_units = diff.shape
    distinct = n_pairs if groups is None else len(np.unique(groups))
    if distinct < MIN_PAIRS:
        raise CircuitgateError(f"the paired method needs at least {MIN_PAIRS} pairs, got {distinct}")
    full = fdr_correction(wilcoxon_signed_rank(diff, device=device).p, cfg.alpha, cfg.correction)
    dz_full = d_z(diff)
    counts = np.zeros((3, n_units), dtype=np.int64)
    n_selected = 0
    for select, confirm in _splits(n_pairs, cfg, groups):
        ws, dzs = wilcoxon_signed_rank(diff[select], device=device), d_z(diff[select])
        chosen = fdr_correction(ws.p, cfg.alpha, cfg.correction).reject & (np.abs(dzs) >= cfg.d_min)
        sign = np.sign(dzs)
        confirmed = np.zeros_like(chosen)
        if chosen.any():
            n_selected += int(chosen.sum())
            held_out = diff[confirm][:, chosen]  # [P/2, selected tests]
            wc, dzc = wilcoxon_signed_rank(held_out, device=device), d_z(held_out)
            one_sided = np.where(sign[chosen] > 0, wc.p_greater, wc.p_less)
            ok = fdr_correction(one_sided, cfg.alpha, cfg.correction).reject \
                & (np.sign(dzc) == sign[chosen]) & (np.abs(dzc) >= cfg.d_min)
            confirmed[chosen] = ok
        code = _split_classes(confirmed, sign)
        counts += np.stack([code == k for k in (1, 2, 3)])
    n_splits = cfg.n_splits
    share = counts / n_splits
    top = share.max(axis=0)
    best = share.argmax(axis=0)
    tied = (share == top).sum(axis=0) > 1  # two classes confirmed equally often: mixed
    code = np.where(top >= cfg.stability - 1e-12, np.where(tied, 3, best + 1), 0)
    return Family(CLASS_NAMES[code], top, counts, dz_full, full.p_adj, n_pairs, n_feat * n_units, float(full.bar),
                  min_attainable_p(distinct // 2), n_selected / n_splits)


# -- one hypothesis = the values it tests + a way to count its family ----------------------------
class Spec(NamedTuple):
    hypothesis: str
    arrays: tuple[str, ...]  # the Activations arrays it reads (validated finite)
    orientation: Mapping[str, float]  # feature -> +1 / -1 (see H1_ORIENTATION)
    values: Callable[[Activations], np.ndarray]  # activations -> [P, F, U] raw feature values

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.orientation)

    def diff(self, recall: Activations, reasoning: Activations) -> np.ndarray:
        return self.oriented(self.values(recall), self.values(reasoning))

    def oriented(self, recall: np.ndarray, reasoning: np.ndarray) -> np.ndarray:
        """[P, F, U] oriented differences reasoning - recall of raw values; a head skipped on either
        side (NaN) gives no evidence (0: the signed-rank test drops zero differences)."""
        sign = np.array(list(self.orientation.values()), dtype=np.float32)[None, :, None]
        return np.nan_to_num((reasoning - recall) * sign, nan=0.0)


def _h1_values(acts: Activations) -> np.ndarray:
    f = h1_layer_features(acts)
    return np.stack([f[k] for k in H1_ORIENTATION], axis=1)


def _h2_values(acts: Activations) -> np.ndarray:
    m = h2_head_metrics(acts)
    v = np.stack([m[k] for k in H2_ORIENTATION], axis=1)
    return v.reshape(v.shape[0], v.shape[1], -1)  # heads flattened layer-major


def _h3_values(acts: Activations) -> np.ndarray:
    # The true neuron activation act(gate) * up, the input of down_proj that H5's neuron ablations
    # set; the original read gate_proj's pre-activation instead (docs/method.md "Activations").
    return acts.neurons.reshape(acts.neurons.shape[0], 1, -1)


SPECS = {
    "H1": Spec("H1", ("resid", "attn", "gate"), H1_ORIENTATION, _h1_values),
    "H2": Spec("H2", ("attn",), H2_ORIENTATION, _h2_values),
    "H3": Spec("H3", ("neurons",), {"activation": 1.0}, _h3_values),
}


class Count(NamedTuple):
    """What a family adds up to for its hypothesis: the specialised units of the verdict's kind."""

    n: int  # specialised layers (H1, H3) or heads (H2)
    threshold: int
    unit: str  # "layers" or "heads"

    @property
    def supported(self) -> bool:
        return self.n >= self.threshold


def _layer_fraction(fam: Family, n_layers: int) -> np.ndarray:
    return fam.specialised.reshape(n_layers, -1).mean(axis=1)


def _count(hypothesis: str, fam: Family, n_layers: int, config: Config) -> Count:
    if hypothesis == "H1":
        return Count(int(fam.specialised.sum()), config.h1.min_layers.for_size(n_layers), "layers")
    if hypothesis == "H2":
        return Count(int(fam.specialised.sum()), config.h2.min_heads.for_size(fam.cls.size), "heads")
    layers = _layer_fraction(fam, n_layers) >= config.h3.layer_fraction
    return Count(int(layers.sum()), config.h3.min_layers.for_size(n_layers), "layers")


def _infeasible(fam: Family, cfg: PairedConfig, what: str = "") -> str:
    return (f"{what}the {cfg.correction.upper()} bar {fam.bar:.2g} (alpha {cfg.alpha} over {fam.n_tests} tests) "
            f"is below the smallest p {fam.min_p:.2g} that {fam.n_pairs // 2} pairs per half can give, "
            f"so no unit can be selected; more pairs are needed")


# A pair set whose sides differ by less than one token on average is length-matched: nothing to mirror.
MIN_LENGTH_GAP = 1.0
# A control family mirrors the pairs' length difference when its own is at least this share of it.
MIN_GAP_SHARE = 0.5


def _mean_gap(a: Activations, b: Activations) -> float:
    return float(np.mean(np.abs(np.asarray(b.lengths, dtype=float) - np.asarray(a.lengths, dtype=float))))


def control_mismatch(recall: Activations, reasoning: Activations,
                     controls: Mapping[str, tuple[Activations, Activations]]) -> str | None:
    """Why the controls cannot check the template confound, or None when they can.

    A control rules the confound out only if its two templates differ the way a pair's two prompts
    do apart from the task (docs/method.md, "Template controls"). Length is the difference every
    prompt set shows in its token counts: when the pairs' sides differ by ``MIN_LENGTH_GAP`` tokens or
    more on average and a control family's sides differ by less than ``MIN_GAP_SHARE`` of that, a
    clean control says nothing about the pairs (a length effect that separates the pairs cannot show
    up in it). Template names are checked where the set is loaded: a control's two sides never share one.
    """
    pair_gap = _mean_gap(recall, reasoning)
    gaps = {task: _mean_gap(a, b) for task, (a, b) in controls.items()}
    if pair_gap < MIN_LENGTH_GAP or all(g >= MIN_GAP_SHARE * pair_gap for g in gaps.values()):
        return None
    return ("the controls cannot check the template confound: the pairs differ by "
            f"{pair_gap:.1f} tokens on average, " + ", ".join(f"the {t} controls by {g:.1f}" for t, g in gaps.items())
            + " (a control must differ the way the pairs do, apart from the task)")


def _judge(main: Family, count: Count, controls: Mapping[str, tuple[Family, Count]], cfg: PairedConfig,
           mismatch: str | None) -> tuple[str, str | None]:
    """The verdict and, when it is inconclusive, why."""
    if not main.feasible:
        return "inconclusive", _infeasible(main, cfg)
    if not controls and cfg.require_controls:
        return "inconclusive", ("the prompt set has no controls (the same task under two templates), "
                                "so a template confound cannot be ruled out (paired.require_controls)")
    if mismatch:
        return "inconclusive", mismatch
    for task, (fam, _) in controls.items():
        if not fam.feasible:
            return "inconclusive", _infeasible(fam, cfg, f"the {task} controls: ")
    confounded = [f"{task} controls {c.n} {c.unit} (threshold {c.threshold})"
                  for task, (_, c) in controls.items() if c.supported]
    if confounded:
        return "inconclusive", (f"confounded by template: the same task under two templates comes out "
                                f"specialised too ({'; '.join(confounded)})")
    return ("supported" if count.supported else "not_supported"), None


def _control_summary(fam: Family, count: Count) -> dict[str, Any]:
    return {"n_pairs": fam.n_pairs, "n_specialised": int(fam.specialised.sum()), "count": count.n,
            "threshold": count.threshold, "specialised": count.supported, "feasible": fam.feasible,
            "max_abs_d_z": float(np.nanmax(np.abs(np.where(np.isfinite(fam.dz), fam.dz, np.nan)), initial=0.0))}


def analyse(hypothesis: str, recall: Activations, reasoning: Activations, config: Config,
            controls: Mapping[str, tuple[Activations, Activations]] | None = None,
            device: str | torch.device = "cpu", pair_features: Mapping[str, str] | None = None) -> HypothesisResult:
    """H1 (layers), H2 (heads) or H3 (neurons) by the paired method.

    controls: task -> (template a, template b) activations of that task's control pairs; each goes
    through the same analysis with a in the place of recall and b in the place of reasoning.
    pair_features (H1, H2): unit -> the feature whose per-pair differences it keeps for a gate (a
    baseline's: the two runs then compare the same feature's d_z); default each unit's strongest.
    """
    spec, cfg = SPECS[hypothesis], config.paired
    validate_sides(recall, reasoning, spec.arrays)
    n_layers = recall.n_layers
    values = spec.values(recall), spec.values(reasoning)
    diff = spec.oriented(*values)
    main = family(diff, cfg, device)
    count = _count(hypothesis, main, n_layers, config)
    checked = {}
    for task, (a, b) in (controls or {}).items():
        validate_sides(a, b, spec.arrays)
        fam = family(spec.diff(a, b), cfg, device)
        checked[task] = (fam, _count(hypothesis, fam, n_layers, config))
    verdict, reason = _judge(main, count, checked, cfg, control_mismatch(recall, reasoning, controls or {}))

    summary: dict[str, Any] = {
        **class_counts(main.cls),
        "count": count.n,
        "threshold": count.threshold,
        "n_pairs": main.n_pairs,
        "features": list(spec.features),
        "correction": cfg.correction,
        "alpha": cfg.alpha,
        "n_tests": main.n_tests,
        "bar": main.bar,
        "min_attainable_p": main.min_p,
        "n_splits": cfg.n_splits,
        "stability_threshold": cfg.stability,
        "mean_selected_per_split": main.selected,
        "controls": {task: _control_summary(fam, c) for task, (fam, c) in checked.items()},
        # Mean |token length difference| of the pairs' sides and of each control family's (control_mismatch).
        "length_gaps": {"pairs": _mean_gap(recall, reasoning),
                        **{task: _mean_gap(a, b) for task, (a, b) in (controls or {}).items()}},
    }
    headline = (f"{count.n} specialised {count.unit} (threshold {count.threshold}; recall {summary['n_recall']}, "
                f"reasoning {summary['n_reasoning']}, mixed {summary['n_mixed']}), stable in >= "
                f"{cfg.stability:.0%} of {cfg.n_splits} split halves")
    if checked:
        headline += "; controls " + ", ".join(f"{t} {c.n}" for t, (_, c) in checked.items())
    summary["headline"] = headline
    if reason:
        summary["reason"] = reason
    build = {"H1": _layer_components, "H2": _head_components, "H3": _neuron_layers}[hypothesis]
    components, extra, arrays = build(main, spec, diff, values, recall, cfg, config)
    summary.update(extra)
    if pair_features and hypothesis in ("H1", "H2"):
        components = _kept_features(components, spec, diff, pair_features)
    classes, effects = resampled(diff, config, device, _COMPONENTS_OF[hypothesis](n_layers, config))
    summary["noise_floor"] = noise_floor(np.array([c.cls for c in components.values()]), classes,
                                         "the split-half procedure rerun on bootstrap resamples of the prompt "
                                         "pairs (each split drawn over distinct pairs)")._asdict()
    gate = config.gate
    if hypothesis == "H3":  # a share of neurons has no per-pair form: its replicates are the resamples'
        components = {cid: replace(c, replicates=effects[:, j]) for j, (cid, c) in enumerate(components.items())}
        uncertainty = {"kind": "replicates", "statistic": "layer share", "seed": gate.seed,
                       "resamples": gate.resamples}
    else:
        uncertainty = {"kind": "pairs", "statistic": "d_z"}
    return HypothesisResult(hypothesis, verdict, METHOD, summary, components, arrays=arrays, uncertainty=uncertainty)


def resampled(diff: np.ndarray, config: Config, device: str | torch.device,
              components: Callable[[Family], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """([R, C] classes, [R, C] effects) of the components when the whole procedure reruns on
    ``gate.resamples`` bootstrap resamples of the pairs (``resample_rows``): what another sample of
    pairs like these would have said. ``components`` turns a family into its components' classes and
    effects (units for H1 and H2, layers for H3)."""
    rows = resample_rows(diff.shape[0], config.gate.resamples, config.gate.seed)
    out = [components(family(diff[r], config.paired, device, groups=r)) for r in rows]  # a few resamples
    return np.array([c for c, _ in out]), np.array([e for _, e in out], dtype=float)


def _strongest(fam: Family) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: the index of its strongest feature (largest |d_z|) and that feature's oriented d_z."""
    strength = np.where(np.isfinite(fam.dz), np.abs(fam.dz), np.inf)
    top = np.argmax(strength, axis=0)
    return top, fam.dz[top, np.arange(fam.dz.shape[1])]


def _units(fam: Family, spec: Spec, diff: np.ndarray, values: tuple[np.ndarray, np.ndarray], cfg: PairedConfig,
           ids: list[str]) -> dict[str, ComponentResult]:
    """One record per unit: each feature's oriented d_z with its paired-bootstrap interval, adjusted p
    and raw mean on each task (the report's recall-vs-reasoning profiles); the effect is the
    strongest feature's d_z, with that feature's interval."""
    ci = paired_bootstrap_dz(diff, n_boot=cfg.n_boot, seed=cfg.seed, level=cfg.level)
    with np.errstate(all="ignore"):  # a head skipped on every prompt has no mean (NaN -> null)
        means = [np.nanmean(v, axis=0) for v in values]  # [F, U] per task
    top, effect = _strongest(fam)
    cols = np.arange(fam.dz.shape[1])
    min_p = fam.p_adj.min(axis=0)
    low, high = ci.ci_low[top, cols], ci.ci_high[top, cols]
    strongest = diff[:, top, cols]  # [P, U]: the per-pair differences whose d_z is each unit's effect
    return {cid: ComponentResult(
        cid, str(fam.cls[u]), float(effect[u]), float(min_p[u]),
        {"features": feature_details(spec.features, fam.dz[:, u], fam.p_adj[:, u], means[0][:, u], means[1][:, u],
                                     (ci.ci_low[:, u], ci.ci_high[:, u])),
         "stability": float(fam.stability[u]),
         "effect_feature": spec.features[top[u]],  # the effect's: the strongest
         "pair_feature": spec.features[top[u]],  # pair_values': the strongest, or a baseline's choice
         "splits": {k: int(fam.counts[i, u]) for i, k in enumerate(CLASS_NAMES[1:].tolist())}},
        effect_ci=(float(low[u]), float(high[u])), pair_values=strongest[:, u])
        for u, cid in enumerate(ids)}


def _kept_features(components: Mapping[str, ComponentResult], spec: Spec, diff: np.ndarray,
                   pair_features: Mapping[str, str]) -> dict[str, ComponentResult]:
    """Each unit's per-pair differences of the feature ``pair_features`` names for it (when it names a
    feature of the unit's), instead of its strongest: a unit whose two strongest features are near
    equal swaps them between runs, and its effect would flip sign with no change in its features."""
    index = {f: i for i, f in enumerate(spec.features)}
    out = {}
    for u, (cid, c) in enumerate(components.items()):
        f = pair_features.get(cid)
        out[cid] = c if f not in index else replace(c, pair_values=diff[:, index[f], u],
                                                    details={**c.details, "pair_feature": f})
    return out


def _unit_classes(n_layers: int, config: Config) -> Callable[[Family], tuple[np.ndarray, np.ndarray]]:
    """H1 and H2 resampled: each unit's class and effect (its strongest feature's d_z)."""
    return lambda fam: (fam.cls, _strongest(fam)[1])


def _layer_shares(cls: np.ndarray, n_layers: int, layer_fraction: float) -> tuple[np.ndarray, ...]:
    """H3's layers from their neurons' classes [L * F]: (class, effect = (reasoning - recall) / F,
    share specialised, n recall, n reasoning, n mixed) per layer."""
    cls = cls.reshape(n_layers, -1)
    n_rec, n_rea = (cls == "recall").sum(axis=1), (cls == "reasoning").sum(axis=1)
    n_mix = (cls == "mixed").sum(axis=1)
    fraction = (cls != "none").mean(axis=1)
    layer_cls = np.where(fraction >= layer_fraction,
                         np.select([n_rea > n_rec, n_rec > n_rea], ["reasoning", "recall"], "mixed"), "none")
    return layer_cls, (n_rea - n_rec) / cls.shape[1], fraction, n_rec, n_rea, n_mix


def _layer_classes(n_layers: int, config: Config) -> Callable[[Family], tuple[np.ndarray, np.ndarray]]:
    """H3 resampled: each layer's class and effect from its neurons' classes."""
    return lambda fam: _layer_shares(fam.cls, n_layers, config.h3.layer_fraction)[:2]


_COMPONENTS_OF = {"H1": _unit_classes, "H2": _unit_classes, "H3": _layer_classes}


# Component builders: (family, spec, diff, (recall, reasoning) raw values, recall activations, paired
# config, config) ->
# (components, summary additions, arrays for later analyses).
def _layer_components(fam, spec, diff, values, recall, cfg, config):
    n_layers = recall.n_layers
    components = _units(fam, spec, diff, values, cfg, [layer_id(i) for i in range(n_layers)])
    extra = {"recall_layers": [int(i) for i in np.flatnonzero(fam.cls == "recall")],
             "reasoning_layers": [int(i) for i in np.flatnonzero(fam.cls == "reasoning")],
             "mixed_layers": [int(i) for i in np.flatnonzero(fam.cls == "mixed")],
             "n_layers": n_layers}
    return components, extra, {}


def _head_components(fam, spec, diff, values, recall, cfg, config):
    n_heads = recall.n_heads
    ids = [head_id(u // n_heads, u % n_heads) for u in range(fam.cls.size)]
    components = _units(fam, spec, diff, values, cfg, ids)
    _, effect = _strongest(fam)

    def top(kind: str) -> list[str]:
        units = np.flatnonzero(fam.cls == kind)
        order = np.lexsort((-np.abs(effect[units]), -fam.stability[units]))
        return [ids[u] for u in units[order][:3]]

    return components, {"top_recall": top("recall"), "top_reasoning": top("reasoning"),
                        "n_heads": int(fam.cls.size)}, {}


def _neuron_layers(fam, spec, diff, values, recall, cfg, config):
    """H3's components are layers, as in the original method: the share of stably specialised neurons."""
    n_layers = recall.n_layers
    n_neurons = recall.neurons.shape[2]
    cls = fam.cls.reshape(n_layers, n_neurons)
    layer_cls, effects, fraction, n_rec, n_rea, n_mix = _layer_shares(fam.cls, n_layers, config.h3.layer_fraction)
    dz = fam.dz[0].reshape(n_layers, n_neurons)
    p_adj = fam.p_adj[0].reshape(n_layers, n_neurons)
    components = {}
    for layer in range(n_layers):
        lid = layer_id(layer)
        details = {"fraction": float(fraction[layer]), "n_specific": int(n_rec[layer] + n_rea[layer] + n_mix[layer]),
                   "n_recall": int(n_rec[layer]), "n_reasoning": int(n_rea[layer]), "n_neurons": int(n_neurons)}
        components[lid] = ComponentResult(lid, str(layer_cls[layer]), float(effects[layer]), float(p_adj[layer].min()),
                                          details)
    flat = np.flatnonzero(fam.specialised)
    order = np.lexsort((-np.abs(fam.dz[0][flat]), -fam.stability[flat]))
    top = flat[order][:TOP_NEURONS]
    ci = paired_bootstrap_dz(diff[:, 0, top].astype(np.float64), n_boot=cfg.n_boot, seed=cfg.seed, level=cfg.level)
    top_neurons = [{"id": neuron_id(int(u) // n_neurons, int(u) % n_neurons), "type": str(fam.cls[u]),
                    "d_z": float(fam.dz[0, u]), "ci": [float(ci.ci_low[i]), float(ci.ci_high[i])],
                    "p_adj": float(fam.p_adj[0, u]), "stability": float(fam.stability[u])}
                   for i, u in enumerate(top)]
    extra = {"n_neurons": int(fam.cls.size), "n_task_specific": int(fam.specialised.sum()),
             "fraction_task_specific": float(fam.specialised.mean()),
             "layer_fraction": [float(f) for f in fraction], "layer_recall": [int(n) for n in n_rec],
             "layer_reasoning": [int(n) for n in n_rea], "top_neurons": top_neurons, "n_layers": n_layers}
    # H5 ablates these neurons: recall sets where the class is recall, reasoning sets where reasoning
    # (a mixed neuron belongs to neither); the sign of ``d`` carries the class.
    sign = np.select([cls == "reasoning", cls == "recall"], [1.0, -1.0], 0.0)
    return components, extra, {"specific": sign != 0, "d": sign * np.maximum(np.abs(dz), 1e-12)}
