"""Prompt sets: matched recall/reasoning pairs as YAML (schema in DESIGN.md), loaded and validated."""

from circuitgate.prompts.schema import Pair, Prompt, PromptSet, builtin_names, load_prompt_set

__all__ = ["Pair", "Prompt", "PromptSet", "builtin_names", "load_prompt_set"]
