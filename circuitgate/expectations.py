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
from circuitgate.config import HYPOTHESES, VERDICTS, Config
from circuitgate.models.adapters import Shape
from circuitgate.results import CLASSES, head_id, layer_id

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


def _combine(classes: list[str]) -> str:
    """One class for a unit made of parts (a layer = its attention + its MLP)."""
    kinds = {c for c in classes if c != "none"}
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def from_ground_truth(info: Mapping[str, Any], shape: Shape, config: Config) -> Expectations:
    """The organism's ablation ground truth, read as H1/H2 expectations.

    A layer's class combines its attention and MLP targets; a head's is its own target. A hypothesis
    is expected ``supported`` when at least the config's (size-scaled) count of units is specific to
    one skill: units needed by both skills ("mixed") are not evidence of separable circuits.
    """
    targets = info["ground_truth"]["targets"]
    layers = {
        layer_id(i): _combine([targets[f"attn-L{i}"]["class"], targets[f"mlp-L{i}"]["class"]])
        for i in range(shape.n_layers)
    }
    heads = {
        head_id(i, h): targets[f"head-L{i}H{h}"]["class"]
        for i in range(shape.n_layers)
        for h in range(shape.n_heads)
    }

    def verdict(classes: Mapping[str, str], needed: int) -> str:
        return "supported" if sum(c in SPECIFIC for c in classes.values()) >= needed else "not_supported"

    return Expectations(
        source="organism ground truth (exhaustive zero-ablation)",
        verdicts={
            "H1": verdict(layers, config.h1.min_layers.for_size(shape.n_layers)),
            "H2": verdict(heads, config.h2.min_heads.for_size(shape.n_layers * shape.n_heads)),
        },
        components={"H1": layers, "H2": heads},
    )


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
