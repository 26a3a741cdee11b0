"""The built-in model organisms: tiny Qwen2 and Llama models trained on an invented world, with
circuits planted where their plan says (docs/organism.md).

They have a recall skill (capitals and continents of invented countries, stored in the weights) and an
in-context reasoning skill (reading a chain of facts given in the prompt among distractors, over
held-out symbols), and a ground truth for which components serve which skill, measured by exhaustive
ablation when they are built.

Names resolve lazily, so ``circuitgate`` commands that do not build an organism do not import torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Recipe": "recipe",
    "VARIANTS": "recipe",
    "recipe_of": "recipe",
    "build": "builder",
    "ensure_built": "builder",
    "is_organism_dir": "circuitgate.truth",
    "read_info": "circuitgate.truth",
    "load_tokenizer": "tokenizer",
    "make_world": "world",
    "organism_prompt_set": "world",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    return getattr(import_module(module if "." in module else f"{__name__}.{module}"), name)
