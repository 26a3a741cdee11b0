"""What a model is expected to show: hypothesis verdicts and component classes, from a named source.

Sources (docs/design.md, Verdicts): the organism's ground truth (measured by exhaustive ablation when it is
built), a YAML file of a paper's reported classifications and headline figures, or nothing (then only
hypothesis-level tests run, against the config's expectations or ``supported``). A baseline run
(``--baseline``) replaces verdicts and classes; a paper's figures stay the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import yaml

from circuitgate import CircuitgateError
from circuitgate.config import Config, H5Config
from circuitgate.ids import attn_target, mlp_target, parse_target, target_kind
from circuitgate.models.adapters import Shape
from circuitgate.causal import verdict_from_classes
from circuitgate.results import combine_classes
from circuitgate.vocabulary import ANALYSIS_METHODS, CLASSES, HYPOTHESES, SKILLS, VERDICTS, canonical_method


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Figure:
    """A reported headline number (or list) and how close a replication must come to it.

    A number matches within max(``abs``, ``rel`` x |value|); anything else (a list of top heads, a
    layer index given with no tolerance) must be equal.
    """

    value: Any
    rel: float = 0.0
    abs: float = 0.0

    def __post_init__(self) -> None:
        if self.rel < 0 or self.abs < 0 or ((self.rel or self.abs) and not _is_number(self.value)):
            raise CircuitgateError(f"bad figure {self.value!r}: tolerances must be >= 0 and need a number")

    @property
    def tolerance(self) -> float:
        return max(self.abs, self.rel * abs(self.value)) if _is_number(self.value) else 0.0

    def matches(self, got: Any) -> bool:
        if _is_number(self.value):
            return _is_number(got) and abs(got - self.value) <= self.tolerance * (1 + 1e-12)
        return got == self.value

    def describe(self) -> str:
        return f"{self.value} +/- {self.tolerance:.3g}" if self.tolerance else f"{self.value}"


def summary_value(summary: Mapping[str, Any], name: str) -> Any:
    """A figure's value in a result summary: ``most_specialised_layer.layer`` walks nested keys."""
    value: Any = summary
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise KeyError(name)
        value = value[part]
    return value


@dataclass(frozen=True)
class Expectations:
    source: str
    verdicts: Mapping[str, str] = field(default_factory=dict)  # H1 -> supported | ...
    components: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # H1 -> {L04: recall}
    figures: Mapping[str, Mapping[str, Figure]] = field(default_factory=dict)  # H3 -> {n_task_specific: ...}
    figures_method: str | None = None  # the analysis method that produced the figures
    # hypothesis -> what the source does and does not assert (shown in the summary and the report)
    notes: Mapping[str, str] = field(default_factory=dict)
    # H5 targets the source adds: id -> (layer, neuron indices) (an organism's neuron blocks)
    neuron_sets: Mapping[str, tuple[int, tuple[int, ...]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for h, v in self.verdicts.items():
            if h not in HYPOTHESES or v not in VERDICTS:
                raise CircuitgateError(f"{self.source}: bad expectation {h}: {v}")
        for h, comps in self.components.items():
            bad = {c: k for c, k in comps.items() if k not in CLASSES}
            if h not in HYPOTHESES or bad:
                raise CircuitgateError(f"{self.source}: bad component expectations for {h}: {bad}")
        if self.figures and self.figures_method not in ANALYSIS_METHODS:
            raise CircuitgateError(f"{self.source}: figures need `method:` one of "
                                   f"{', '.join(sorted(ANALYSIS_METHODS))}, got {self.figures_method!r}")
        bad_h = [h for h in self.figures if h not in HYPOTHESES]
        if bad_h:
            raise CircuitgateError(f"{self.source}: figures for unknown hypotheses {bad_h}")


def truth_classes(info: Mapping[str, Any], config: Config) -> dict[str, str]:
    """Ground-truth classes by H5's rule, under the run's ablation (the truth measures zero, mean and
    resample). With the ground truth's own metric (accuracy) the run's thresholds apply; with another
    metric they are in other units (a logit-difference min_drop is no accuracy drop), so the rule the
    truth was stored with applies, and the component tests show where the other setting disagrees."""
    from circuitgate.organism.groundtruth import classes

    truth = info["ground_truth"]
    if config.h5.metric == truth["metric"]:
        return classes(truth, config.h5, ablation=config.h5.ablation)
    stored = truth["rule"]
    rule = H5Config(min_drop=stored["tau"], level=stored["level"], n_boot=stored["n_boot"], seed=stored["seed"])
    return classes(truth, rule, ablation=config.h5.ablation)


def neuron_sets(info: Mapping[str, Any]) -> dict[str, tuple[int, tuple[int, ...]]]:
    """The organism's neuron blocks as H5 targets: id -> (layer, neurons). Every block of a layer that
    holds a planted one, so the truth of each (planted or pruned) is tested."""
    plan = info["plan"]
    size = plan["block_size"]
    out = {}
    for tid in info["ground_truth"]["targets"]:
        target = parse_target(tid)
        if target.block is not None:
            out[tid] = (target.layer, tuple(range(target.block * size, (target.block + 1) * size)))
    return out


def from_ground_truth(info: Mapping[str, Any], shape: Shape, config: Config) -> Expectations:
    """An organism's ground truth, read as H1/H2/H3/H5 expectations.

    H5: every target the truth measured (attention, MLPs, heads, neuron blocks), classed by H5's rule
    from the stored per-item measurements under this run's ablation and settings (``config.h5``), so
    expectation and verdict are judged alike; the verdict is supported when both skills have selective
    targets. H1-H3: the units the plan built to differ in activation, with the class measured when the
    organism was built (the build refuses one whose measured class is not the plan's); units outside
    the plan carry no activation claim and are not asserted. With planted units at or above the
    hypothesis's (size-scaled) count threshold it is expected supported. H4 needs a second model: see
    ``h4_from_ground_truths``.
    """
    targets = truth_classes(info, config)
    activation = info.get("activation_truth") or {}
    components: dict[str, dict[str, str]] = {h: {uid: entry["class"] for uid, entry in units.items()}
                                             for h, units in activation.items()}
    n = shape.n_layers
    needed = {"H1": config.h1.min_layers.for_size(n), "H2": config.h2.min_heads.for_size(n * shape.n_heads),
              "H3": config.h3.min_layers.for_size(n)}
    verdicts = {h: "supported" for h, units in components.items()
                if sum(c in SKILLS for c in units.values()) >= needed[h]}
    verdicts["H5"] = verdict_from_classes(targets, config.h5)
    notes = {h: (f"only the {len(units)} units planted to differ in activation are asserted "
                 f"({', '.join(units)}); the other units carry no activation claim")
             for h, units in components.items()}
    return Expectations(
        source=f"{info.get('name', 'organism')} ground truth (exhaustive ablation; planted activation units)",
        verdicts=verdicts,
        components={**components, "H5": targets},
        notes=notes,
        neuron_sets=neuron_sets(info),
    )


def _causal_profile(info: Mapping[str, Any], shape: Shape, config: Config) -> tuple[np.ndarray, list[str], str]:
    """(per-layer H5 interaction, per-layer causal class, H5 verdict) of one organism's ground truth."""
    from circuitgate.causal import layer_interactions
    from circuitgate.organism.groundtruth import pair_drops

    classes = truth_classes(info, config)
    ids = [t for t in classes if target_kind(t) in ("attn", "mlp")]
    _, recall, reasoning = pair_drops(info["ground_truth"], ids, config.h5.ablation)
    interaction = dict(zip(ids, (recall - reasoning).mean(axis=0)))
    layers = [combine_classes([classes[attn_target(i)], classes[mlp_target(i)]]) for i in range(shape.n_layers)]
    return layer_interactions(interaction, shape.n_layers), layers, verdict_from_classes(classes, config.h5)


def h4_from_ground_truths(a: tuple[Mapping[str, Any], Shape], b: tuple[Mapping[str, Any], Shape],
                          config: Config) -> tuple[str, dict[str, str]]:
    """H4's expected verdict and depth-bin classes from two organisms' ground truths.

    The ground truth is causal, so it speaks to H4's H5 profile (per-layer task x target interaction)
    and to the depth bins' causal classes. Supported when both organisms specialise (H5 supported by
    their truth: there is a specialisation to be consistent) and the agreement test on their causal
    profiles passes; a model without selective components agrees with nothing.
    """
    from circuitgate.causal import agreement_verdict, bin_classes

    (prof_a, layers_a, h5_a), (prof_b, layers_b, h5_b) = (_causal_profile(info, shape, config) for info, shape in (a, b))
    if h5_a != "supported" or h5_b != "supported":
        verdict = "not_supported"
    else:
        verdict, _ = agreement_verdict({"H5": prof_a}, {"H5": prof_b}, config.h4)
    return verdict, bin_classes(layers_a, layers_b)


def _figure(source: str, h: str, name: str, raw: Any) -> Figure:
    """``18`` (exact) or ``{value: 583, rel: 0.05}`` / ``{value: 0.3074, abs: 0.02}``."""
    if not isinstance(raw, Mapping):
        return Figure(raw)
    unknown = set(raw) - {"value", "rel", "abs"}
    if "value" not in raw or unknown:
        raise CircuitgateError(f"{source}: figure {h}.{name} needs `value` (and optional rel, abs), got {dict(raw)}")
    try:
        return Figure(raw["value"], float(raw.get("rel", 0.0)), float(raw.get("abs", 0.0)))
    except (TypeError, ValueError, CircuitgateError) as e:
        raise CircuitgateError(f"{source}: figure {h}.{name}: {e}") from None


def from_file(name: str | Path) -> Expectations:
    """A YAML expectations file: ``verdicts: {H1: supported}``, ``components: {H1: {L04: recall}}``,
    ``figures: {method: original, H3: {n_task_specific: {value: 163058, rel: 0.05}}}``."""
    path = Path(name)
    if not path.is_file():
        path = Path(str(resources.files("circuitgate.models").joinpath("expectations", str(name))))
    if not path.is_file():
        raise CircuitgateError(f"expectations file not found: {name}")
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise CircuitgateError(f"{path}: not valid YAML ({e})") from None
    source = doc.get("source", str(path))
    figures = dict(doc.get("figures") or {})
    method = figures.pop("method", None)
    method = canonical_method(method) if isinstance(method, str) else method
    return Expectations(
        source=source,
        verdicts=dict(doc.get("verdicts") or {}),
        components={h: dict(c) for h, c in (doc.get("components") or {}).items()},
        figures={h: {n: _figure(source, h, n, v) for n, v in (f or {}).items()} for h, f in figures.items()},
        figures_method=method,
    )


def expectations_for(spec: Any, config: Config, locate: Callable[[], tuple[Path, Shape]]) -> Expectations:
    """A model's expectations source, as its registry entry (``spec.expectations``) names it: an
    organism's measured truth (``locate`` gives its directory and shape), a YAML file, or none."""
    if spec.expectations == "organism":
        from circuitgate.truth import read_info

        directory, shape = locate()
        return from_ground_truth(read_info(directory), shape, config)
    return from_file(spec.expectations) if spec.expectations else Expectations(source="none")
