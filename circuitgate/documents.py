"""What a run writes: verdicts.json (deterministic: no times) and manifest.json (docs/design.md, Files)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import platform
import sys
from dataclasses import asdict
from importlib import metadata
from typing import TYPE_CHECKING, Any

import torch

from circuitgate.analyses import expected_components, expected_verdict
from circuitgate.judging import SCHEMA, hypothesis_entry, jsonable

if TYPE_CHECKING:
    from circuitgate.config import Config
    from circuitgate.session import Run

PACKAGES = ("circuitgate", "torch", "transformers", "nnsight", "numpy", "scipy", "statsmodels", "pytest")


def verdicts_document(run: "Run") -> dict[str, Any]:
    """verdicts.json: deterministic for a given model, prompts, method and config."""
    ps = run.prompt_set
    doc = {
        "schema": SCHEMA,
        "model": run.model_info,
        "method": run.settings.method,
        "prompts": {"name": ps.name, "sha256": ps.sha256, "n_pairs": len(ps.pairs)},
        # Can the model do the tasks at all? Every pair, whole answers, greedy (docs/design.md, Files);
        # per pair in the prompt set's order, so a gate compares a skill pair by pair.
        "clean_accuracy": run.clean.accuracy,
        "clean_correct": run.clean.correct,
        "expectations": expectations_source(run),
        **({"baseline": {"path": str(run.settings.baseline), "model": run.baseline.get("model")}}
           if run.baseline is not None else {}),
        **_h4_model(run),
        "config": jsonable(run.config.to_dict()),
        "hypotheses": _entries(run, run.settings.methods[0]),
        # --method both: each method's verdicts, side by side (the report shows them so).
        **({"by_method": {m: _entries(run, m) for m in run.settings.methods}}
           if len(run.settings.methods) > 1 else {}),
    }
    if run.baseline is not None:
        doc["baseline"].update(gate_record(run, doc))
    return doc


def gate_record(run: "Run", doc: dict[str, Any]) -> dict[str, Any]:
    """The gate's decisions on the tested hypotheses (and skills, when their tests ran), by the rule
    `circuitgate compare` applies to the two files: a failing test and a named regression are one
    thing seen twice. Each entry, component and skill carries its own decision too."""
    from circuitgate.compare import compare, counts_line
    from circuitgate.gate import SKILLS_KEY, ordered

    c = compare(run.baseline, doc, "baseline", "this run", strict=run.config.gate.strict, hypotheses=run.tested)
    tested = [d for d in c.report.decisions if d.hypothesis in run.tested]
    for d in tested:
        entries = doc["by_method"][d.method] if "by_method" in doc else doc["hypotheses"]
        if d.hypothesis in entries:
            target = entries[d.hypothesis] if d.unit is None else entries[d.hypothesis]["components"].get(d.unit)
            if target is not None:
                target["gate"] = jsonable(_gate_fields(d))
                target["passed"] = not d.failing(c.report.strict)
    failing = [c.label(d) for d in c.failing if d.hypothesis in run.tested]
    return jsonable({
        "regressions": failing,
        "strict": c.report.strict,
        "counts": c.report.counts(),
        "counts_line": counts_line(c.report),
        "skills": [d.to_dict() for d in c.report.skills] if SKILLS_KEY in run.tested else [],
        # Verdicts and units that did not simply hold, failing first (skills are above).
        "decisions": [d.to_dict() for d in ordered(tested) if d.hypothesis != SKILLS_KEY
                      and not (d.decision == "held" and not d.class_changed)],
        "overrides": run.overrides,
        "notes": c.notes,
    })


def _gate_fields(d: Any) -> dict[str, Any]:
    return {"decision": d.decision, "why": d.why, "delta": d.delta, "delta_ci": d.delta_ci, "margin": d.margin,
            "p_adj": d.p_adj, "basis": d.basis}


def _entries(run: "Run", method: str) -> dict[str, Any]:
    # What the source leaves unasserted is the source's: a baseline asserts every unit it has.
    notes = {} if run.baseline is not None else run.expectations.notes
    return {h: {**hypothesis_entry(r, expected_verdict(run.inputs, h, method),
                                   expected_components(run.inputs, h, method), notes.get(h)),
                "tested": h in run.tested}
            for h, r in run.results_by(method).items()}


def expectations_source(run: "Run") -> str:
    if run.baseline is not None:
        model = run.baseline.get("model") or {}
        return f"baseline {run.settings.baseline} ({model.get('name') or model.get('id')})"
    return run.expectations.source


def _h4_model(run: "Run") -> dict[str, Any]:
    """The second model's id and weight hash, when H4 compared with one."""
    twin = run.twin_made
    if twin is not None and any(h == "H4" for m in run.settings.methods for h in run.results_by(m)):
        return {"h4_model": twin.model_info}
    return {}


def config_sha256(config: "Config") -> str:
    """sha256 of the config as verdicts.json records it, in canonical JSON (sorted keys): a run's
    document can be checked against the header of another."""
    text = json.dumps(jsonable(config.to_dict()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def peak_memory() -> dict[str, Any]:
    """The process's peak resident memory, and on a GPU torch's peak allocation, in bytes."""
    import resource

    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    out: dict[str, Any] = {"rss_bytes": int(rss)}
    if torch.cuda.is_available():
        out["cuda_max_allocated_bytes"] = int(torch.cuda.max_memory_allocated())
    return out


def manifest(run: "Run", finished: _dt.datetime | None = None) -> dict[str, Any]:
    """manifest.json: what produced the run (weights, prompts, config, versions, device, times)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    ps = run.prompt_set
    return jsonable({
        "schema": SCHEMA,
        "model": run.model_info,
        "model_dir": str(run.model_dir),
        **_h4_model(run),
        "prompts": {"name": ps.name, "sha256": ps.sha256, "source": ps.source},
        "method": run.settings.method,
        "config": run.config.to_dict(),
        "config_file": run.settings.config,
        "seed": run.config.h1.seed,
        "settings": asdict(run.settings),
        "device": run.placement[0],
        "dtype": run.placement[1],
        "remote": run.settings.remote,  # True: the traces ran on NDIF; "local": through nnsight's local stand-in
        "threads": torch.get_num_threads(),  # as set for this run (--threads)
        "peak_memory": peak_memory(),
        "methods": list(run.settings.methods),
        "hypotheses_run": list(run.results),
        "started": run.started.isoformat(timespec="seconds"),
        "finished": (finished or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
    })
