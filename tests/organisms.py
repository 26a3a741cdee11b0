"""The default organism recipe, its world and shape, and its pair prompts, shared by the organism's unit
tests (tests/unit/test_organism.py) and its real builds (tests/e2e/test_family.py)."""

from __future__ import annotations

from circuitgate.organism import Recipe, organism_prompt_set
from circuitgate.organism.world import world_for

RECIPE = Recipe()
WORLD = world_for(RECIPE)
SHAPE = dict(n_layers=4, n_heads=4, block_size=128, ffn=256)


def pair_items(kind: str) -> list[tuple[str, str]]:
    """(prompt, answer) of every pair's ``kind`` side (recall or reasoning)."""
    return [(p[kind]["prompt"], p[kind]["answer"]) for p in organism_prompt_set(WORLD)["pairs"]]
