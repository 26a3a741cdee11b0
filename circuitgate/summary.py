"""What a run says in the terminal: the header that reproduces it and the summary of its verdicts, as
lines the pytest plugin writes (docs/design.md, "Command-line contract"). Nothing here prints."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from circuitgate.analyses import expected_verdict, legacy_baseline
from circuitgate.documents import config_sha256
from circuitgate.gate import LEGACY_NOTE, SKILLS_KEY
from circuitgate.judging import expected_circuit, noise_floor_line, noise_floors, passes, summary_numbers
from circuitgate.models.loading import cheap_weights_sha256, resolve_device, resolve_dtype
from circuitgate.plan import plan_outcome

if TYPE_CHECKING:
    from circuitgate.session import Run

MAX_NAMED = 12  # regressions named in the summary; `circuitgate compare` lists them all


@dataclass(frozen=True)
class Line:
    """A line of the terminal summary; ``section``: a heading the reporter sets between rules."""

    text: str
    green: bool = False
    red: bool = False
    bold: bool = False
    section: bool = False

    @property
    def markup(self) -> dict[str, bool]:
        return {k: True for k in ("green", "red", "bold") if getattr(self, k)}


# -- the header: how to reproduce the run ------------------------------------------------------------
def header_lines(run: "Run", suite: Sequence[str], keyword: str | None, markexpr: str | None) -> list[str]:
    """The model and its weights' hash (when cheap), the method, prompts and config with their hashes,
    and the command that reproduces the run (``suite``: how it was named, a path or ``--pyargs``)."""
    s, spec, ps = run.settings, run.spec, run.prompt_set
    sha = cheap_weights_sha256(spec)
    weights = f"weights sha256 {sha[:12]}" if sha else "weights sha256 in manifest.json, hashed when loaded"
    device = resolve_device(s.device)
    command = [*suite, "--model", s.model or spec.name, "--method", s.method,
               "--prompts", s.prompts or ps.name, "--device", device, "--dtype", resolve_dtype(s.dtype, device)]
    if s.remote:
        command += ["--remote"] if s.remote is True else ["--remote", s.remote]
    for option, value in (("--config", s.config), ("--h4-model", s.h4_model), ("--baseline", s.baseline),
                          ("-k", keyword), ("-m", markexpr)):
        if value:
            command += [option, value]
    # A registry entry's own settings sit under the file (docs/design.md, Command-line contract).
    settings = s.config or "defaults"
    if spec.config:
        settings = f"{s.config} over {spec.name}'s registry settings" if s.config else f"{spec.name}'s registry settings"
    if run.cpu_defaults:  # no registry settings, on a CPU: smollm2's CPU-sized H5 (docs/design.md, Runs sized ...)
        cpu = "the CPU defaults (registry cpu_config: a CPU-sized H5 for a model without registry settings)"
        settings = f"{s.config} over {cpu}" if s.config else cpu
    if run.baseline is not None:
        settings = f"{s.config} over the baseline's settings" if s.config else "the baseline's settings"
    lines = [
        f"circuitgate: model {spec.name} ({weights}), method {s.method}, prompts {ps.name} "
        f"(sha256 {ps.sha256[:12]}), config {settings} (sha256 {config_sha256(run.config)[:12]})",
        f"circuitgate: reproduce: {shlex.join(command)}",
    ]
    if run.baseline is not None:
        lines.append(f"circuitgate: gate on {s.baseline}: measured as the baseline was, "
                     + ("overridden: " + "; ".join(run.overrides) if run.overrides else "nothing overridden"))
        if legacy_baseline(run.inputs):
            lines.append(f"circuitgate: {s.baseline}: {LEGACY_NOTE}")
    return lines


# -- the summary ------------------------------------------------------------------------------------
def summary_lines(run: "Run", document: dict[str, Any]) -> list[Line]:
    """Per method: the clean accuracy, each hypothesis's verdict against its expectation, H5's plan,
    the noise floor and the expected circuit; then a gate's regressions; then where the report is."""
    by_method = document.get("by_method") or {run.settings.methods[0]: document["hypotheses"]}
    clean = document["clean_accuracy"]
    lines: list[Line] = []
    for method in run.settings.methods:
        lines.append(Line(f"circuitgate verdicts ({run.spec.name}, method {method})", section=True))
        lines.append(Line(f"clean accuracy (whole answers, every pair): recall {clean['recall']:.2f}, "
                          f"reasoning {clean['reasoning']:.2f}"))
        lines += _verdict_lines(run, method)
        plan = by_method[method].get("H5", {}).get("summary", {}).get("plan")
        if plan:
            lines.append(Line(f"H5 plan: {plan_outcome(plan)}"))
        floors = noise_floors({h: e for h, e in by_method[method].items() if e.get("tested", True)})
        if floors and run.baseline is None:  # a gate shows its baseline's beside its counts
            lines.append(Line(noise_floor_line(floors)))
        lines += _circuit_lines(by_method[method])
    if run.baseline is not None:
        lines += _baseline_lines(run, document["baseline"])
    lines.append(Line(f"report: {Path(run.report_dir) / 'report.html'}"))
    return lines


def _baseline_lines(run: "Run", record: dict) -> list[Line]:
    """The gate: what fails (skills first, each on its line), then the counts beside the noise floor."""
    names = record["regressions"]
    what = "regressed or unresolved (gate.strict)" if record["strict"] else "regressed"
    lines = [Line(f"baseline {run.settings.baseline}: " + (f"{len(names)} {what}" if names else "nothing regressed"),
                  red=bool(names), green=not names)]
    failing = [d for d in record["decisions"] + record["skills"]
               if d["decision"] == "regressed" or (record["strict"] and d["decision"] == "unresolved")]
    shown = sorted({d["name"]: d for d in failing}.values(), key=lambda d: (d["hypothesis"] != SKILLS_KEY,
                                                                           d["p_adj"] or 1.0))
    lines += [Line(f"  {decision_line(d)}", red=True) for d in shown[:MAX_NAMED]]
    if len(shown) > MAX_NAMED:
        lines.append(Line(f"  and {len(shown) - MAX_NAMED} more (circuitgate compare lists them all)"))
    lines.append(Line(f"  {record['counts_line']}"))
    lines += [Line(f"  note: {note}") for note in record["notes"] if note != LEGACY_NOTE]  # the header said it, once
    return lines


def decision_line(d: dict) -> str:
    """One failing decision of verdicts.json's gate record, as the judge names it."""
    ci = d.get("delta_ci")
    change = "" if d.get("delta") is None else f", change {d['delta']:+.3g}" + (
        f" [{ci[0]:+.3g}, {ci[1]:+.3g}]" if ci else "")
    effect = ""
    if d.get("hypothesis") != SKILLS_KEY and d.get("effect_before") is not None and d.get("effect_after") is not None:
        effect = f", effect {d['effect_before']:+.3g} -> {d['effect_after']:+.3g}"
    return f"{d['name']}: {d['before'] or 'absent'} -> {d['after'] or 'absent'}{effect}{change} ({d['why']})"


def _circuit_lines(entries: dict) -> list[Line]:
    """The expected circuit (an organism's planted units), as this run found it, and what the
    expectations leave unasserted."""
    sightings = expected_circuit({h: e for h, e in entries.items() if e.get("tested", True)})
    if not sightings:
        return []
    found = sum(s.outcome == "found" for s in sightings)
    lines = [Line(f"expected circuit: {found} of {len(sightings)} units found with their class", bold=True)]
    for h in dict.fromkeys(s.hypothesis for s in sightings):
        units = [s for s in sightings if s.hypothesis == h]
        lines.append(Line(f"  {h}  " + "; ".join(s.describe() for s in units),
                          green=all(s.outcome == "found" for s in units), red=any(s.outcome != "found" for s in units)))
    lines += [Line(f"  {h}  not asserted: {e['note']}") for h, e in entries.items()
              if e.get("note") and e.get("tested", True)]
    return lines


def _verdict_lines(run: "Run", method: str) -> list[Line]:
    lines = []
    for h, r in run.results_by(method).items():
        expectation = expected_verdict(run.inputs, h, method)
        expected, source = expectation.value, "baseline" if expectation.baseline else "expected"
        numbers = summary_numbers(r.summary)
        if h not in run.tested:  # an input of a selected hypothesis (H3's neurons for H5), not judged
            lines.append(Line(f"{h}  {r.verdict:<13} (computed as an input, not tested)  {numbers}"))
            continue
        ok = passes(expected, r.verdict)
        if expectation.baseline:
            ok = not run.gate_verdict(h, method).failing(run.config.gate.strict)
        lines.append(Line(f"{h}  {r.verdict:<13} {source} {expected:<13} {'PASS' if ok else 'FAIL'}  {numbers}",
                          green=ok, red=not ok))
    return lines
