"""The hypotheses: what each needs (activations, ablation sweeps, a second model), how it is analysed
under each method, which components its tests assert and what its expectations source says of it.
H1-H3 are one ``base.ActivationAnalysis`` each, whose statistics are the method's (``methods/paired.py``,
``methods/original.py``); H4 and H5 have a module each. A number in verdicts.json under
``hypotheses.H5`` comes from ``analyses/h5.py``, one under ``hypotheses.H2`` from ``methods/``: one hop.

An analysis declares what it needs and receives it as ``Inputs`` (``analyses.base``); the session
(``session.Run``) resolves them, computes and caches results. ``expected_verdict``,
``expected_components`` and ``component_ids`` are the one place that decides what a test expects: the
config, then a baseline, then the source; they read the same ``Inputs``. A project's own hypothesis
(``circuitgate.api``) is an ``Analysis`` of the run (``Inputs.own``) that is its own source; a
baseline does not judge it by change (docs/own-hypothesis.md, "In a gate").
"""

from __future__ import annotations

from typing import Any, Mapping

from circuitgate import CircuitgateError
from circuitgate.analyses.base import ActivationAnalysis, Analysis, Inputs
from circuitgate.analyses.h4 import ANALYSIS as H4
from circuitgate.analyses.h5 import ANALYSIS as H5
from circuitgate.judging import Expected, from_baseline
from circuitgate.vocabulary import ACTIVATION_HYPOTHESES

ANALYSES: dict[str, Analysis] = {a.hypothesis: a for a in (*map(ActivationAnalysis, ACTIVATION_HYPOTHESES), H4, H5)}


def analysis(hypothesis: str) -> Analysis:
    try:
        return ANALYSES[hypothesis]
    except KeyError:
        raise CircuitgateError(f"unknown hypothesis {hypothesis!r} (known: {', '.join(ANALYSES)})") from None


def analysis_of(inputs: Inputs, hypothesis: str) -> Analysis:
    """A hypothesis's analysis: the run's own hypothesis of that id, else H1-H5's. (Any inputs-like
    object will do: one without own hypotheses has H1-H5's.)"""
    return getattr(inputs, "own", {}).get(hypothesis) or analysis(hypothesis)


def _gated(inputs: Inputs, hypothesis: str) -> bool:
    """Whether a baseline sets this hypothesis's expectations: H1-H5's. An own hypothesis has no
    margin for its units' change (docs/gating.md), so it keeps its own expectations in a gate."""
    return hypothesis in ANALYSES and inputs.baseline is not None


def baseline_entry(inputs: Inputs, hypothesis: str, method: str | None) -> Mapping[str, Any] | None:
    """The baseline's verdicts.json entry of a hypothesis under ``method`` (default: the run's first),
    or None without a baseline or without that hypothesis in it."""
    from circuitgate.gate import method_entries

    if inputs.baseline is None:
        return None
    return method_entries(inputs.baseline).get(method or inputs.methods[0], {}).get(hypothesis)


def expected_verdict(inputs: Inputs, hypothesis: str, method: str | None = None) -> Expected:
    """What a hypothesis test expects, first to last: the config's ``expected:`` (the user said so),
    the baseline's verdict (a gate), the expectations source's, ``supported``."""
    stated = inputs.config.expected.get(hypothesis)
    if stated:
        return Expected(stated)
    entry = baseline_entry(inputs, hypothesis, method) if _gated(inputs, hypothesis) else None
    if entry is not None:
        return from_baseline(entry)
    return Expected(analysis_of(inputs, hypothesis).source_expectations(inputs)[0] or "supported")


def expected_components(inputs: Inputs, hypothesis: str, method: str | None = None) -> dict[str, Expected]:
    """Component id -> expected class: the baseline's (every unit it has), else the source's."""
    entry = baseline_entry(inputs, hypothesis, method) if _gated(inputs, hypothesis) else None
    if entry is not None:
        return {cid: from_baseline(c, "class") for cid, c in (entry.get("components") or {}).items()}
    return {cid: Expected(cls) for cid, cls in analysis_of(inputs, hypothesis).source_expectations(inputs)[1].items()}


def component_ids(inputs: Inputs, hypothesis: str) -> list[str]:
    """The components a hypothesis's component tests assert: the baseline's (under every method it
    ran), else those the analysis names from its source (without computing anything)."""
    if _gated(inputs, hypothesis):
        ids = {cid: None for m in inputs.methods for cid in expected_components(inputs, hypothesis, m)}
        if ids or any(baseline_entry(inputs, hypothesis, m) for m in inputs.methods):
            return list(ids)
    return analysis_of(inputs, hypothesis).component_ids(inputs)


def baseline_component_ids(inputs: Inputs, hypothesis: str) -> set[str]:
    """Every unit the baseline has for a hypothesis, under any method it ran (empty without one)."""
    return {cid for m in inputs.methods for cid in (baseline_entry(inputs, hypothesis, m) or {}).get("components", {})}


def baseline_neuron_sets(inputs: Inputs) -> dict[str, tuple[int, tuple[int, ...]]] | None:
    """The neuron sets the baseline's H5 ablated as targets of their own, or None without a baseline
    H5: a gate ablates what the baseline ablated, also on a copy that no longer knows its blocks."""
    entry = baseline_entry(inputs, "H5", None)
    if entry is None:
        return None
    return {tid: (s["layer"], tuple(s["neurons"])) for tid, s in entry.get("summary", {}).get("neuron_sets", {}).items()}


def legacy_baseline(inputs: Inputs) -> bool:
    """The baseline stores no per-pair values (a verdicts.json from before schema 3): the old rule."""
    return inputs.baseline is not None and int(inputs.baseline.get("schema", 0)) < 3


__all__ = ["ANALYSES", "Analysis", "Inputs", "analysis", "analysis_of", "baseline_component_ids", "baseline_entry",
           "legacy_baseline", "baseline_neuron_sets", "component_ids", "expected_components", "expected_verdict"]
