"""Named results shared by the analysis and the verdict layer.

A hypothesis analysis returns a ``HypothesisResult``: one verdict plus one ``ComponentResult`` per unit
(layer ``L04``, head ``L07H01``), with the numbers behind each classification.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

Verdict = Literal["supported", "not_supported", "inconclusive"]
ComponentClass = Literal["recall", "reasoning", "mixed", "none"]
CLASSES: tuple[str, ...] = ("recall", "reasoning", "mixed", "none")


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


def layer_id(layer: int) -> str:
    return f"L{layer:02d}"


def head_id(layer: int, head: int) -> str:
    return f"L{layer:02d}H{head:02d}"


def neuron_id(layer: int, neuron: int) -> str:
    return f"L{layer:02d}N{neuron:05d}"


@dataclass(frozen=True)
class ComponentResult:
    id: str
    cls: ComponentClass
    effect: float  # signed effect size of the strongest feature (d > 0: larger on reasoning)
    p_adj: float  # smallest adjusted p-value over the unit's features
    details: Mapping[str, Any] = field(default_factory=dict)
    # The effect's interval (low, high) where the method draws one; `circuitgate compare` reads it.
    effect_ci: tuple[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        # The common keys come last: a method's details never shadow them (verdicts.json schema 2).
        return {**self.details, "class": self.cls, "effect": self.effect,
                "effect_ci": None if self.effect_ci is None else [float(x) for x in self.effect_ci],
                "p_adj": self.p_adj}


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
