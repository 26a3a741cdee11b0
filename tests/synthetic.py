"""Synthetic activations with a known truth, for the validity tests of the analysis methods.

A pair shares a random base (the fact: the same country in both prompts), and each prompt adds its own
noise, so pairs are correlated the way real matched prompts are. Under the null both sides come from one
distribution and the task labels are shuffled within each pair. Effects are planted on the reasoning side
with a stated paired effect size d_z. A template is a prompt length plus an additive shift of every
activation, so a template confound can be built (one template per task, as in the seed prompts).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitgate.activations import Activations

NOISE = 1.0  # per-prompt noise sd of residual, gate and neuron activations
ATTN_NOISE = 0.5  # per-prompt noise sd of the attention logits


@dataclass(frozen=True)
class Shape:
    n_pairs: int = 48
    n_layers: int = 4
    n_heads: int = 4
    d_model: int = 16
    n_neurons: int = 32
    seq: int = 16


@dataclass(frozen=True)
class Template:
    length: int = 12
    shift: float = 0.0  # added to every residual, gate and neuron value


@dataclass(frozen=True)
class Plant:
    """Effects on the reasoning side. ``d_z`` is the paired effect size each planted layer's residual
    mean and each planted neuron gets; a planted head's last-position logit rises by ``logit``."""

    layers: tuple[int, ...] = ()  # H1: residual mean shifted (feature "mean")
    heads: tuple[tuple[int, int], ...] = ()  # H2: (layer, head): attention to the last position raised
    neurons: tuple[tuple[int, int], ...] = ()  # H3: (layer, count): the layer's first `count` neurons shifted
    d_z: float = 1.0
    logit: float = 1.0


def _mean_shift(d_z: float, d_model: int) -> float:
    """The residual shift giving the per-layer mean feature the paired effect size d_z: the mean over
    d_model dims of the two sides' noise differs with sd NOISE * sqrt(2 / d_model)."""
    return d_z * NOISE * np.sqrt(2.0 / d_model)


def _side(rng: np.random.Generator, base: dict[str, np.ndarray], shape: Shape, template: Template,
          plant: Plant | None) -> Activations:
    p, S = shape.n_pairs, shape.seq
    resid = base["resid"] + rng.normal(0, NOISE, base["resid"].shape) + template.shift
    gate = base["gate"] + rng.normal(0, NOISE, base["gate"].shape) + template.shift
    neurons = base["neurons"] + rng.normal(0, NOISE, base["neurons"].shape) + template.shift
    logits = base["logits"] + rng.normal(0, ATTN_NOISE, base["logits"].shape)
    if plant is not None:
        for layer in plant.layers:
            resid[:, layer] += _mean_shift(plant.d_z, shape.d_model)
        for layer, head in plant.heads:
            logits[:, layer, head, -1] += plant.logit
        for layer, count in plant.neurons:
            neurons[:, layer, :count] += plant.d_z * NOISE * np.sqrt(2.0)
    lengths = np.full(p, template.length)
    real = np.arange(S)[None, :] >= (S - lengths)[:, None]  # right-aligned prompts
    logits = np.where(real[:, None, None, :], logits, -np.inf)
    attn = np.exp(logits - logits.max(axis=-1, keepdims=True))
    attn = attn / attn.sum(axis=-1, keepdims=True)
    return Activations(resid=resid, attn=attn, lengths=lengths, neurons=neurons, gate=gate)


def _base(rng: np.random.Generator, shape: Shape) -> dict[str, np.ndarray]:
    p, L = shape.n_pairs, shape.n_layers
    return {"resid": rng.normal(0, 1, (p, L, shape.d_model)), "gate": rng.normal(0, 1, (p, L, shape.n_neurons)),
            "neurons": rng.normal(0, 1, (p, L, shape.n_neurons)),
            "logits": rng.normal(0, 1, (p, L, shape.n_heads, shape.seq))}


def _swap(recall: Activations, reasoning: Activations, flip: np.ndarray) -> tuple[Activations, Activations]:
    def pick(a, b):
        f = flip.reshape(-1, *([1] * (a.ndim - 1)))
        return np.where(f, b, a), np.where(f, a, b)

    parts = [pick(getattr(recall, k), getattr(reasoning, k)) for k in ("resid", "attn", "lengths", "neurons", "gate")]
    return Activations(*(x for x, _ in parts)), Activations(*(y for _, y in parts))


def pairs(rng: np.random.Generator, shape: Shape = Shape(), *, plant: Plant | None = None,
          recall_template: Template = Template(), reasoning_template: Template = Template(),
          shuffle: bool = True) -> tuple[Activations, Activations]:
    """(recall, reasoning) activations of matched pairs. Without a plant and with equal templates this
    is the null; ``shuffle`` then swaps the two labels of a random half of the pairs (as the issue's
    null states it: labels shuffled within pairs)."""
    base = _base(rng, shape)
    recall = _side(rng, base, shape, recall_template, None)
    reasoning = _side(rng, base, shape, reasoning_template, plant)
    if shuffle and plant is None:
        recall, reasoning = _swap(recall, reasoning, rng.random(shape.n_pairs) < 0.5)
    return recall, reasoning


def controls(rng: np.random.Generator, shape: Shape = Shape(), *, a: Template = Template(),
             b: Template = Template()) -> dict[str, tuple[Activations, Activations]]:
    """Null controls for both tasks: the same task under templates a and b (no task effect)."""
    return {task: pairs(rng, shape, recall_template=a, reasoning_template=b, shuffle=False)
            for task in ("recall", "reasoning")}
