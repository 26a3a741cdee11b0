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

import math
from typing import Any, Mapping, Sequence

import numpy as np

from circuitgate.causal import Agreement, depth_bins, depth_profile, profile_agreement
from circuitgate.config import H4Config
from circuitgate.results import ComponentResult, HypothesisResult, combine_classes, head_id, layer_id

PROFILES = ("H1", "H2", "H5")


def depth_id(k: int) -> str:
    return f"D{k}"


def layer_interactions(interaction: Mapping[str, float], n_layers: int) -> np.ndarray:
    """Per layer: the mean interaction of its ``attn-L{i}`` and ``mlp-L{i}`` targets."""
    return np.array([(interaction[f"attn-L{i}"] + interaction[f"mlp-L{i}"]) / 2.0 for i in range(n_layers)])


def layer_classes(h5: HypothesisResult, n_layers: int) -> list[str]:
    """Per layer: the causal class of its attention and MLP together (as the ground truth's layers)."""
    return [combine_classes([h5.components[f"attn-L{i}"].cls, h5.components[f"mlp-L{i}"].cls]) for i in range(n_layers)]


def layer_profiles(results: Mapping[str, HypothesisResult], n_layers: int, n_heads: int) -> dict[str, np.ndarray]:
    """The per-layer profiles of one model's H1, H2 and H5 results."""
    h1, h2, h5 = results["H1"], results["H2"], results["H5"]
    heads = np.array([[h2.components[head_id(i, h)].effect for h in range(n_heads)] for i in range(n_layers)])
    return {
        "H1": np.array([h1.components[layer_id(i)].effect for i in range(n_layers)]),
        "H2": heads.mean(axis=1),
        "H5": layer_interactions({t: c.details["interaction"] for t, c in h5.components.items()
                                  if t.startswith(("attn-", "mlp-"))}, n_layers),
    }


def _bins(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> tuple[int, dict, dict]:
    n_bins = min(len(next(iter(a.values()))), len(next(iter(b.values()))))
    return n_bins, {k: depth_profile(v, n_bins) for k, v in a.items()}, {k: depth_profile(v, n_bins) for k, v in b.items()}


def agreement_verdict(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], cfg: H4Config) -> tuple[str, dict[str, Any]]:
    """Verdict and numbers of the agreement of two models' per-layer profiles (same keys)."""
    n_bins, pa, pb = _bins(a, b)
    numbers: dict[str, Any] = {"n_bins": n_bins, "binned_a": pa, "binned_b": pb}
    # With B bins no permutation p-value is below 1 / B!: too few bins cannot reach alpha at all.
    if 1.0 / math.factorial(n_bins) > cfg.alpha:
        numbers["reason"] = (f"{n_bins} depth bins: the smallest attainable permutation p is 1/{n_bins}! "
                             f"= {1 / math.factorial(n_bins):.3g} > alpha {cfg.alpha}")
        return "inconclusive", numbers
    agreement: Agreement = profile_agreement(pa, pb, n_perm=cfg.n_perm, seed=cfg.seed)
    numbers["agreement"] = agreement
    supported = agreement.p <= cfg.alpha and agreement.statistic > 0
    return ("supported" if supported else "not_supported"), numbers


def _binned_classes(classes: Sequence[str], n_bins: int) -> list[str]:
    bins = depth_bins(len(classes), n_bins)
    return [combine_classes([c for c, k in zip(classes, bins) if k == b]) for b in range(n_bins)]


def _agreed(binned_a: Sequence[str], binned_b: Sequence[str]) -> dict[str, str]:
    return {depth_id(b): ca if ca == cb else "none" for b, (ca, cb) in enumerate(zip(binned_a, binned_b))}


def bin_classes(classes_a: Sequence[str], classes_b: Sequence[str]) -> dict[str, str]:
    """Per depth bin: the class both models give it (their layers in the bin combined), else none."""
    n_bins = min(len(classes_a), len(classes_b))
    return _agreed(_binned_classes(classes_a, n_bins), _binned_classes(classes_b, n_bins))


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
    profiles = [layer_profiles(r, s.n_layers, s.n_heads) for r, s in zip(results, shapes)]
    verdict, numbers = agreement_verdict(profiles[0], profiles[1], cfg)
    gate = specialisation_gate(models, (results[0]["H5"], results[1]["H5"]))
    n_bins = numbers["n_bins"]
    binned = {models[0]: numbers["binned_a"], models[1]: numbers["binned_b"]}
    per_model_bins = {m: _binned_classes(layer_classes(r["H5"], s.n_layers), n_bins)
                      for m, r, s in zip(models, results, shapes)}
    bins = _agreed(*per_model_bins.values())
    agreement = numbers.get("agreement")
    p = float(agreement.p) if agreement is not None else float("nan")
    components = {}
    for b, (cid, cls) in enumerate(bins.items()):
        details = {
            "classes": {m: per_model_bins[m][b] for m in models},
            "profiles": {m: {k: float(binned[m][k][b]) for k in PROFILES} for m in models},
        }
        effect = float(np.mean([binned[m]["H5"][b] for m in models]))
        components[cid] = ComponentResult(cid, cls, effect, p, details)
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
    return HypothesisResult("H4", verdict, "cross-architecture", summary, components)


def no_second_model(model: str) -> HypothesisResult:
    """H4 cannot be judged on one model: inconclusive, saying how to name the second one."""
    reason = f"H4 compares two architectures: {model} has no registry twin; name one with --h4-model"
    return HypothesisResult("H4", "inconclusive", "cross-architecture", {"reason": reason, "headline": reason}, {})
