"""Verdicts: results judged against expectations, and the verdicts.json document (DESIGN.md).

A hypothesis passes when its verdict equals the expected one; ``inconclusive`` passes only when it is
what was expected. A component passes when its class equals the expected class.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from circuitgate.results import HypothesisResult

# 2: components carry effect_ci; per-feature numbers sit under `features` (issue 5).
SCHEMA = 2


@dataclass(frozen=True)
class Judgement:
    passed: bool
    message: str


def judge_hypothesis(result: HypothesisResult, expected: str) -> Judgement:
    s = result.summary
    # Why an inconclusive verdict is one (its reason), else the headline numbers.
    numbers = s.get("reason") or s.get("headline") or ", ".join(
        f"{k}={s[k]}" for k in ("n_specialised", "threshold") if k in s)
    if result.verdict == expected:
        return Judgement(True, f"{result.hypothesis} {result.verdict} as expected ({numbers})")
    why = " (inconclusive never passes unless expected)" if result.verdict == "inconclusive" else ""
    return Judgement(False, f"{result.hypothesis} is {result.verdict}, expected {expected} ({numbers}){why}")


def judge_component(result: HypothesisResult, component: str, expected: str) -> Judgement:
    c = result.components[component]
    measured = f"effect {c.effect:+.3g}, p_adj {c.p_adj:.3g}"
    if c.cls == expected:
        return Judgement(True, f"{result.hypothesis} {component} is {c.cls} as expected ({measured})")
    return Judgement(False, f"{result.hypothesis} {component} is {c.cls}, expected {expected} ({measured})")


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays converted, non-finite floats as null."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())  # tolist() also unwraps a 0-d array, which cannot be iterated
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    return value


def hypothesis_entry(
    result: HypothesisResult, expected: str, component_expectations: Mapping[str, str]
) -> dict[str, Any]:
    components = {}
    for cid, c in result.components.items():
        entry = c.to_dict()
        if cid in component_expectations:
            entry["expected"] = component_expectations[cid]
            entry["passed"] = c.cls == component_expectations[cid]
        components[cid] = entry
    return jsonable({
        "verdict": result.verdict,
        "expected": expected,
        "passed": result.verdict == expected,
        "method": result.method,
        "summary": result.summary,
        "components": components,
    })


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write JSON through a temporary file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp makes the file owner-only; a report is shared like any file the user writes.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(document, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_verdicts(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
