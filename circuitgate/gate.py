"""A gate's decisions: a run (B) judged against a baseline (A) on change, not on class
(docs/design.md, "Gating"). Pure functions over verdicts.json entries; the judge of a gate run and
`circuitgate compare` call the same ones, so a failing test and a named regression are one thing.

Per unit (a layer, head, target or depth bin a hypothesis classified), the change of its effect
B - A with an interval, from what both runs stored (``stats.change``: per-pair values on the same
pairs, bootstrap replicates, else intervals), tested against the hypothesis's margin
(``gate.margins``):

- **regressed**: its class changed *and* its effect moved beyond the margin, significantly after one
  Benjamini-Hochberg correction across the hypothesis's units;
- **held**: the change is shown to lie within the margin (an equivalence test at ``gate.alpha``; no
  correction: "every unit held" is an intersection-union claim, Berger 1982);
- **unresolved**: neither; shown, and failing only under ``gate.strict``;
- **added**: in B only.

A unit with nothing to compute a change from (a document from before schema 3) is judged by its
class alone, as the gate did before: a changed class regresses.

Skills (clean accuracy per task, paired over every pair of the prompt set) are judged one-sided: a
drop beyond ``gate.margins.clean_accuracy``, significant after BH over the two tasks, regresses; a
drop shown smaller than the margin holds. A hypothesis verdict that flips regresses only when what
decides it moved: its count of specialised units still crosses the threshold with only the
regressed units' new classes, its skill regressed (H5's clean-accuracy floor), or its inputs
regressed (H4: H5's verdict or a depth bin). Otherwise the flip crossed a threshold by less than its
uncertainty: unresolved, with the number, its change and interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
from scipy import stats as sps

from circuitgate import CircuitgateError
from circuitgate.config import GateConfig, gate_settings
from circuitgate.encoding import unpack_bits, unpack_floats
from circuitgate.stats import (Change, change_of_dz, change_of_intervals, change_of_means, change_of_replicates, d_z,
                               fdr_correction)
from circuitgate.judging import SCHEMA, noise_floors
from circuitgate.vocabulary import HYPOTHESES, SKILLS

DECISIONS = ("regressed", "unresolved", "added", "held")  # the order a report lists them in
SKILLS_KEY = "skills"  # the "hypothesis" of the clean-accuracy rows
LEGACY_NOTE = ("a document has no per-pair values (a verdicts.json from before schema 3): judged by the old rule, "
               "any change of a class or verdict regresses")


@dataclass(frozen=True)
class Decision:
    """One skill, hypothesis verdict or unit of A compared with B."""

    method: str
    hypothesis: str  # H1..H5, or "skills"
    unit: str | None  # a component id, a task for skills, None for the hypothesis's verdict
    before: str | None  # A's class or verdict (a skill: its accuracy, formatted); None: absent
    after: str | None
    decision: str  # one of DECISIONS
    why: str  # one line: what decided it
    effect_before: float | None = None
    effect_after: float | None = None
    delta: float | None = None
    delta_ci: tuple[float, float] | None = None
    margin: float | None = None
    p_adj: float | None = None  # of "moved beyond the margin", after the correction
    basis: str = "class"  # pairs | replicates | intervals | class: what the change was computed from

    @property
    def name(self) -> str:
        if self.hypothesis == SKILLS_KEY:
            return f"{self.unit} accuracy"
        return self.hypothesis if self.unit is None else f"{self.hypothesis} {self.unit}"

    @property
    def class_changed(self) -> bool:
        return self.before != self.after

    def failing(self, strict: bool) -> bool:
        return self.decision == "regressed" or (strict and self.decision == "unresolved")

    def describe(self) -> str:
        """One line, as the judge fails a test and the terminal summary names a regression."""
        if self.hypothesis == SKILLS_KEY:
            return f"{self.name} {self.before} -> {self.after}, {_change(self)}: {self.decision} ({self.why})"
        what = f"{self.before or 'absent'} -> {self.after or 'absent'}"
        if self.effect_before is not None or self.effect_after is not None:
            what += f", effect {_num(self.effect_before)} -> {_num(self.effect_after)}"
        if self.delta is not None:
            what += f", change {_change(self)}"
        return f"{self.name} {self.decision}: {what} ({self.why})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "name": self.name}


def _num(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:+.3g}"


def _change(d: Decision) -> str:
    ci = f" [{d.delta_ci[0]:+.3g}, {d.delta_ci[1]:+.3g}]" if d.delta_ci else ""
    return f"{_num(d.delta)}{ci}"


def gate_config(doc: Mapping[str, Any] | None) -> GateConfig:
    """The gate settings a document's config carries (a run made with --baseline carries its
    baseline's), else the defaults."""
    data = ((doc or {}).get("config") or {}).get("gate")
    return gate_settings(data, "the document's gate config") if isinstance(data, Mapping) else GateConfig()


def _metric(doc: Mapping[str, Any]) -> str:
    return str(((doc.get("config") or {}).get("h5") or {}).get("metric", "accuracy"))


# -- units ------------------------------------------------------------------------------------------
def _kind(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    return entry.get("uncertainty") or {}


def _paired(ua: Mapping[str, Any], ub: Mapping[str, Any]) -> bool:
    """The two runs' values line up pair by pair: the same pairs in the same order (and, for
    replicates, the same resamples of them)."""
    same = ua.get("pairs") is not None and ua.get("pairs") == ub.get("pairs")
    if ua.get("kind") == "replicates":
        same = same and ua.get("seed") == ub.get("seed") and ua.get("resamples") == ub.get("resamples")
    return same


def _values(comps: Mapping[str, Mapping[str, Any]], ids: Sequence[str], key: str, n: int | None) -> np.ndarray:
    return np.stack([unpack_floats(comps[c][key], n) for c in ids], axis=1)


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _ci(c: Mapping[str, Any]) -> list[float] | None:
    ci = c.get("effect_ci")
    return list(ci) if ci and len(ci) == 2 and all(_finite(v) for v in ci) else None


@dataclass(frozen=True)
class _Measured:
    """One unit's change and what it compared: the two values of its statistic and the basis."""

    change: Change
    column: int
    basis: str
    before: float
    after: float


def _feature(c: Mapping[str, Any], name: str) -> tuple[float, list[float]] | None:
    """A unit's (effect, interval) of one feature (H1, H2: ``features``), or None."""
    f = (c.get("features") or {}).get(name) or {}
    ci = f.get("ci")
    ok = _finite(f.get("effect")) and ci and len(ci) == 2 and all(_finite(v) for v in ci)
    return (float(f["effect"]), list(ci)) if ok else None


def _changes(ea: Mapping[str, Any], eb: Mapping[str, Any], ids: list[str], margin: float,
             cfg: GateConfig) -> dict[str, _Measured]:
    """unit -> its change, for the units both runs measured and stored something to compare by; each
    basis computed once over all its units (module docstring)."""
    ca, cb = ea["components"], eb["components"]
    ua, ub = _kind(ea), _kind(eb)
    out: dict[str, _Measured] = {}
    paired = _paired(ua, ub)
    kind = ua.get("kind") if ua.get("kind") == ub.get("kind") and ua.get("statistic") == ub.get("statistic") else None
    key = {"pairs": "pair_values", "replicates": "replicates"}.get(kind or "")
    # Per-pair values compare when they are of the same quantity: the same feature for H1 and H2 (a gate
    # keeps its baseline's; two runs on their own may each keep another, and then compare that
    # feature's intervals below).
    stored = [c for c in ids if key and key in ca[c] and key in cb[c]
              and ca[c].get("pair_feature") == cb[c].get("pair_feature")]
    if stored and kind == "pairs":
        na, nb = len(ua.get("pairs") or []) or None, len(ub.get("pairs") or []) or None
        a, b = _values(ca, stored, key, na), _values(cb, stored, key, nb)
        if ua.get("statistic") == "d_z":
            ch = change_of_dz(a, b, margin, paired=paired, n_boot=cfg.n_boot, seed=cfg.seed, level=cfg.level)
            before, after = d_z(a), d_z(b)
        else:
            ch = change_of_means(a, b, margin, paired=paired, level=cfg.level)
            before, after = a.mean(axis=0), b.mean(axis=0)
        out.update({c: _Measured(ch, j, "pairs", float(before[j]), float(after[j])) for j, c in enumerate(stored)})
    elif stored and kind == "replicates":
        ra, rb = _values(ca, stored, key, ua.get("resamples")), _values(cb, stored, key, ub.get("resamples"))
        before, after = [ca[c]["effect"] for c in stored], [cb[c]["effect"] for c in stored]
        ch = change_of_replicates(before, after, ra, rb, margin, paired=paired, level=cfg.level)
        out.update({c: _Measured(ch, j, "replicates", before[j], after[j]) for j, c in enumerate(stored)})
    rest = {}
    for c in ids:
        if c in out:
            continue
        feature = ca[c].get("pair_feature")
        pa, pb = (_feature(ca[c], feature), _feature(cb[c], feature)) if feature else (None, None)
        if pa and pb:
            rest[c] = (pa, pb)
        elif _ci(ca[c]) and _ci(cb[c]) and _finite(ca[c].get("effect")) and _finite(cb[c].get("effect")):
            rest[c] = ((ca[c]["effect"], _ci(ca[c])), (cb[c]["effect"], _ci(cb[c])))
    if rest:
        units = list(rest)
        (ea_, cia), (eb_, cib) = [list(zip(*[rest[c][i] for c in units])) for i in (0, 1)]
        ch = change_of_intervals(ea_, cia, eb_, cib, margin, level=cfg.level)
        out.update({c: _Measured(ch, j, "intervals", float(ea_[j]), float(eb_[j])) for j, c in enumerate(units)})
    return out


def judge_units(method: str, hypothesis: str, ea: Mapping[str, Any], eb: Mapping[str, Any], margin: float,
                cfg: GateConfig, by_class: bool = False) -> list[Decision]:
    """Every unit of a hypothesis in A or B, decided (module docstring); ``by_class``: by the old rule
    (a document from before schema 3 on either side)."""
    ca, cb = ea.get("components") or {}, eb.get("components") or {}
    both = [c for c in ca if c in cb]
    changes = _changes(ea, eb, both, margin, cfg) if both and not by_class else {}
    tested = list(changes)
    p_adj = {}
    if tested:
        p = np.array([changes[c].change.p_moved[changes[c].column] for c in tested])
        p_adj = dict(zip(tested, fdr_correction(p, cfg.alpha, "bh").p_adj))
    out = []
    for c in list(ca) + [c for c in cb if c not in ca]:
        a, b = ca.get(c), cb.get(c)
        before, after = a and a.get("class"), b and b.get("class")
        common = {"effect_before": a and a.get("effect"), "effect_after": b and b.get("effect"), "margin": margin}
        if a is None:
            out.append(Decision(method, hypothesis, c, None, after, "added", "only in B", **common))
            continue
        if b is None:
            decision, why = ("held", "not in B; it was none") if before == "none" else (
                ("regressed", "not in B (judged by the old rule)") if by_class else ("unresolved", "not measured in B"))
            out.append(Decision(method, hypothesis, c, before, None, decision, why, **common))
            continue
        if c not in changes:
            if before != after:
                out.append(Decision(method, hypothesis, c, before, after, "regressed",
                                    "no per-pair values or interval to compare: judged by its class", **common))
            else:
                out.append(Decision(method, hypothesis, c, before, after, "held", "same class (judged by class)",
                                    **common))
            continue
        m = changes[c]
        ch, j = m.change, m.column
        moved, within = p_adj[c] <= cfg.alpha, ch.p_within[j] <= cfg.alpha
        if before != after and moved:
            decision, why = "regressed", f"class changed and the effect moved beyond the margin {margin:g}"
        elif within:
            decision = "held"
            why = (f"class changed, but the effect held within the margin {margin:g}" if before != after
                   else f"effect within the margin {margin:g}")
        elif moved:
            decision, why = "unresolved", f"the effect moved beyond the margin {margin:g}, the class did not change"
        else:
            decision = "unresolved"
            why = (f"class changed; the change is neither beyond nor shown within the margin {margin:g}"
                   if before != after else f"not shown within the margin {margin:g}")
        # The effect shown is the statistic compared: for H1 and H2 the d_z of the feature both kept.
        out.append(Decision(method, hypothesis, c, before, after, decision, why, delta=float(ch.delta[j]),
                            delta_ci=(float(ch.ci_low[j]), float(ch.ci_high[j])), p_adj=float(p_adj[c]),
                            basis=m.basis, effect_before=m.before, effect_after=m.after, margin=margin))
    return out


# -- skills ---------------------------------------------------------------------------------------
def judge_skills(method: str, a: Mapping[str, Any], b: Mapping[str, Any], cfg: GateConfig) -> list[Decision]:
    """Clean accuracy per task, paired over the prompt set's pairs: a drop beyond the margin regresses
    (one-sided, BH over the tasks); a drop shown smaller than the margin holds. Empty when a document
    does not record which pairs it answered (before schema 3)."""
    pa, pb = a.get("clean_correct"), b.get("clean_correct")
    if not pa or not pb or set(pa) != set(pb):
        return []
    m = cfg.margins.clean_accuracy
    tasks = [t for t in SKILLS if t in pa]
    xa = np.stack([unpack_bits(pa[t]) for t in tasks], axis=1).astype(float)
    xb = np.stack([unpack_bits(pb[t]) for t in tasks], axis=1).astype(float)
    if xa.shape != xb.shape:
        raise CircuitgateError(f"clean_correct covers {xa.shape[0]} and {xb.shape[0]} pairs: not the same prompt set")
    ch = change_of_means(xa, xb, m, paired=True, level=cfg.level)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (ch.delta + m) / ch.se
    p_drop = np.where(ch.se > 0, sps.t.cdf(z, ch.df), np.where(ch.delta < -m, 0.0, 1.0))  # H0: drop <= m
    p_held = np.where(ch.se > 0, sps.t.sf(z, ch.df), np.where(ch.delta > -m, 0.0, 1.0))  # H0: drop >= m
    p_adj = fdr_correction(p_drop, cfg.alpha, "bh").p_adj
    out = []
    for j, t in enumerate(tasks):
        acc_a, acc_b = float(xa[:, j].mean()), float(xb[:, j].mean())
        if p_adj[j] <= cfg.alpha:
            decision, why = "regressed", f"dropped by more than the margin {m:g}"
        elif p_held[j] <= cfg.alpha:
            decision, why = "held", f"any drop is within the margin {m:g}"
        else:
            decision, why = "unresolved", f"a drop of up to the margin {m:g} or more cannot be told apart"
        out.append(Decision(method, SKILLS_KEY, t, f"{acc_a:.2f}", f"{acc_b:.2f}", decision, why,
                            effect_before=acc_a, effect_after=acc_b, delta=float(ch.delta[j]),
                            delta_ci=(float(ch.ci_low[j]), float(ch.ci_high[j])), margin=m, p_adj=float(p_adj[j]),
                            basis="pairs"))
    return out


# -- hypothesis verdicts ---------------------------------------------------------------------------
def _supported(hypothesis: str, classes: Mapping[str, str], threshold: int) -> bool:
    """The count rule behind a supported verdict: H5 needs selective units of both skills, H1-H3
    enough specialised units."""
    if hypothesis == "H5":
        return min(sum(c == s for c in classes.values()) for s in SKILLS) >= threshold
    return sum(c != "none" for c in classes.values()) >= threshold


def _count(hypothesis: str, classes: Mapping[str, str]) -> str:
    if hypothesis == "H5":
        return ", ".join(f"{s}-selective {sum(c == s for c in classes.values())}" for s in SKILLS)
    return f"specialised {sum(c != 'none' for c in classes.values())}"


def judge_verdict(method: str, hypothesis: str, ea: Mapping[str, Any], eb: Mapping[str, Any],
                  units: Sequence[Decision], skills: Sequence[Decision],
                  h5: Decision | None = None, by_class: bool = False) -> Decision:
    """A hypothesis's verdict in A and B (module docstring): a flip regresses only when what decides
    it moved; ``by_class``: any flip regresses (the old rule)."""
    va, vb = ea["verdict"], eb["verdict"]
    if va == vb:
        return Decision(method, hypothesis, None, va, vb, "held", "same verdict")
    if by_class:
        return Decision(method, hypothesis, None, va, vb, "regressed", "the verdict changed (judged by the old rule)")
    regressed = [u for u in units if u.decision == "regressed"]
    named = "; ".join(u.name for u in regressed[:3]) + (f" and {len(regressed) - 3} more" if len(regressed) > 3 else "")
    if hypothesis == "H4":
        if (h5 is not None and h5.decision == "regressed") or regressed:
            return Decision(method, hypothesis, None, va, vb, "regressed",
                            "its inputs regressed: " + "; ".join(filter(None, [
                                "H5" if h5 is not None and h5.decision == "regressed" else "", named])))
        return Decision(method, hypothesis, None, va, vb, "unresolved",
                        "neither H5's verdict nor any depth bin regressed")
    if "inconclusive" in (va, vb):
        reason = (eb if vb == "inconclusive" else ea)["summary"].get("reason") or ""
        if hypothesis == "H5" and reason.startswith("clean accuracy"):
            crossed = "; ".join(f"{s.name} {s.before} -> {s.after}, {_change(s)} ({s.decision})" for s in skills)
            if any(s.decision == "regressed" for s in skills):
                return Decision(method, hypothesis, None, va, vb, "regressed", f"a skill regressed: {crossed}")
            return Decision(method, hypothesis, None, va, vb, "unresolved",
                            f"clean accuracy crossed h5.min_clean_accuracy by less than its uncertainty: {crossed}")
        return Decision(method, hypothesis, None, va, vb, "regressed", f"the verdict's reason changed: {reason}")
    threshold = eb["summary"].get("threshold", ea["summary"].get("threshold"))
    ca = {c: e["class"] for c, e in (ea.get("components") or {}).items()}
    cb = {c: e["class"] for c, e in (eb.get("components") or {}).items()}
    if not isinstance(threshold, int) or not ca or _supported(hypothesis, ca, threshold) != (va == "supported"):
        return Decision(method, hypothesis, None, va, vb, "regressed",
                        "the baseline's verdict does not follow from its classes by the count rule: judged by the verdict")
    counterfactual = {**ca, **{u.unit: cb[u.unit] for u in regressed if u.unit in cb}}
    if _supported(hypothesis, counterfactual, threshold) == (vb == "supported"):
        return Decision(method, hypothesis, None, va, vb, "regressed",
                        f"{_count(hypothesis, ca)} -> {_count(hypothesis, cb)} (threshold {threshold}), "
                        f"explained by the regressed units: {named}")
    flipped = [u for u in units if u.class_changed]
    return Decision(method, hypothesis, None, va, vb, "unresolved",
                    f"{_count(hypothesis, ca)} -> {_count(hypothesis, cb)} (threshold {threshold}) crossed by units "
                    f"whose effects did not regress ({len(flipped)} changed class: "
                    + ", ".join(f"{u.unit} {u.decision}" for u in flipped[:4]) + (", ..." if len(flipped) > 4 else "")
                    + ")")


# -- a whole comparison ---------------------------------------------------------------------------
def method_entries(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """method -> {hypothesis: entry}: each method's under ``--method both``, else the one method's."""
    return dict(doc["by_method"]) if "by_method" in doc else {doc["method"]: doc["hypotheses"]}


@dataclass(frozen=True)
class GateReport:
    """A baseline A and a run B compared: skills, hypothesis verdicts and units, each decided."""

    skills: list[Decision]
    hypotheses: list[Decision]
    units: list[Decision]
    strict: bool
    noise_floor: dict[str, dict[str, float]]  # method -> hypothesis -> A's expected chance flips
    notes: list[str] = field(default_factory=list)

    @property
    def decisions(self) -> list[Decision]:
        return self.skills + self.hypotheses + self.units

    @property
    def failing(self) -> list[Decision]:
        """What fails the gate, skills first, then by evidence (smallest adjusted p, largest change)."""
        fails = [d for d in self.decisions if d.failing(self.strict)]
        return sorted(fails, key=_evidence)

    def counts(self, method: str | None = None) -> dict[str, int]:
        """Units per decision (skills and verdicts apart)."""
        units = [u for u in self.units if method is None or u.method == method]
        return {d: sum(u.decision == d for u in units) for d in DECISIONS}

    @property
    def exit_code(self) -> int:
        return 1 if self.failing else 0


def _evidence(d: Decision) -> tuple:
    order = (0 if d.hypothesis == SKILLS_KEY else 1 if d.unit is None else 2)
    return (DECISIONS.index(d.decision), order, d.p_adj if d.p_adj is not None else 1.0, -abs(d.delta or 0.0))


def ordered(decisions: Iterable[Decision]) -> list[Decision]:
    """Regressions first, skills before verdicts before units, each by evidence."""
    return sorted(decisions, key=_evidence)


def compare_entries(a: Mapping[str, Any], b: Mapping[str, Any], cfg: GateConfig,
                    hypotheses: Iterable[str] | None = None) -> GateReport:
    """B against A (two verdicts.json documents, or a baseline and a run's document so far), over the
    hypotheses both have (or those named)."""
    hyps, units, notes = [], [], []
    floor: dict[str, dict[str, float]] = {}
    legacy = min(int(a.get("schema", SCHEMA)), int(b.get("schema", SCHEMA))) < 3
    if legacy:
        notes.append(LEGACY_NOTE)
    ea_all, eb_all = method_entries(a), method_entries(b)
    metric = _metric(b if b.get("config") else a)
    skills = judge_skills(next(iter(ea_all)), a, b, cfg)  # one clean accuracy per run, whatever the methods
    for method, ha in ea_all.items():
        hb = eb_all.get(method, {})
        wanted = set(hypotheses) if hypotheses is not None else set(ha) | set(hb)
        only = sorted((set(ha) ^ set(hb)) & wanted & set(HYPOTHESES))
        if only and hypotheses is None:
            notes.append(f"{method}: not in both runs, not compared: "
                         + ", ".join(f"{h} ({'A' if h in ha else 'B'} only)" for h in only))
        # A project's own hypotheses (docs/own-hypothesis.md) have no margin for a change of their
        # units: each run judged them against their own expectations, and the gate leaves them alone.
        own = sorted(((set(ha) | set(hb)) & wanted) - set(HYPOTHESES))
        if own:
            notes.append(f"{method}: own hypotheses are judged by their expectations, not by change: {', '.join(own)}")
        floor[method] = noise_floors({h: ha[h] for h in (set(ha) & set(hb) & wanted) - set(own)})
        decided: dict[str, Decision] = {}
        for h in sorted((set(ha) & set(hb) & wanted) - set(own), key=lambda h: (h == "H4", h)):  # H4 reads H5's decision
            u = judge_units(method, h, ha[h], hb[h], cfg.margins.of(h, metric), cfg, legacy)
            decided[h] = judge_verdict(method, h, ha[h], hb[h], u, skills, decided.get("H5"), legacy)
            hyps.append(decided[h])
            units += u
    return GateReport(skills, sorted(hyps, key=lambda d: (d.method, d.hypothesis)), ordered(units),
                      cfg.strict, floor, notes)
