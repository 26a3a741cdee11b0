"""Two verdicts.json documents side by side, decided by the gate's rule (``circuitgate.gate``):
``circuitgate compare A.json B.json`` prints it (a table, JSON or markdown for a pull-request comment);
``--baseline`` judges a run by the same rule, so a failing test and a regression here are one thing.

Documents compare only when made with comparable schemas, the same method, the same prompt set (name
and hash) and models of the same shape; everything else is named in one line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from circuitgate import CircuitgateError
from circuitgate.gate import DECISIONS, SKILLS_KEY, Decision, GateReport, compare_entries, gate_config, method_entries
from circuitgate.prompts import renamed_prompts
from circuitgate.judging import COMPARABLE_SCHEMAS, SCHEMA, format_interval, jsonable, noise_floor_line
from circuitgate.vocabulary import canonical_method

REQUIRED_KEYS = ("schema", "method", "prompts", "hypotheses")


def load_document(path: str | Path) -> dict[str, Any]:
    """A verdicts.json, or a one-line error saying what is wrong with it."""
    p = Path(path)
    if not p.is_file():
        raise CircuitgateError(f"no such file: {p}")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CircuitgateError(f"{p} is not valid JSON: {e}") from None
    missing = [k for k in REQUIRED_KEYS if not isinstance(doc, dict) or k not in doc]
    if missing:
        raise CircuitgateError(f"{p} is not a circuitgate verdicts.json (no {', '.join(missing)})")
    return _renamed(doc)


def _renamed(doc: dict[str, Any]) -> dict[str, Any]:
    """A document written before a rename, read with today's names: the original method was called
    ``seed`` and its prompt set ``geography-seed``. The numbers are the same method's on the same
    prompts, so a baseline kept from then still gates."""
    doc["method"] = canonical_method(doc["method"])
    prompts = doc["prompts"]
    if isinstance(prompts, dict) and isinstance(prompts.get("name"), str) and isinstance(prompts.get("sha256"), str):
        prompts["name"], prompts["sha256"] = renamed_prompts(prompts["name"], prompts["sha256"])
    if "by_method" in doc:
        doc["by_method"] = {canonical_method(m): entries for m, entries in doc["by_method"].items()}
    return doc


def _prompts(doc: Mapping[str, Any]) -> str:
    p = doc["prompts"]
    return f"{p.get('name')} (sha256 {str(p.get('sha256'))[:12]})"


def incompatibilities(a: Mapping[str, Any], b: Mapping[str, Any], a_label: str = "A",
                      b_label: str = "B") -> list[str]:
    """What makes two documents incomparable: another schema, method or prompt set, each named."""
    problems = []
    if a["schema"] != b["schema"] and not {a["schema"], b["schema"]} <= set(COMPARABLE_SCHEMAS):
        problems.append(f"schema: {a_label} {a['schema']}, {b_label} {b['schema']}")
    if a["method"] != b["method"]:
        problems.append(f"method: {a_label} {a['method']}, {b_label} {b['method']}")
    pa, pb = a["prompts"], b["prompts"]
    if (pa.get("name"), pa.get("sha256")) != (pb.get("name"), pb.get("sha256")):
        problems.append(f"prompt set: {a_label} {_prompts(a)}, {b_label} {_prompts(b)}")
    sa, sb = _shape(a), _shape(b)
    if sa and sb and sa != sb:  # its units are other units: a layer or head of one is not the other's
        problems.append(f"model shape: {a_label} {sa}, {b_label} {sb}")
    return problems


def load_baseline(path: str | Path) -> dict[str, Any]:
    """A ``--baseline`` document, its errors prefixed with the option."""
    try:
        return load_document(path)
    except CircuitgateError as e:
        raise CircuitgateError(f"--baseline: {e}") from None


def baseline_method(path: str | Path | None) -> str | None:
    """With no --method, a gate runs the baseline's method (it must, to compare)."""
    return load_baseline(path)["method"] if path else None


def baseline_prompts(doc: Mapping[str, Any] | None, path: str | Path | None) -> str | None:
    """With no --prompts, a baseline's run uses the baseline's prompt set (it must, to compare)."""
    if doc is None:
        return None
    from circuitgate.prompts import builtin_names

    name = doc["prompts"].get("name")
    if name not in builtin_names():
        raise CircuitgateError(f"--baseline {path} was made with the prompt set {name!r}, "
                               f"which is not built in: pass its file with --prompts")
    return name


def check_baseline(doc: Mapping[str, Any], path: str | Path, method: str, prompt_set: Any) -> None:
    """Refuse a baseline made with another schema, method or prompt set: its verdicts would not be this
    run's to regress from."""
    mine = {"schema": SCHEMA, "method": method, "prompts": {"name": prompt_set.name, "sha256": prompt_set.sha256}}
    problems = incompatibilities(doc, mine, "baseline", "this run")
    if problems:
        raise CircuitgateError(f"--baseline {path} was made with another " + "; another ".join(problems))


def check_shape(doc: Mapping[str, Any], path: str | Path, shape: Mapping[str, Any]) -> None:
    """Refuse a candidate whose shape differs from its baseline's model's: none of its units would be
    the baseline's."""
    problems = incompatibilities(doc, {**doc, "model": {"shape": dict(shape)}}, "baseline", "this model")
    if problems:
        raise CircuitgateError(f"--baseline {path} was made on a model of another shape: " + "; ".join(problems))


def _shape(doc: Mapping[str, Any]) -> str | None:
    shape = (doc.get("model") or {}).get("shape")
    if not isinstance(shape, Mapping):
        return None
    return f"{shape.get('n_layers')} layers x {shape.get('n_heads')} heads, {shape.get('ffn')} MLP neurons per layer"


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Settings that differ between two runs: their verdicts may differ for that reason alone."""
    fa, fb = dict(_flat(a.get("config") or {})), dict(_flat(b.get("config") or {}))
    return [f"{k} {fa.get(k)} -> {fb.get(k)}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def _flat(d: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(d, Mapping):
        for k, v in d.items():
            yield from _flat(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], d


@dataclass(frozen=True)
class Comparison:
    """Two documents side by side: who they are, and the gate's decisions (``gate.GateReport``)."""

    a: Mapping[str, Any]  # label, model, sha256
    b: Mapping[str, Any]
    method: str
    prompts: str
    report: GateReport
    notes: list[str] = field(default_factory=list)

    @property
    def failing(self) -> list[Decision]:
        return self.report.failing

    @property
    def exit_code(self) -> int:
        return self.report.exit_code

    def label(self, d: Decision) -> str:
        """A decision's name, with its method under ``--method both`` (H1 L04 is in both methods)."""
        return f"{d.method}: {d.name}" if "/" in self.method else d.name

    def to_dict(self) -> dict[str, Any]:
        r = self.report
        return {"a": dict(self.a), "b": dict(self.b), "method": self.method, "prompts": self.prompts,
                "strict": r.strict, "n_failing": len(r.failing), "failing": [self.label(d) for d in r.failing],
                "counts": r.counts(), "noise_floor": r.noise_floor,
                "skills": [d.to_dict() for d in r.skills], "hypotheses": [d.to_dict() for d in r.hypotheses],
                "units": [d.to_dict() for d in r.units], "notes": list(self.notes)}


def _side(doc: Mapping[str, Any], label: str) -> dict[str, Any]:
    model = doc.get("model") or {}
    return {"label": label, "model": model.get("name") or model.get("id"), "sha256": model.get("sha256")}


def compare(a: Mapping[str, Any], b: Mapping[str, Any], a_label: str = "A", b_label: str = "B",
            strict: bool | None = None, hypotheses: Iterable[str] | None = None) -> Comparison:
    """B against A by the gate's rule (``gate.compare_entries``, with B's gate settings: a gate run
    carries its baseline's), over the hypotheses both have (or those named); raises CircuitgateError
    when they cannot be compared (saying why)."""
    problems = incompatibilities(a, b, a_label, b_label)
    if problems:
        raise CircuitgateError(f"{a_label} and {b_label} cannot be compared: " + "; ".join(problems))
    cfg = gate_config(b if (b.get("config") or {}).get("gate") else a)
    if strict is not None:
        cfg = replace(cfg, strict=strict)
    report = compare_entries(a, b, cfg, hypotheses)
    notes = list(report.notes)
    differences = config_differences(a, b)
    if differences:
        notes.append("settings differ (verdicts may differ for that reason alone): " + "; ".join(differences))
    return Comparison(_side(a, a_label), _side(b, b_label), "/".join(method_entries(a)), _prompts(a), report, notes)


# -- formats ------------------------------------------------------------------------------------
MAX_ROWS = 15  # held units are counted, not listed; a comment lists at most this many failing ones


def _num(x: Any) -> str:
    return f"{x:+.3g}" if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else "-"


def _ci(ci: Any) -> str:
    return format_interval(ci) if ci else ""


def _shown(c: Comparison) -> list[Decision]:
    """The units worth a row: all but those held with their class (those are counted)."""
    return [d for d in c.report.units if not (d.decision == "held" and not d.class_changed)]


def _skill_rows(c: Comparison) -> list[list[str]]:
    return [[d.unit or "", d.before or "-", d.after or "-", f"{_num(d.delta)} {_ci(d.delta_ci)}".strip(),
             d.decision] for d in c.report.skills]


def _hypothesis_rows(c: Comparison) -> list[list[str]]:
    multi = "/" in c.method
    return [([d.method] if multi else []) + [d.hypothesis, d.before or "-", d.after or "-", d.decision,
                                              "" if d.decision == "held" and not d.class_changed else d.why]
            for d in c.report.hypotheses]


def _unit_rows(c: Comparison, units: list[Decision]) -> list[list[str]]:
    multi = "/" in c.method
    return [([d.method] if multi else []) + [
        d.hypothesis, d.unit or "", f"{d.before or 'absent'} -> {d.after or 'absent'}",
        f"{_num(d.effect_before)} -> {_num(d.effect_after)}", f"{_num(d.delta)} {_ci(d.delta_ci)}".strip(),
        f"{d.margin:g}" if d.margin is not None else "", f"{d.p_adj:.2g}" if d.p_adj is not None else "",
        d.decision] for d in units]


def _headers(c: Comparison) -> tuple[list[str], list[str], list[str]]:
    lead = ["method"] if "/" in c.method else []
    a, b = c.a["label"], c.b["label"]
    return (["task", f"accuracy {a}", f"accuracy {b}", "change [CI]", "decision"],
            lead + ["hypothesis", a, b, "decision", "why"],
            lead + ["hypothesis", "unit", "class", "effect", "change [CI]", "margin", "p_adj", "decision"])


def _title(c: Comparison) -> str:
    n = len(c.failing)
    what = "regressed or unresolved (strict)" if c.report.strict else "regressed"
    return f"FAIL: {n} {what}" if n else "PASS: nothing regressed"


def _sides(c: Comparison) -> str:
    def one(s: Mapping[str, Any]) -> str:
        return f"{s['label']} = {s['model']} (sha256 {str(s['sha256'])[:12]})"

    return f"{one(c.a)}; {one(c.b)}; method {c.method}; prompts {c.prompts}"


def counts_line(report: GateReport) -> str:
    """Units per decision, and the baseline's noise floor beside them."""
    n = report.counts()
    line = ", ".join(f"{n[d]} {d}" for d in DECISIONS)
    floor = _floors(report)
    return f"units: {line}" + (f"; {floor}" if floor else "")


def _floors(report: GateReport) -> str:
    """The baseline's noise floors, per method under --method both."""
    parts = [noise_floor_line(per, f" of A ({method})" if len(report.noise_floor) > 1 else " of A")
             for method, per in report.noise_floor.items() if per]
    return "; ".join(parts)


def format_table(c: Comparison) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        return ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header] + rows]

    s_head, h_head, u_head = _headers(c)
    out = [f"circuitgate compare: {_title(c)}", _sides(c), ""]
    if c.report.skills:
        out += ["skills (clean accuracy, every pair):", *table(s_head, _skill_rows(c)), ""]
    out += [*table(h_head, _hypothesis_rows(c)), ""]
    shown = _shown(c)
    out += (["units (held units with an unchanged class are counted, not listed):",
             *table(u_head, _unit_rows(c, shown)), ""] if shown else [])
    out += [counts_line(c.report), ""]
    out += [f"note: {n}" for n in c.notes]
    if c.failing:
        out.append("failing: " + ", ".join(c.label(d) for d in c.failing))
    return "\n".join(out).rstrip() + "\n"


def format_markdown(c: Comparison) -> str:
    """Short, for a pull-request comment: what fails, then the counts."""
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        cell = lambda v: v.replace("|", "\\|")  # noqa: E731 - a cell escaper, used once
        return ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header),
                *("| " + " | ".join(map(cell, r)) + " |" for r in rows)]

    s_head, h_head, u_head = _headers(c)
    out = [f"### circuitgate compare: **{_title(c)}**", "", _sides(c), ""]
    failing = c.failing
    skills = [d for d in failing if d.hypothesis == SKILLS_KEY]
    verdicts = [d for d in failing if d.hypothesis != SKILLS_KEY and d.unit is None]
    units = [d for d in failing if d.hypothesis != SKILLS_KEY and d.unit is not None]
    if skills:
        rows = [r for r, d in zip(_skill_rows(c), c.report.skills) if d in skills]
        out += ["#### Skills", "", *table(s_head, rows), ""]
    if verdicts:
        out += ["#### Verdicts", "", *(f"- `{c.label(d)}` {d.before} -> {d.after}: {d.why}" for d in verdicts), ""]
    if units:
        more = f" (first {MAX_ROWS} of {len(units)})" if len(units) > MAX_ROWS else ""
        out += [f"#### Units{more}", "", *table(u_head, _unit_rows(c, units[:MAX_ROWS])), ""]
    out += [counts_line(c.report), ""]
    out += [f"> {n}" for n in c.notes]
    return "\n".join(out).rstrip() + "\n"


def format_json(c: Comparison) -> str:
    return json.dumps(jsonable(c.to_dict()), indent=2) + "\n"


FORMATS = {"table": format_table, "markdown": format_markdown, "json": format_json}
