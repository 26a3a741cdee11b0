"""The built-in model organism: a tiny Qwen2 (or Llama) trained on an invented world.

It has a recall skill (capitals and continents of invented countries, stored in the weights) and an
in-context reasoning skill (composing two facts given in the prompt, over held-out symbols), and a
ground truth for which components serve which skill, measured by exhaustive zero-ablation.
"""

from circuitgate.organism.build import build, ensure_built, is_organism_dir, read_info
from circuitgate.organism.recipe import Recipe
from circuitgate.organism.tokenizer import load_tokenizer
from circuitgate.organism.world import make_world, organism_prompt_set

__all__ = [
    "Recipe",
    "build",
    "ensure_built",
    "is_organism_dir",
    "load_tokenizer",
    "make_world",
    "organism_prompt_set",
    "read_info",
]
