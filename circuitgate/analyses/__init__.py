"""The hypotheses: what each needs (activations, ablation sweeps, a second model), how it is analysed
under each method, which components its tests assert and what its expectations source says of it.
H1-H3 are one ``base.ActivationAnalysis`` each, whose statistics are the method's (``methods/paired.py``,
``methods/original.py``); H4 and H5 have a module each. A number in verdicts.json under
``hypotheses.H5`` comes from ``analyses/h5.py``, one under ``hypotheses.H2`` from ``methods/``: one hop.

``session.Run`` holds the inputs (model, prompts, config, baseline) and caches results; it asks the
registry to compute one. ``expected_verdict``, ``expected_components`` and ``component_ids`` are the
one place that decides what a test expects: the config, then a baseline, then the source. A project's
own hypothesis (``circuitgate.api``) is an ``Analysis`` of the run (``Run.own``) that is its own
source; a baseline does not judge it by change (docs/own-hypothesis.md, "In a gate").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from circuitgate import CircuitgateError
from circuitgate.analyses.base import ActivationAnalysis, Analysis
from circuitgate.analyses.h4 import ANALYSIS as H4
from circuitgate.analyses.h5 import ANALYSIS as H5
from circuitgate.judging import Expected, from_baseline
from circuitgate.vocabulary import ACTIVATION_HYPOTHESES

if TYPE_CHECKING:
    from circuitgate.gate import Decision
    from circuitgate.session import Run

ANALYSES: dict[str, Analysis] = {a.hypothesis: a for a in (*map(ActivationAnalysis, ACTIVATION_HYPOTHESES), H4, H5)}


def analysis(hypothesis: str) -> Analysis:
    try:
        return ANALYSES[hypothesis]
    except KeyError:
        raise CircuitgateError(f"unknown hypothesis {hypothesis!r} (known: {', '.join(ANALYSES)})") from None


def analysis_of(run: "Run", hypothesis: str) -> Analysis:
    """A hypothesis's analysis: the run's own hypothesis of that id, else H1-H5's. (Any run-like
    object will do: one without own hypotheses has H1-H5's.)"""
    return getattr(run, "own", {}).get(hypothesis) or analysis(hypothesis)


def _gated(run: "Run", hypothesis: str) -> bool:
    """Whether a baseline sets this hypothesis's expectations: H1-H5's. An own hypothesis has no
    margin for its units' change (docs/gating.md), so it keeps its own expectations in a gate."""
    return hypothesis in ANALYSES and run.baseline is not None


def baseline_entry(run: "Run", hypothesis: str, method: str | None) -> Mapping[str, Any] | None:
    """The baseline's verdicts.json entry of a hypothesis under ``method`` (default: the run's first),
    or None without a baseline or without that hypothesis in it."""
    from circuitgate.gate import method_entries

    if run.baseline is None:
        return None
    return method_entries(run.baseline).get(method or run.settings.methods[0], {}).get(hypothesis)


def expected_verdict(run: "Run", hypothesis: str, method: str | None = None) -> Expected:
    """What a hypothesis test expects, first to last: the config's ``expected:`` (the user said so),
    the baseline's verdict (a gate), the expectations source's, ``supported``."""
    stated = run.config.expected.get(hypothesis)
    if stated:
        return Expected(stated)
    entry = baseline_entry(run, hypothesis, method) if _gated(run, hypothesis) else None
    if entry is not None:
        return from_baseline(entry)
    return Expected(analysis_of(run, hypothesis).source_expectations(run)[0] or "supported")


def expected_components(run: "Run", hypothesis: str, method: str | None = None) -> dict[str, Expected]:
    """Component id -> expected class: the baseline's (every unit it has), else the source's."""
    entry = baseline_entry(run, hypothesis, method) if _gated(run, hypothesis) else None
    if entry is not None:
        return {cid: from_baseline(c, "class") for cid, c in (entry.get("components") or {}).items()}
    return {cid: Expected(cls) for cid, cls in analysis_of(run, hypothesis).source_expectations(run)[1].items()}


def component_ids(run: "Run", hypothesis: str) -> list[str]:
    """The components a hypothesis's component tests assert: the baseline's (under every method it
    ran), else those the analysis names from its source (without computing anything)."""
    if _gated(run, hypothesis):
        ids = {cid: None for m in run.settings.methods for cid in expected_components(run, hypothesis, m)}
        if ids or any(baseline_entry(run, hypothesis, m) for m in run.settings.methods):
            return list(ids)
    return analysis_of(run, hypothesis).component_ids(run)


def baseline_component_ids(run: "Run", hypothesis: str) -> set[str]:
    """Every unit the baseline has for a hypothesis, under any method it ran (empty without one)."""
    return {cid for m in run.settings.methods for cid in (baseline_entry(run, hypothesis, m) or {}).get("components", {})}


def baseline_neuron_sets(run: "Run") -> dict[str, tuple[int, tuple[int, ...]]] | None:
    """The neuron sets the baseline's H5 ablated as targets of their own, or None without a baseline
    H5: a gate ablates what the baseline ablated, also on a copy that no longer knows its blocks."""
    entry = baseline_entry(run, "H5", None)
    if entry is None:
        return None
    return {tid: (s["layer"], tuple(s["neurons"])) for tid, s in entry.get("summary", {}).get("neuron_sets", {}).items()}


# -- a gate (--baseline): every decision by gate.py's rule, computed once per hypothesis ------------
def _run_entry(run: "Run", hypothesis: str, method: str) -> dict[str, Any]:
    """The run's verdicts.json entry of a hypothesis, as a gate compares it with the baseline's."""
    from circuitgate.judging import hypothesis_entry

    return hypothesis_entry(run.result(hypothesis, method), run.result(hypothesis, method).verdict, {})


def legacy_baseline(run: "Run") -> bool:
    """The baseline stores no per-pair values (a verdicts.json from before schema 3): the old rule."""
    return run.baseline is not None and int(run.baseline.get("schema", 0)) < 3


def gate_units(run: "Run", hypothesis: str, method: str) -> dict[str, "Decision"]:
    """unit -> its decision against the baseline (``gate.judge_units``), over all the hypothesis's
    units at once: the correction needs the whole family."""
    from circuitgate.gate import judge_units

    def compute() -> dict[str, "Decision"]:
        cfg = run.config.gate
        margin = cfg.margins.of(hypothesis, run.config.h5.metric)
        decided = judge_units(method, hypothesis, baseline_entry(run, hypothesis, method) or {"components": {}},
                              _run_entry(run, hypothesis, method), margin, cfg, legacy_baseline(run))
        return {d.unit: d for d in decided}

    return run.memo(f"gate units {method} {hypothesis}", compute)


def gate_skills(run: "Run") -> dict[str, "Decision"]:
    """task -> its clean-accuracy decision against the baseline (``gate.judge_skills``); empty when the
    baseline does not record which pairs it answered."""
    from circuitgate.analyses.h5 import clean_scores
    from circuitgate.encoding import pack_bits
    from circuitgate.gate import judge_skills

    def compute() -> dict[str, "Decision"]:
        mine = {"clean_correct": {side: pack_bits(m.accuracy == 1) for side, m in clean_scores(run).items()}}
        return {d.unit: d for d in judge_skills(run.settings.methods[0], run.baseline, mine, run.config.gate)}

    return run.memo("gate skills", compute)


def gate_verdict(run: "Run", hypothesis: str, method: str) -> "Decision":
    """The hypothesis verdict's decision against the baseline (``gate.judge_verdict``)."""
    from circuitgate.gate import judge_verdict

    def compute() -> "Decision":
        h5 = gate_verdict(run, "H5", method) if hypothesis == "H4" and baseline_entry(run, "H5", method) else None
        skills = list(gate_skills(run).values()) if hypothesis == "H5" else []
        return judge_verdict(method, hypothesis, baseline_entry(run, hypothesis, method),
                             _run_entry(run, hypothesis, method), list(gate_units(run, hypothesis, method).values()),
                             skills, h5, legacy_baseline(run))

    return run.memo(f"gate verdict {method} {hypothesis}", compute)


__all__ = ["ANALYSES", "Analysis", "analysis", "analysis_of", "baseline_component_ids", "baseline_entry", "gate_skills", "gate_units",
           "gate_verdict", "legacy_baseline", "baseline_neuron_sets", "component_ids", "expected_components",
           "expected_verdict"]
