"""What a model is expected to show: hypothesis verdicts and component classes, from a named source.

Sources (DESIGN.md, Verdicts): the organism's ground truth (measured by exhaustive ablation when it is
built), a YAML file of a paper's reported classifications and headline figures, or nothing (then only
hypothesis-level tests run, against the config's expectations or ``supported``). A baseline run
(``--baseline``) replaces verdicts and classes; a paper's figures stay the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from circuitgate import CircuitgateError
from circuitgate.config import HYPOTHESES, VERDICTS, Config, H5Config
from circuitgate.models.adapters import Shape
from circuitgate.h5 import target_ids, verdict_from_classes
from circuitgate.results import CLASSES, combine_classes, head_id, layer_id

SPECIFIC = ("recall", "reasoning")
FIGURE_METHODS = ("seed", "paired")


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

    def __post_init__(self) -> None:
        for h, v in self.verdicts.items():
            if h not in HYPOTHESES or v not in VERDICTS:
                raise CircuitgateError(f"{self.source}: bad expectation {h}: {v}")
        for h, comps in self.components.items():
            bad = {c: k for c, k in comps.items() if k not in CLASSES}
            if h not in HYPOTHESES or bad:
                raise CircuitgateError(f"{self.source}: bad component expectations for {h}: {bad}")
        if self.figures and self.figures_method not in FIGURE_METHODS:
            raise CircuitgateError(f"{self.source}: figures need `method:` one of {', '.join(FIGURE_METHODS)}, "
                                   f"got {self.figures_method!r}")
        bad_h = [h for h in self.figures if h not in HYPOTHESES]
        if bad_h:
            raise CircuitgateError(f"{self.source}: figures for unknown hypotheses {bad_h}")

    def verdict(self, hypothesis: str, config: Config) -> str:
        """The config wins over the source; with neither, a hypothesis is expected to be supported."""
        return config.expected.get(hypothesis) or self.verdicts.get(hypothesis, "supported")


def _truth_classes(info: Mapping[str, Any], config: Config) -> dict[str, str]:
    """Ground-truth classes by H5's rule. With the ground truth's own ablation and metric (zero,
    accuracy) the run's thresholds apply; with another ablation or metric they are in other units
    (a logit-difference min_drop is no accuracy drop), so the rule the truth was stored with applies,
    and the component tests show where the other setting disagrees with it."""
    from circuitgate.organism.groundtruth import classes

    truth = info["ground_truth"]
    if (config.h5.ablation, config.h5.metric) == (truth["ablation"], truth["metric"]):
        return classes(truth, config.h5)
    stored = truth["rule"]
    rule = H5Config(min_drop=stored["tau"], level=stored["level"], n_boot=stored["n_boot"], seed=stored["seed"])
    return classes(truth, rule)


def from_ground_truth(info: Mapping[str, Any], shape: Shape, config: Config) -> Expectations:
    """The organism's ablation ground truth, read as H1/H2/H3/H5 expectations.

    Target classes come from the stored per-item measurements by H5's rule with this run's settings
    (``config.h5``), so expectation and verdict are judged alike. A layer's class (H1) combines its
    attention and MLP targets; a head's (H2) is its own target; H3's layers are the MLP targets. H1-H3
    are expected ``supported`` when at least the config's (size-scaled) count of units is specific to
    one skill: units needed by both skills ("mixed") are not evidence of separable circuits. H5 is
    expected supported when both skills have selective targets. H4 needs a second model: see
    ``h4_from_ground_truths``.
    """
    targets = _truth_classes(info, config)
    n = shape.n_layers
    layers = {layer_id(i): combine_classes([targets[f"attn-L{i}"], targets[f"mlp-L{i}"]]) for i in range(n)}
    heads = {head_id(i, h): targets[f"head-L{i}H{h}"] for i in range(n) for h in range(shape.n_heads)}
    mlps = {layer_id(i): targets[f"mlp-L{i}"] for i in range(n)}
    h5 = {t: targets[t] for t in target_ids(shape)}

    def verdict(classes: Mapping[str, str], needed: int) -> str:
        return "supported" if sum(c in SPECIFIC for c in classes.values()) >= needed else "not_supported"

    return Expectations(
        source="organism ground truth (exhaustive zero-ablation)",
        verdicts={
            "H1": verdict(layers, config.h1.min_layers.for_size(n)),
            "H2": verdict(heads, config.h2.min_heads.for_size(n * shape.n_heads)),
            "H3": verdict(mlps, config.h3.min_layers.for_size(n)),
            "H5": verdict_from_classes(h5, config.h5),
        },
        components={"H1": layers, "H2": heads, "H3": mlps, "H5": h5},
    )


def h4_from_ground_truths(a: tuple[Mapping[str, Any], Shape], b: tuple[Mapping[str, Any], Shape],
                          config: Config) -> tuple[str, dict[str, str]]:
    """H4's expected verdict and depth-bin classes from two organisms' ground truths.

    The ground truth is causal, so it speaks to H4's H5 profile (per-layer task x target interaction)
    and to the depth bins' causal classes; the verdict is H4's agreement test on those profiles alone.
    """
    from circuitgate.h4 import agreement_verdict, bin_classes, layer_interactions
    from circuitgate.organism.groundtruth import pair_drops

    profiles, classes = [], []
    for info, shape in (a, b):
        ids = target_ids(shape)
        _, recall, reasoning = pair_drops(info["ground_truth"], ids)
        interaction = dict(zip(ids, (recall - reasoning).mean(axis=0)))
        profiles.append({"H5": layer_interactions(interaction, shape.n_layers)})
        # A layer's causal class (attention and MLP combined) is what H1's expectations already hold.
        classes.append(list(from_ground_truth(info, shape, config).components["H1"].values()))
    verdict, _ = agreement_verdict(profiles[0], profiles[1], config.h4)
    return verdict, bin_classes(classes[0], classes[1])


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
    ``figures: {method: seed, H3: {n_task_specific: {value: 163058, rel: 0.05}}}``."""
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
    return Expectations(
        source=source,
        verdicts=dict(doc.get("verdicts") or {}),
        components={h: dict(c) for h, c in (doc.get("components") or {}).items()},
        figures={h: {n: _figure(source, h, n, v) for n, v in (f or {}).items()} for h, f in figures.items()},
        figures_method=method,
    )
