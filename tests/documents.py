"""Synthetic verdicts.json documents of schema 2 in the shape the suite writes, at the organism's size
(4 layers x 4 heads) or at Qwen2.5-7B's (28 x 28, 896 H5 targets): the report is tested at the size it
must stay readable at without a 7B model's weights (tests/unit/test_report.py, tests/e2e/test_browser.py)."""

from __future__ import annotations

import numpy as np

CLASSES = np.array(["recall", "reasoning", "mixed", "none"])
H1_FEATURES = {"paired": ["norm", "mean", "entropy", "magnitude", "sparsity"],
               "original": ["norm", "mean", "entropy", "concentration", "magnitude", "sparsity"]}
H2_FEATURES = ["entropy", "max", "focus", "spread", "gini"]
MODELS = ["qwen", "llama"]


def _features(rng: np.random.Generator, names: list[str]) -> dict:
    effect = rng.normal(0, 1.5, len(names))
    means = rng.uniform(0, 2, (len(names), 2))
    return {f: {"effect": float(e), "p_adj": float(rng.uniform()), "recall": float(m[0]), "reasoning": float(m[1]),
                "ci": [float(e - 0.4), float(e + 0.4)]} for f, e, m in zip(names, effect, means)}


def _unit(rng: np.random.Generator, features: list[str]) -> dict:
    feats = _features(rng, features)
    effect = max((v["effect"] for v in feats.values()), key=abs)
    return {"features": feats, "class": str(rng.choice(CLASSES)), "effect": effect,
            "effect_ci": [effect - 0.4, effect + 0.4], "p_adj": float(rng.uniform())}


def _drop(rng: np.random.Generator) -> list[float]:
    mean = float(rng.uniform(-0.05, 0.6))
    return [mean, mean - 0.08, mean + 0.08]


def _target(rng: np.random.Generator) -> dict:
    recall, reasoning = _drop(rng), _drop(rng)
    interaction = recall[0] - reasoning[0]
    return {"recall_drop": recall, "reasoning_drop": reasoning, "interaction": interaction,
            "interaction_ci": [interaction - 0.1, interaction + 0.1], "size": 1, "class": str(rng.choice(CLASSES)),
            "effect": interaction, "effect_ci": [interaction - 0.1, interaction + 0.1], "p_adj": None}


def _entry(verdict: str, method: str, summary: dict, components: dict) -> dict:
    return {"verdict": verdict, "expected": "supported", "passed": verdict == "supported", "tested": True,
            "method": method, "summary": summary, "components": components}


def hypotheses(method: str, n_layers: int = 4, n_heads: int = 4, seed: int = 0) -> dict:
    """H1-H5 entries of one method, numbers random but shaped like the suite's."""
    rng = np.random.default_rng(seed)
    layers = [f"L{i:02d}" for i in range(n_layers)]
    n_neurons = 18944 if n_layers > 4 else 256
    specific = rng.integers(0, n_neurons // 8, (n_layers, 3))  # recall, reasoning, mixed
    h3 = {lid: {"fraction": float(s.sum() / n_neurons), "n_specific": int(s.sum()), "n_recall": int(s[0]),
                "n_reasoning": int(s[1]), "n_neurons": n_neurons, "class": str(rng.choice(CLASSES)),
                "effect": 0.0, "effect_ci": None, "p_adj": float(rng.uniform())} for lid, s in zip(layers, specific)}
    h5 = {}
    for i in range(n_layers):
        h5[f"attn-L{i}"] = _target(rng)
        h5[f"mlp-L{i}"] = _target(rng)
        h5.update({f"head-L{i}H{j}": _target(rng) for j in range(n_heads)})
    for i in range(n_layers):
        for task in ("recall", "reasoning"):
            h5[f"neurons-L{i}-{task}"] = {**_target(rng), "control": {"id": f"neurons-L{i}-{task}-control"}}
    n_bins = min(n_layers, 7)
    binned = {m: {k: rng.normal(0, 1, n_bins).tolist() for k in ("H1", "H2", "H5")} for m in MODELS}
    return {
        "H1": _entry("supported", method, {"n_specialised": 2, "threshold": 1},
                     {lid: _unit(rng, H1_FEATURES[method]) for lid in layers}),
        "H2": _entry("supported", method, {"n_specialised": 3, "threshold": 1},
                     {f"L{i:02d}H{j:02d}": _unit(rng, H2_FEATURES) for i in range(n_layers) for j in range(n_heads)}),
        "H3": _entry("supported", method, {"n_specialised": 1, "threshold": 1}, h3),
        "H4": _entry("supported", "cross-architecture",
                     {"models": MODELS, "n_bins": n_bins, "binned": binned, "rho": {"H1": 0.5, "H2": None, "H5": 0.1},
                      "p": 0.04, "headline": "qwen vs llama"}, {}),
        "H5": _entry("not_supported", "causal", {"min_drop": 0.1, "headline": "no selective target"}, h5),
    }


def document(method: str = "paired", **shape) -> dict:
    doc = {
        "schema": 2, "model": {"name": "synthetic", "id": "/models/synthetic", "sha256": "ab" * 32},
        "method": method, "prompts": {"name": "organism", "sha256": "cd" * 32, "n_pairs": 64},
        "expectations": "none", "config": {"h3": {"layer_fraction": 0.05}},
    }
    if method == "both":
        doc["by_method"] = {m: hypotheses(m, **shape) for m in ("paired", "original")}
        doc["hypotheses"] = doc["by_method"]["paired"]
    else:
        doc["hypotheses"] = hypotheses(method, **shape)
    return doc
