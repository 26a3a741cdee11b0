"""Two verdicts.json documents side by side: verdict and class flips, effect changes with CIs.

``circuitgate compare A.json B.json`` prints it; ``--baseline`` judges a run by the same rule, so a
failing test and a regression in the comparison are the same thing:

- a verdict or class that changed is a **regression** (see ``circuitgate.verdicts``: the baseline is
  the expectation; an intended change is accepted by re-baselining);
- a component A had and B lacks regressed unless it was ``none``; one only B has is **added**;
- an effect **changed** when A's and B's intervals are disjoint.

Documents compare only when made with the same schema, method and prompt set (name and hash).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from circuitgate import CircuitgateError
from circuitgate.methods import canonical_method
from circuitgate.prompts import renamed_prompts
from circuitgate.verdicts import SCHEMA, format_interval, jsonable, outcome

REQUIRED_KEYS = ("schema", "method", "prompts", "hypotheses")
MAX_ROWS = 15  # effect changes shown in a table or a comment; JSON has them all


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
    if a["schema"] != b["schema"]:
        problems.append(f"schema: {a_label} {a['schema']}, {b_label} {b['schema']}")
    if a["method"] != b["method"]:
        problems.append(f"method: {a_label} {a['method']}, {b_label} {b['method']}")
    pa, pb = a["prompts"], b["prompts"]
    if (pa.get("name"), pa.get("sha256")) != (pb.get("name"), pb.get("sha256")):
        problems.append(f"prompt set: {a_label} {_prompts(a)}, {b_label} {_prompts(b)}")
    return problems


def load_baseline(path: str | Path) -> dict[str, Any]:
    """A ``--baseline`` document, its errors prefixed with the option."""
    try:
        return load_document(path)
    except CircuitgateError as e:
        raise CircuitgateError(f"--baseline: {e}") from None


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


def method_entries(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """method -> {hypothesis: entry}: each method's under ``--method both``, else the one method's."""
    return dict(doc["by_method"]) if "by_method" in doc else {doc["method"]: doc["hypotheses"]}


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _ci(c: Mapping[str, Any] | None) -> list[float] | None:
    ci = (c or {}).get("effect_ci")
    return list(ci) if ci and all(_finite(v) for v in ci) else None


@dataclass(frozen=True)
class Change:
    """One hypothesis verdict or one component class in A and in B."""

    method: str
    hypothesis: str
    component: str | None  # None: the hypothesis's verdict
    before: str | None
    after: str | None
    outcome: str
    effect_before: float | None = None
    ci_before: list[float] | None = None
    effect_after: float | None = None
    ci_after: list[float] | None = None

    @property
    def delta(self) -> float | None:
        if _finite(self.effect_before) and _finite(self.effect_after):
            return self.effect_after - self.effect_before
        return None

    @property
    def disjoint(self) -> bool:
        """The effect moved beyond both intervals' reach: A's and B's intervals do not overlap."""
        a, b = self.ci_before, self.ci_after
        return a is not None and b is not None and (b[0] > a[1] or b[1] < a[0])

    @property
    def name(self) -> str:
        return self.hypothesis if self.component is None else f"{self.hypothesis} {self.component}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "delta": self.delta, "ci_disjoint": self.disjoint}


@dataclass(frozen=True)
class Comparison:
    a: Mapping[str, Any]  # label, model, sha256
    b: Mapping[str, Any]
    method: str
    prompts: str
    hypotheses: list[Change]
    components: list[Change]  # every component of a hypothesis both documents have
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.hypotheses + self.components if c.outcome == "regression"]

    @property
    def flips(self) -> list[Change]:
        """Components whose class changed (or that vanished or appeared)."""
        return [c for c in self.components if c.outcome != "same"]

    @property
    def effect_changes(self) -> list[Change]:
        """Components whose intervals are disjoint, the largest change first."""
        moved = [c for c in self.components if c.disjoint]
        return sorted(moved, key=lambda c: -abs(c.delta or 0.0))

    def label(self, c: Change) -> str:
        """A change's name, with its method under ``--method both`` (H1 L04 is in both methods)."""
        return f"{c.method}: {c.name}" if "/" in self.method else c.name

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions else 0

    def to_dict(self) -> dict[str, Any]:
        return {"a": dict(self.a), "b": dict(self.b), "method": self.method, "prompts": self.prompts,
                "n_regressions": len(self.regressions),
                "regressions": [self.label(c) for c in self.regressions],
                "hypotheses": [c.to_dict() for c in self.hypotheses],
                "components": [c.to_dict() for c in self.components],
                "notes": list(self.notes)}


def _side(doc: Mapping[str, Any], label: str) -> dict[str, Any]:
    model = doc.get("model") or {}
    return {"label": label, "model": model.get("name") or model.get("id"), "sha256": model.get("sha256")}


def _flat(d: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(d, Mapping):
        for k, v in d.items():
            yield from _flat(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], d


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Thresholds that differ between two runs: their verdicts may differ for that reason alone."""
    fa, fb = dict(_flat(a.get("config") or {})), dict(_flat(b.get("config") or {}))
    return [f"{k} {fa.get(k)} -> {fb.get(k)}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def compare(a: Mapping[str, Any], b: Mapping[str, Any], a_label: str = "A", b_label: str = "B") -> Comparison:
    """A compared with B; raises CircuitgateError when they cannot be compared (saying why)."""
    problems = incompatibilities(a, b, a_label, b_label)
    if problems:
        raise CircuitgateError(f"{a_label} and {b_label} cannot be compared: " + "; ".join(problems))
    hyps: list[Change] = []
    comps: list[Change] = []
    notes = []
    ea, eb = method_entries(a), method_entries(b)
    for method in ea:
        ha, hb = ea[method], eb.get(method, {})
        only = sorted(set(ha) ^ set(hb))
        if only:
            notes.append(f"{method}: not in both runs, not compared: "
                         + ", ".join(f"{h} (only {a_label if h in ha else b_label})" for h in only))
        for h in sorted(set(ha) & set(hb)):
            x, y = ha[h], hb[h]
            hyps.append(Change(method, h, None, x["verdict"], y["verdict"],
                               outcome(x["verdict"], y["verdict"])))
            ca, cb = x.get("components") or {}, y.get("components") or {}
            for cid in list(ca) + [c for c in cb if c not in ca]:
                p, q = ca.get(cid), cb.get(cid)
                comps.append(Change(
                    method, h, cid, p and p["class"], q and q["class"],
                    outcome(p and p["class"], q and q["class"]),
                    p and p.get("effect"), _ci(p), q and q.get("effect"), _ci(q)))
    differences = config_differences(a, b)
    if differences:
        notes.append("thresholds differ (verdicts may differ for that reason alone): " + "; ".join(differences))
    return Comparison(_side(a, a_label), _side(b, b_label), "/".join(ea), _prompts(a), hyps, comps, notes)


# -- formats ------------------------------------------------------------------------------------
def _num(x: Any) -> str:
    return f"{x:+.3g}" if _finite(x) else "-"


def _effect(x: Any, ci: list[float] | None) -> str:
    return _num(x) + (f" {format_interval(ci)}" if ci else "")


def _rows(c: Comparison) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    multi = "/" in c.method  # --method both: name the method on every row

    def who(x: Change) -> list[str]:
        return ([x.method] if multi else []) + [x.hypothesis]

    hyps = [who(x) + [x.before or "-", x.after or "-", x.outcome] for x in c.hypotheses]
    flips = [who(x) + [x.component or "", x.before or "absent", x.after or "absent", x.outcome,
                       _effect(x.effect_before, x.ci_before), _effect(x.effect_after, x.ci_after)] for x in c.flips]
    moved = [who(x) + [x.component or "", x.after or "-", _effect(x.effect_before, x.ci_before),
                       _effect(x.effect_after, x.ci_after), _num(x.delta)] for x in c.effect_changes[:MAX_ROWS]]
    return hyps, flips, moved


def _headers(c: Comparison) -> tuple[list[str], list[str], list[str]]:
    lead = (["method"] if "/" in c.method else []) + ["hypothesis"]
    a, b = c.a["label"], c.b["label"]
    return (lead + [a, b, "outcome"],
            lead + ["component", a, b, "outcome", f"effect {a} [CI]", f"effect {b} [CI]"],
            lead + ["component", "class now", f"effect {a} [CI]", f"effect {b} [CI]", "change"])


def _title(c: Comparison) -> str:
    n = len(c.regressions)
    return f"{n} regression{'s' if n != 1 else ''}" if n else "no regressions"


def _sides(c: Comparison) -> str:
    def one(s: Mapping[str, Any]) -> str:
        return f"{s['label']} = {s['model']} (sha256 {str(s['sha256'])[:12]})"

    return f"{one(c.a)}; {one(c.b)}; method {c.method}; prompts {c.prompts}"


def _more(c: Comparison) -> str:
    n = len(c.effect_changes)
    return f" (largest {MAX_ROWS} of {n})" if n > MAX_ROWS else ""


def format_table(c: Comparison) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
        return ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in [header] + rows]

    hyps, flips, moved = _rows(c)
    h_head, f_head, m_head = _headers(c)
    out = [f"circuitgate compare: {_title(c)}", _sides(c), "", *table(h_head, hyps), ""]
    out += ["component flips:", *table(f_head, flips), ""] if flips else ["component flips: none", ""]
    if moved:
        out += [f"effect changes (intervals disjoint){_more(c)}:", *table(m_head, moved), ""]
    else:
        out += ["effect changes (intervals disjoint): none", ""]
    out += [f"note: {n}" for n in c.notes]
    if c.regressions:
        out.append("regressed: " + ", ".join(c.label(x) for x in c.regressions))
    return "\n".join(out).rstrip() + "\n"


def format_markdown(c: Comparison) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        cell = lambda v: v.replace("|", "\\|")  # noqa: E731 - a cell escaper, used once
        return ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header),
                *("| " + " | ".join(map(cell, r)) + " |" for r in rows)]

    hyps, flips, moved = _rows(c)
    h_head, f_head, m_head = _headers(c)
    verdict = f"**FAIL: {_title(c)}**" if c.regressions else "**PASS: no regressions**"
    out = [f"### circuitgate compare: {verdict}", "", _sides(c), "", *table(h_head, hyps), ""]
    if c.regressions:
        out += ["Regressed: " + ", ".join(f"`{c.label(x)}`" for x in c.regressions), ""]
    out += ["#### Component flips", "", *table(f_head, flips), ""] if flips else ["No component flips.", ""]
    if moved:
        out += [f"#### Effect changes (intervals disjoint){_more(c)}", "", *table(m_head, moved), ""]
    else:
        out += ["No effect moved beyond its interval.", ""]
    out += [f"> {n}" for n in c.notes]
    return "\n".join(out).rstrip() + "\n"


def format_json(c: Comparison) -> str:
    return json.dumps(jsonable(c.to_dict()), indent=2) + "\n"


FORMATS = {"table": format_table, "markdown": format_markdown, "json": format_json}

