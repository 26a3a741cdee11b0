"""Named results shared by the analysis and the verdict layer.

A hypothesis analysis returns a ``HypothesisResult``: one verdict plus one ``ComponentResult`` per unit
(layer ``L04``, head ``L07H01``), with the numbers behind each classification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from circuitgate.encoding import pack_floats
from circuitgate.vocabulary import ComponentClass, Verdict


def combine_classes(classes: Sequence[str]) -> str:
    """One class for a unit made of parts (a layer = its attention + its MLP; a depth bin = its layers)."""
    kinds = {c for c in classes if c != "none"}
    if not kinds:
        return "none"
    return kinds.pop() if len(kinds) == 1 else "mixed"


def class_counts(cls: Any) -> dict[str, int]:
    """A summary's counts of specialised units by type, from an array of unit classes."""
    return {
        "n_specialised": int((cls != "none").sum()),
        "n_recall": int((cls == "recall").sum()),
        "n_reasoning": int((cls == "reasoning").sum()),
        "n_mixed": int((cls == "mixed").sum()),
    }


@dataclass(frozen=True)
class ComponentResult:
    id: str
    cls: ComponentClass
    # Signed; what it measures is the hypothesis's (docs/design.md, "Effects"): H1 and H2 the effect
    # size of the unit's strongest feature (> 0: larger on reasoning prompts, features oriented as the
    # method orients them), H3 the signed share of the layer's neurons (> 0: more reasoning- than
    # recall-specific), H4 the depth bin's mean causal interaction and H5 the task x target interaction
    # (recall drop minus reasoning drop: > 0 hurts recall more; the opposite sign convention to H1's).
    effect: float
    p_adj: float  # H1-H3: smallest adjusted p over the unit's features; NaN where none decides (H4 bins, H5)
    details: Mapping[str, Any] = field(default_factory=dict)
    # The effect's interval (low, high) where the method draws one; `circuitgate compare` reads it.
    effect_ci: tuple[float, float] | None = None
    # What a gate compares with another run's (docs/design.md, "Gating"): the per-pair values whose
    # mean or d_z is the effect, or bootstrap replicates of the effect; the hypothesis's
    # ``uncertainty`` says which, over which pairs.
    pair_values: Any = field(default=None, repr=False, compare=False)
    replicates: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        # The common keys come last: a method's details never shadow them (verdicts.json schema 3).
        out = {**self.details, "class": self.cls, "effect": self.effect,
               "effect_ci": None if self.effect_ci is None else [float(x) for x in self.effect_ci],
               "p_adj": self.p_adj}
        if self.pair_values is not None:
            out["pair_values"] = pack_floats(self.pair_values)
        if self.replicates is not None:
            out["replicates"] = pack_floats(self.replicates)
        return out


def feature_details(names: Sequence[str], effect: Any, p_adj: Any, recall: Any, reasoning: Any,
                    ci: Any = None) -> dict[str, dict[str, Any]]:
    """One unit's per-feature numbers: effect, adjusted p, the mean on each task and, when drawn, the
    effect's interval. Arguments are per-feature sequences; ``ci`` is (lows, highs)."""
    out = {}
    for i, f in enumerate(names):
        entry = {"effect": float(effect[i]), "p_adj": float(p_adj[i]),
                 "recall": float(recall[i]), "reasoning": float(reasoning[i])}
        if ci is not None:
            entry["ci"] = [float(ci[0][i]), float(ci[1][i])]
        out[f] = entry
    return out


@dataclass(frozen=True)
class HypothesisResult:
    hypothesis: str
    verdict: Verdict
    method: str
    summary: Mapping[str, Any]
    components: Mapping[str, ComponentResult]
    # Arrays behind the result that later analyses read (H3's neuron masks for H5); never serialised.
    arrays: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # What its components' ``pair_values`` or ``replicates`` are (``uncertainty``: docs/design.md,
    # "Gating"); empty when they have none.
    uncertainty: Mapping[str, Any] = field(default_factory=dict)
