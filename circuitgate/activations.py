"""The activation arrays every analysis reads: one row per prompt, read at the last prompt token."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitgate import CircuitgateError


@dataclass(frozen=True)
class Activations:
    """Last-token activations of one side (recall or reasoning) of a prompt set; row i is pair i.

    resid:   [P, L, D]    output of decoder layer i (residual stream)
    attn:    [P, L, H, S] the last query row of each head's attention probabilities, right-aligned:
                          column -1 is the last token's attention to itself; the first S - lengths[p]
                          columns of row p are 0 (positions that do not exist in that prompt)
    lengths: [P]          prompt length in tokens
    neurons: [P, L, F]    true MLP neuron activations act(gate) * up (input of down_proj)
    gate:    [P, L, F]    gate_proj output before the activation (what the original method read)
    """

    resid: np.ndarray
    attn: np.ndarray
    lengths: np.ndarray
    neurons: np.ndarray
    gate: np.ndarray

    @property
    def n_prompts(self) -> int:
        return int(self.resid.shape[0])

    @property
    def n_layers(self) -> int:
        return int(self.resid.shape[1])

    @property
    def n_heads(self) -> int:
        return int(self.attn.shape[2])

    def take(self, rows: np.ndarray) -> "Activations":
        """The activations of a subset of prompts (used by cross-validation folds)."""
        return Activations(self.resid[rows], self.attn[rows], self.lengths[rows], self.neurons[rows], self.gate[rows])


_NDIMS = {"resid": 3, "attn": 4, "lengths": 1, "neurons": 3, "gate": 3}


def validate_sides(recall: Activations, reasoning: Activations, arrays: tuple[str, ...]) -> None:
    """Raise CircuitgateError unless the two sides are non-empty, matched, well-shaped and finite."""
    for side, acts in (("recall", recall), ("reasoning", reasoning)):
        if not isinstance(acts, Activations):
            raise CircuitgateError(f"{side}: expected Activations, got {type(acts).__name__}")
        shapes = {name: np.shape(getattr(acts, name)) for name in _NDIMS}
        for name, ndim in _NDIMS.items():
            if len(shapes[name]) != ndim:
                raise CircuitgateError(f"{side}.{name}: expected {ndim} dimensions, got shape {shapes[name]}")
        p, n_layers = shapes["resid"][:2]
        if p == 0:
            raise CircuitgateError(f"{side}: no prompts")
        for name, shape in shapes.items():
            if shape[0] != p or (name != "lengths" and shape[1] != n_layers):
                raise CircuitgateError(f"{side}.{name}: shape {shape} does not fit {p} prompts x {n_layers} layers")
        lengths = np.asarray(acts.lengths)
        seq = acts.attn.shape[-1]
        if not np.all(np.isfinite(lengths)) or np.any(lengths != np.round(lengths)) \
                or np.any(lengths < 1) or np.any(lengths > seq):
            raise CircuitgateError(f"{side}.lengths must be whole numbers in 1..{seq}")
        for name in arrays:
            if not np.all(np.isfinite(getattr(acts, name))):
                raise CircuitgateError(f"{side}.{name} contains non-finite values")
    if recall.n_prompts != reasoning.n_prompts:
        raise CircuitgateError(f"recall and reasoning must be matched pairs: {recall.n_prompts} vs "
                               f"{reasoning.n_prompts} prompts")
    shape_r = (recall.resid.shape[1:], recall.attn.shape[1:3], recall.gate.shape[1:])
    shape_s = (reasoning.resid.shape[1:], reasoning.attn.shape[1:3], reasoning.gate.shape[1:])
    if shape_r != shape_s:
        raise CircuitgateError(f"recall and reasoning come from different model shapes: {shape_r} vs {shape_s}")
