"""The attribution screen's default against exhaustive exact ablation on the planted organism (slow:
the exact sweep ablates 1,054 targets per task, about 1-2 minutes on 2 CPU cores, after the organism's
build when the cache has none).

benchmarks/validate_screen.py computes every number; this keeps the two claims the screen is used
for: the exact top-20 single neurons (by logit_diff drop) are within the screen's top 40, and every
component the ground truth says hurts a skill is within the screen's top-2k for that skill.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path

import pytest

from circuitgate.attribution import attribution_screen

REPO = Path(__file__).resolve().parents[2]


def _validator():
    spec = importlib.util.spec_from_file_location("validate_screen", REPO / "benchmarks" / "validate_screen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_default_screen_finds_the_organisms_neurons_and_planted_components(organism_family):
    defaults = inspect.signature(attribution_screen).parameters
    steps, groups = defaults["steps"].default, defaults["groups"].default
    result = _validator().validate_model(str(organism_family["organism"]), "organism",
                                         variants={"ig": (steps, groups)})
    for task, t in result["tasks"].items():
        screen = t["screens"]["ig"]
        assert (screen["steps"], screen["groups"]) == (steps, groups)
        neurons = screen["agreement"]["neurons"]["logit_diff"]
        assert neurons["k"] == 20 and neurons["recall_2k"] >= 0.9, (task, neurons)
        planted = screen["planted"]
        assert planted["k"] > 0 and planted["within_2k"], (task, planted)
