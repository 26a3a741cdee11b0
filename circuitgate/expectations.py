"""What a model is expected to show: hypothesis verdicts and component classes, from a named source.

Sources (DESIGN.md, Verdicts): the organism's ground truth (measured by exhaustive ablation when it is
built), a YAML file of a paper's reported classifications, or nothing (then only hypothesis-level
tests run, against the config's expectations or ``supported``).
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


@dataclass(frozen=True)
class Expectations:
    source: str
    verdicts: Mapping[str, str] = field(default_factory=dict)  # H1 -> supported | ...
    components: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # H1 -> {L04: recall}

    def __post_init__(self) -> None:
        for h, v in self.verdicts.items():
            if h not in HYPOTHESES or v not in VERDICTS:
                raise CircuitgateError(f"{self.source}: bad expectation {h}: {v}")
        for h, comps in self.components.items():
            bad = {c: k for c, k in comps.items() if k not in CLASSES}
            if h not in HYPOTHESES or bad:
                raise CircuitgateError(f"{self.source}: bad component expectations for {h}: {bad}")

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


def from_file(name: str | Path) -> Expectations:
    """A YAML expectations file: ``verdicts: {H1: supported}``, ``components: {H1: {L04: recall}}``."""
    path = Path(name)
    if not path.is_file():
        path = Path(str(resources.files("circuitgate.models").joinpath("expectations", str(name))))
    if not path.is_file():
        raise CircuitgateError(f"expectations file not found: {name}")
    doc = yaml.safe_load(path.read_text()) or {}
    return Expectations(
        source=doc.get("source", str(path)),
        verdicts=dict(doc.get("verdicts") or {}),
        components={h: dict(c) for h, c in (doc.get("components") or {}).items()},
    )
