"""The hypotheses, one module each: what a hypothesis needs (activations, ablation sweeps, a second
model), how it is analysed under each method, which components its tests assert and what its
expectations source says of it. A number in verdicts.json under ``hypotheses.H5`` comes from
``analyses/h5.py``, and so on: one hop.

``session.Run`` holds the inputs (model, prompts, config, baseline) and caches results; it asks the
registry to compute one. ``expected_verdict``, ``expected_components`` and ``component_ids`` are the
one place that decides what a test expects: the config, then a baseline, then the source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from circuitgate import CircuitgateError
from circuitgate.analyses.base import Analysis
from circuitgate.analyses.h1 import ANALYSIS as H1
from circuitgate.analyses.h2 import ANALYSIS as H2
from circuitgate.analyses.h3 import ANALYSIS as H3
from circuitgate.analyses.h4 import ANALYSIS as H4
from circuitgate.analyses.h5 import ANALYSIS as H5
from circuitgate.verdicts import Expected, from_baseline

if TYPE_CHECKING:
    from circuitgate.session import Run

ANALYSES: dict[str, Analysis] = {a.hypothesis: a for a in (H1, H2, H3, H4, H5)}


def analysis(hypothesis: str) -> Analysis:
    try:
        return ANALYSES[hypothesis]
    except KeyError:
        raise CircuitgateError(f"unknown hypothesis {hypothesis!r} (known: {', '.join(ANALYSES)})") from None


def _baseline_entry(run: "Run", hypothesis: str, method: str | None) -> Mapping[str, Any] | None:
    from circuitgate.compare import method_entries

    if run.baseline is None:
        return None
    return method_entries(run.baseline).get(method or run.settings.methods[0], {}).get(hypothesis)


def expected_verdict(run: "Run", hypothesis: str, method: str | None = None) -> Expected:
    """What a hypothesis test expects, first to last: the config's ``expected:`` (the user said so),
    the baseline's verdict (a gate), the expectations source's, ``supported``."""
    stated = run.config.expected.get(hypothesis)
    if stated:
        return Expected(stated)
    entry = _baseline_entry(run, hypothesis, method)
    if entry is not None:
        return from_baseline(entry)
    return Expected(analysis(hypothesis).source_expectations(run)[0] or "supported")


def expected_components(run: "Run", hypothesis: str, method: str | None = None) -> dict[str, Expected]:
    """Component id -> expected class: the baseline's (every unit it has), else the source's."""
    entry = _baseline_entry(run, hypothesis, method)
    if entry is not None:
        return {cid: from_baseline(c, "class") for cid, c in (entry.get("components") or {}).items()}
    return {cid: Expected(cls) for cid, cls in analysis(hypothesis).source_expectations(run)[1].items()}


def component_ids(run: "Run", hypothesis: str) -> list[str]:
    """The components a hypothesis's component tests assert: the baseline's (under every method it
    ran), else those the analysis names from its source (without computing anything)."""
    if run.baseline is not None:
        ids = {cid: None for m in run.settings.methods for cid in expected_components(run, hypothesis, m)}
        if ids or any(_baseline_entry(run, hypothesis, m) for m in run.settings.methods):
            return list(ids)
    return analysis(hypothesis).component_ids(run)


def baseline_component_ids(run: "Run", hypothesis: str) -> set[str]:
    """Every unit the baseline has for a hypothesis, under any method it ran (empty without one)."""
    return {cid for m in run.settings.methods for cid in (_baseline_entry(run, hypothesis, m) or {}).get("components", {})}


def baseline_neuron_sets(run: "Run") -> dict[str, tuple[int, tuple[int, ...]]] | None:
    """The neuron sets the baseline's H5 ablated as targets of their own, or None without a baseline
    H5: a gate ablates what the baseline ablated, also on a copy that no longer knows its blocks."""
    entry = _baseline_entry(run, "H5", None)
    if entry is None:
        return None
    return {tid: (s["layer"], tuple(s["neurons"])) for tid, s in entry.get("summary", {}).get("neuron_sets", {}).items()}


__all__ = ["ANALYSES", "Analysis", "analysis", "baseline_component_ids", "baseline_neuron_sets", "component_ids", "expected_components",
           "expected_verdict"]
