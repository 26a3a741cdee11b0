"""The activation arrays every analysis reads: one row per prompt, read at the last prompt token."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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
