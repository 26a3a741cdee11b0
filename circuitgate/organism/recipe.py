"""The organism's recipe: every knob that changes the built weights, and nothing else.

The cache directory is keyed by ``Recipe.hash()``, so any change here (or a bump of ``CODE_VERSION``
when the training code changes meaning) builds a fresh organism instead of trusting a stale one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from circuitgate import CircuitgateError

# Bump when world generation, data order or training code changes what a recipe builds.
CODE_VERSION = 2  # 2: long recall templates (r4-r7) in training and the main pairs; controls

ARCHS = ("qwen2", "llama")


@dataclass(frozen=True)
class Recipe:
    arch: str = "qwen2"
    seed: int = 0
    # world
    n_countries: int = 64
    n_continents: int = 6
    n_symbols: int = 40
    # model (probe: ~0.29M parameters learn both skills in a few hundred steps)
    n_layers: int = 4
    hidden: int = 64
    n_heads: int = 4
    ffn: int = 256
    initializer_range: float = 0.02  # the HF default
    # training
    steps: int = 400
    batch_recall: int = 32
    batch_reasoning: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    # accuracy floors on the organism prompt set: a build below them fails loudly
    min_recall: float = 0.9
    min_reasoning: float = 0.85

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise CircuitgateError(f"unknown organism arch {self.arch!r}; expected one of {', '.join(ARCHS)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        canonical = json.dumps({"code_version": CODE_VERSION, **self.to_dict()}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()
