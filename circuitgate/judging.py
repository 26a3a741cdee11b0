"""Judging: results judged against expectations, and the verdicts.json document (docs/design.md).

A hypothesis passes when its verdict equals the expected one; ``inconclusive`` passes only when it is
what was expected. A component passes when its class equals the expected class. ``passes`` is that
rule, the one the judge, verdicts.json's ``passed`` and the terminal summary apply. Against a baseline
(``--baseline``) a test is judged on change instead, by ``circuitgate.gate`` (docs/design.md,
"Gating"); an intended change is accepted by re-baselining, not by the gate guessing its direction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from circuitgate.cache import atomic_write
from circuitgate.results import HypothesisResult
from circuitgate.vocabulary import SKILLS

# 2: components carry effect_ci; per-feature numbers sit under `features`.
# 3: what a gate compares: components' pair_values or replicates and each hypothesis's uncertainty,
#    clean_correct per pair, noise floors, H5's h3_sets. A schema-2 document still compares (by class).
SCHEMA = 3
COMPARABLE_SCHEMAS = (2, 3)


@dataclass(frozen=True)
class Expected:
    """What a test expects: a verdict or class, from an expectations source or from a baseline."""

    value: str
    baseline: bool = False

    def describe(self, got: str) -> str:
        return "as expected" if passes(self.value, got) else f"expected {self.value}"


def as_expected(expected: "Expected | str") -> Expected:
    return expected if isinstance(expected, Expected) else Expected(expected)


def from_baseline(entry: Mapping[str, Any], key: str = "verdict") -> Expected:
    """The expectation a baseline entry (a hypothesis or a component of a previous verdicts.json) sets."""
    return Expected(entry[key], baseline=True)


@dataclass(frozen=True)
class Judgement:
    passed: bool
    message: str


_COUNTS = (("n_specialised", "specialised"), ("n_recall", "recall"), ("n_reasoning", "reasoning"),
           ("n_mixed", "mixed"), ("threshold", "threshold"))


def summary_numbers(summary: Mapping[str, Any]) -> str:
    """The numbers behind a verdict in one line, as the judge, the terminal summary and the report
    show them: why it is what it is (its reason) where the summary says, else its headline, else the
    counts it has (a minimal verdicts.json carries no headline)."""
    if summary.get("reason") or summary.get("headline"):
        return str(summary.get("reason") or summary["headline"])
    return ", ".join(f"{label} {summary[key]}" for key, label in _COUNTS if key in summary)


def noise_floors(entries: Mapping[str, Mapping[str, Any]]) -> dict[str, float]:
    """hypothesis -> its noise floor (``summary.noise_floor``: the class flips a rerun on resampled
    pairs would give by chance), for the entries that carry one."""
    return {h: float(e["summary"]["noise_floor"]["expected_flips"]) for h, e in sorted(entries.items())
            if isinstance((e.get("summary") or {}).get("noise_floor"), Mapping)}


def noise_floor_line(floors: Mapping[str, float], of: str = "") -> str:
    """One line, as the terminal summary, report.html and `circuitgate compare` show noise floors."""
    if not floors:
        return ""
    return (f"noise floor{of} (class flips a rerun on resampled pairs would give by chance): "
            + ", ".join(f"{h} {v:.1f}" for h, v in floors.items()))


def passes(expected: str, got: str | None) -> bool:
    """The one rule for a verdict or a class against its expectation, as the judge, verdicts.json's
    ``passed`` and the terminal summary apply it: it passes when it is the expected one (inconclusive
    included: it passes only where expected); a unit absent from the run (None) passes only where it
    was expected ``none``. A gate's rule, on change against a baseline, is ``circuitgate.gate``'s."""
    return got == expected or (got is None and expected == "none")


def judge_hypothesis(result: HypothesisResult, expected: Expected | str) -> Judgement:
    expected = as_expected(expected)
    numbers = summary_numbers(result.summary)
    passed = passes(expected.value, result.verdict)
    how = expected.describe(result.verdict)
    if passed:
        return Judgement(True, f"{result.hypothesis} {result.verdict} {how} ({numbers})")
    why = " (inconclusive never passes unless expected)" if result.verdict == "inconclusive" else ""
    return Judgement(False, f"{result.hypothesis} is {result.verdict}, {how} ({numbers}){why}")


def judge_component(result: HypothesisResult, component: str, expected: Expected | str) -> Judgement:
    expected = as_expected(expected)
    c = result.components.get(component)
    if c is None:
        # A unit the expectation names that this run does not have (another architecture's layer, an
        # H5 neuron set H3 no longer finds): only a unit that was "none" may vanish.
        if passes(expected.value, None):
            return Judgement(True, f"{result.hypothesis} {component} is not in this run; it was none")
        return Judgement(False, f"{result.hypothesis} {component} is not in this run, expected {expected.value}")
    ci = f" {format_interval(c.effect_ci)}" if c.effect_ci is not None else ""
    # H5 decides by intervals and has no p-value (NaN): leave it out rather than print "nan".
    p = f", p_adj {c.p_adj:.3g}" if math.isfinite(c.p_adj) else ""
    measured = f"effect {c.effect:+.3g}{ci}{p}"
    how = expected.describe(c.cls)
    if passes(expected.value, c.cls):
        return Judgement(True, f"{result.hypothesis} {component} is {c.cls} {how} ({measured})")
    return Judgement(False, f"{result.hypothesis} {component} is {c.cls}, {how} ({measured})")


def format_interval(ci: Any) -> str:
    """An effect's interval as the judge and `circuitgate compare` print it: [-1.8, -1.2]."""
    return f"[{ci[0]:+.3g}, {ci[1]:+.3g}]"


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
    result: HypothesisResult, expected: Expected | str, component_expectations: Mapping[str, Expected | str],
    note: str | None = None,
) -> dict[str, Any]:
    """A hypothesis's verdicts.json entry; ``note``: what the expectations source does not assert."""
    expected = as_expected(expected)
    components = {}
    for cid, c in result.components.items():
        entry = c.to_dict()
        if cid in component_expectations:
            exp = as_expected(component_expectations[cid])
            entry["expected"] = exp.value
            entry["passed"] = passes(exp.value, c.cls)
        components[cid] = entry
    return jsonable({
        "verdict": result.verdict,
        "expected": expected.value,
        "passed": passes(expected.value, result.verdict),
        "method": result.method,
        "summary": result.summary,
        "components": components,
        **({"uncertainty": dict(result.uncertainty)} if result.uncertainty else {}),
        **({"note": note} if note else {}),
    })


@dataclass(frozen=True)
class Sighting:
    """A unit expected to serve one skill, and what the run made of it."""

    hypothesis: str
    component: str
    expected: str
    got: str  # the run's class, or "absent"
    effect: float | None
    effect_ci: tuple[float, float] | None

    @property
    def outcome(self) -> str:
        if passes(self.expected, self.got):
            return "found"
        return "opposite" if self.got in SKILLS else "missed"

    def describe(self) -> str:
        ci = f" {format_interval(self.effect_ci)}" if self.effect_ci else ""
        effect = f", effect {self.effect:+.3g}{ci}" if self.effect is not None else ""
        seen = "" if self.outcome == "found" else f" ({self.outcome}: {self.got})"
        return f"{self.component} {self.expected}{seen}{effect}"


def expected_circuit(entries: Mapping[str, Mapping[str, Any]]) -> list[Sighting]:
    """The units the expectations name as recall or reasoning (an organism's planted circuit, a paper's
    top heads), each with the class, effect and interval this run gave it: what the summary and the
    report show under "expected circuit"."""
    out = []
    for h, entry in entries.items():
        for cid, c in (entry.get("components") or {}).items():
            if c.get("expected") in SKILLS:
                ci = c.get("effect_ci")
                out.append(Sighting(h, cid, c["expected"], c["class"], c.get("effect"),
                                    tuple(ci) if ci and None not in ci else None))
    return out


def write_json_atomic(path: Path, document: Mapping[str, Any]) -> None:
    """Write JSON through a temporary file and a rename: readers never see half a file. A report is
    shared like any file the user writes."""
    with atomic_write(path, "w", shared=True) as fh:
        json.dump(document, fh, indent=2)
        fh.write("\n")


def read_verdicts(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
