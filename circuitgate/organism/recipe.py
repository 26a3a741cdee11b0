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
CODE_VERSION = 3  # 3: planted circuits (plan, attention supervision, pruning), distractor reasoning

ARCHS = ("qwen2", "llama")
PLAN_NAMES = ("planted", "null")


@dataclass(frozen=True)
class Recipe:
    arch: str = "qwen2"
    plan: str = "planted"
    seed: int = 0
    # world
    n_countries: int = 64
    n_continents: int = 6
    n_symbols: int = 40
    # model
    n_layers: int = 4
    hidden: int = 64
    n_heads: int = 4
    ffn: int = 256
    block_size: int = 128  # neurons per block: a planted block is a unit of the plan
    # 0.1, not the HF default 0.02: from 0.02 the heads' value/output maps start so small that copying a
    # token took hundreds of steps to begin (measured: reasoning at chance after 300 steps with its
    # attention already taught; at 0.1 it was solved by step 150)
    initializer_range: float = 0.1
    # training
    steps: int = 450
    # clean rows per step of each task; invariance and necessity rows take half as many each. Recall
    # gets more: 128 stored facts under five templates are learned more slowly than the in-context lookup.
    rows_recall: int = 32
    rows_reasoning: int = 24
    lr: float = 5e-3
    weight_decay: float = 0.01
    warmup_steps: int = 30
    # None: at 0.05 the answers' margins stayed so thin that ablating a unit of the other skill flipped
    # 8-12% of the items, on the wrong side of H5's 0.1 threshold (measured on both architectures)
    label_smoothing: float = 0.0
    w_attention: float = 1.0
    w_necessity: float = 1.0
    w_activation: float = 1.0
    w_readout: float = 3.0  # the read-out loss: the weakest plan term (a last block left unneeded at 1.0)
    shape_from: int = 100  # step where the necessity and activation losses start ...
    shape_ramp: int = 100  # ... and how many steps they take to reach full weight
    # accuracy floors on the organism prompt set: a build below them fails loudly
    min_recall: float = 0.85
    min_reasoning: float = 0.85

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise CircuitgateError(f"unknown organism arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        if self.plan not in PLAN_NAMES:
            raise CircuitgateError(f"unknown organism plan {self.plan!r}; expected one of {', '.join(PLAN_NAMES)}")
        if self.ffn % self.block_size:
            raise CircuitgateError(f"ffn {self.ffn} is not a whole number of {self.block_size}-neuron blocks")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        # The plan is code, not a recipe field: its full description keys the cache too.
        from circuitgate.organism.plan import PLANS

        canonical = json.dumps({"code_version": CODE_VERSION, "plan_spec": repr(PLANS[self.plan]), **self.to_dict()},
                               sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


# The family (docs/organism.md): the planted organism, its Llama twin planted at the same depths, and
# the null organism (the same data, size and training length; every live unit shared by both skills).
VARIANTS: dict[str, Recipe] = {
    "organism": Recipe(arch="qwen2", plan="planted"),
    "organism-llama": Recipe(arch="llama", plan="planted"),
    "organism-null": Recipe(arch="qwen2", plan="null"),
}


def recipe_of(name: str) -> Recipe:
    try:
        return VARIANTS[name]
    except KeyError:
        raise CircuitgateError(f"unknown organism {name!r}; the family is {', '.join(VARIANTS)}") from None
