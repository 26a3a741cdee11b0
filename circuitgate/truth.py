"""The ``organism.json`` a built organism's directory carries: its plan, its measured ground truth and
its accuracy (docs/organism.md). Written last by the organism builder, so a directory holding a
complete one is a finished build; read by the model registry (such a directory is an organism, and
its truth is the expectations source) and by the analyses that score against it."""

from __future__ import annotations

import json
from pathlib import Path

from circuitgate import CircuitgateError

SCHEMA = 3  # 3: a plan, ground truth under zero, mean and resample ablation, activation truth
INFO_FILE = "organism.json"
_REQUIRED_KEYS = ("schema", "name", "arch", "recipe", "recipe_hash", "plan", "accuracy", "ground_truth",
                  "activation_truth")


def is_organism_dir(path: str | Path) -> bool:
    """True only for a dir holding a complete organism.json (written last, so the build finished)."""
    try:
        info = json.loads((Path(path) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("schema") == SCHEMA and all(k in info for k in _REQUIRED_KEYS)


def read_info(path: str | Path) -> dict:
    if not is_organism_dir(path):
        raise CircuitgateError(f"{path} is not a built organism (no complete {INFO_FILE}); run `circuitgate organism build`")
    return json.loads((Path(path) / INFO_FILE).read_text())
