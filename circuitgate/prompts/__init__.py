"""Prompt sets: matched recall/reasoning pairs and null controls as YAML (schema in docs/design.md), loaded and validated."""

from circuitgate.prompts.schema import (Control, Pair, Prompt, PromptSet, builtin_names, default_prompts, load_prompt_set,
                                       renamed_prompts)

__all__ = ["Control", "Pair", "Prompt", "PromptSet", "builtin_names", "default_prompts", "load_prompt_set", "renamed_prompts"]
