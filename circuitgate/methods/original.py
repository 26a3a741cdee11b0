"""``--method original`` (alias ``seed``): the original H1/H2/H3 analyses, reproduced exactly (docs/method.md "H1"-"H3").

The flaws are kept on purpose so that the paper's numbers can be reproduced; each is marked with its
number from docs/method.md "Its flaws". Everything is vectorised over units
(layers, heads); the only Python loops run over the features/metrics, the folds, and the assembly of
the per-component result records.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from circuitgate import CircuitgateError
from circuitgate.activations import Activations, validate_sides
from circuitgate.config import H1Config, H2Config, H3Config
from circuitgate.features import H1_FEATURES, H2_METRICS, h1_layer_features, h2_head_metrics
from circuitgate.ids import head_id, layer_id, neuron_id
from circuitgate.results import ComponentResult, HypothesisResult, class_counts, feature_details
from circuitgate.stats import (benjamini_hochberg, bootstrap_d_ci, cohens_d, kfold_indices, mann_whitney_u,
                               mann_whitney_u_dense, nan_moments)

METHOD = "original"
H1_EPS = 1e-10  # added to the pooled SD in H1's d, as the original code did
TOP_HEADS = 3  # the paper reports the top three recall and reasoning heads
def _classify(up: np.ndarray, down: np.ndarray) -> np.ndarray:
    """Unit types from counts of reasoning-signed (``up``) and recall-signed (``down``) evidence."""
    return np.select([up > down, down > up], ["reasoning", "recall"], "mixed")


def _h1_layers(reasoning: np.ndarray, recall: np.ndarray, cfg: H1Config) -> dict[str, np.ndarray]:
    """H1 statistics and layer classes from feature arrays [P, n_features, L] (docs/method.md "H1")."""
    d = cohens_d(reasoning, recall, ddof=0, eps=H1_EPS)  # [n_features, L]; population variances
    p = mann_whitney_u(reasoning, recall).p  # unpaired on paired data (flaw 1)
    reject, p_adj = benjamini_hochberg(p, cfg.alpha)  # one family per feature, over the layers
    significant = reject & (np.abs(d) > cfg.d_significant)
    vote = significant & (np.abs(d) > cfg.d_vote)
    # Entropy and concentration are one feature twice: their votes have opposite signs (flaw 4).
    up, down = (vote & (d > 0)).sum(axis=0), (vote & (d < 0)).sum(axis=0)
    specialised = up + down >= cfg.min_votes
    cls = np.where(specialised, _classify(up, down), "none")
    return {"d": d, "p_adj": p_adj, "vote": vote, "cls": cls}


def analyse_h1(recall: Activations, reasoning: Activations, cfg: H1Config) -> HypothesisResult:
    """H1 (layers) by the original method: six features per layer, unpaired tests, vote-based layer
    types, and the original "cross-validation" over KFold training parts (docs/method.md "H1").

    A layer's ``fold_agreement`` is the share of folds giving it its full-data class (for a
    specialised layer: specialised with the same type); it is ``consistent`` when that share reaches
    ``cfg.consistency``. ``summary["consistency"]`` is the share of specialised layers that are
    consistent (None when none is specialised). The verdict counts specialised layers only.
    """
    validate_sides(recall, reasoning, ("resid", "attn", "gate"))
    n_pairs, n_layers = recall.n_prompts, recall.n_layers
    if n_pairs < cfg.n_folds:
        raise CircuitgateError(f"H1 cross-validation needs at least h1.n_folds={cfg.n_folds} pairs, got {n_pairs}")
    fr, fc = h1_layer_features(reasoning), h1_layer_features(recall)
    xr = np.stack([fr[f] for f in H1_FEATURES], axis=1)  # [P, n_features, L]
    xc = np.stack([fc[f] for f in H1_FEATURES], axis=1)
    full = _h1_layers(xr, xc, cfg)
    ci = bootstrap_d_ci(xr, xc, n_boot=cfg.n_bootstrap, seed=cfg.seed, ddof=0, eps=H1_EPS)

    # The original split the recall list and the reasoning list with two separate KFold calls; with
    # equal lengths and the same random_state they give identical indices, so one split serves both.
    # Held-out folds are unused, as in the original. Features are per prompt, so a fold's rows of the
    # full-data features are the features of its prompts. The bootstrap is skipped inside folds: it
    # never enters the classification.
    folds = kfold_indices(n_pairs, cfg.n_folds, shuffle=True, seed=cfg.seed)
    fold_cls = np.stack([_h1_layers(xr[train], xc[train], cfg)["cls"] for train, _ in folds])  # [k, L]
    agreement = (fold_cls == full["cls"]).mean(axis=0)
    consistent = agreement >= cfg.consistency - 1e-12  # 4 of 5 folds is 80% despite rounding

    d, p_adj, vote, cls = full["d"], full["p_adj"], full["vote"], full["cls"]
    # Effect: the strongest voting feature, or the strongest feature when none votes.
    strength = np.where(vote.any(axis=0), np.where(vote, np.abs(d), -1.0), np.abs(d))
    top = np.argmax(strength, axis=0)
    effect = d[top, np.arange(n_layers)]
    min_p = p_adj.min(axis=0)

    mean_c, mean_r = xc.mean(axis=0), xr.mean(axis=0)  # [n_features, L]
    components = {}
    for layer in range(n_layers):
        details = {
            "votes": {f: ("reasoning" if d[i, layer] > 0 else "recall")
                      for i, f in enumerate(H1_FEATURES) if vote[i, layer]},
            # effect: the original's d (reasoning - recall, population SDs) with its bootstrap interval
            "features": feature_details(H1_FEATURES, d[:, layer], p_adj[:, layer], mean_c[:, layer],
                                        mean_r[:, layer], (ci.ci_low[:, layer], ci.ci_high[:, layer])),
            "consistent": bool(consistent[layer]),
            "fold_agreement": float(agreement[layer]),
        }
        t = top[layer]
        components[layer_id(layer)] = ComponentResult(
            layer_id(layer), str(cls[layer]), float(effect[layer]), float(min_p[layer]), details,
            effect_ci=(float(ci.ci_low[t, layer]), float(ci.ci_high[t, layer])))

    specialised = cls != "none"
    threshold = cfg.min_layers.for_size(n_layers)
    n_specialised = int(specialised.sum())
    summary: dict[str, Any] = {
        **class_counts(cls),
        "recall_layers": [int(i) for i in np.flatnonzero(cls == "recall")],
        "reasoning_layers": [int(i) for i in np.flatnonzero(cls == "reasoning")],
        "mixed_layers": [int(i) for i in np.flatnonzero(cls == "mixed")],
        "threshold": threshold,
        "n_layers": n_layers,
        "n_pairs": n_pairs,
        "n_folds": cfg.n_folds,
        # The paper's "100% consistent": the share of specialised layers that keep their type.
        "consistency": float(consistent[specialised].mean()) if n_specialised else None,
    }
    verdict = "supported" if n_specialised >= threshold else "not_supported"
    return HypothesisResult("H1", verdict, METHOD, summary, components)


def analyse_h2(recall: Activations, reasoning: Activations, cfg: H2Config) -> HypothesisResult:
    """H2 (heads) by the original method: five attention metrics per head, unpaired tests, BH over
    all heads per metric, metric-count specialisation (docs/method.md "H2"). No cross-validation,
    as in the original.

    Skipped tests (fewer than ``min_n`` valid prompts on a side, or both variances below
    ``min_variance``) get p = 1 and d = 0. Heads are ranked by the mean |d| over their significant
    metrics; that score also gives ``mean_abs_d`` (its mean over the specialised heads).
    """
    validate_sides(recall, reasoning, ("attn",))
    n_layers, n_heads = recall.n_layers, recall.n_heads
    mr, mc = h2_head_metrics(reasoning), h2_head_metrics(recall)
    n_units = n_layers * n_heads
    # [P, n_metrics, L*H]: heads flattened layer-major, so unit u is (u // H, u % H)
    xr = np.stack([mr[m] for m in H2_METRICS], axis=1).reshape(reasoning.n_prompts, len(H2_METRICS), n_units)
    xc = np.stack([mc[m] for m in H2_METRICS], axis=1).reshape(recall.n_prompts, len(H2_METRICS), n_units)

    sr, sc = nan_moments(xr, ddof=1), nan_moments(xc, ddof=1)
    skip = (sr.n < cfg.min_n) | (sc.n < cfg.min_n) | ((sr.var < cfg.min_variance) & (sc.var < cfg.min_variance))
    d = np.where(skip, 0.0, cohens_d(xr, xc, ddof=1))
    d = np.where(np.abs(d) > cfg.d_artifact, 0.0, d)  # the original's "artifact" cap (flaw 6)
    p = np.where(skip, 1.0, mann_whitney_u(xr, xc).p)  # unpaired on paired data (flaw 1)
    reject, p_adj = benjamini_hochberg(p, cfg.alpha)  # one family per metric, over all heads
    significant = reject & (np.abs(d) >= cfg.d_significant)
    n_sig = significant.sum(axis=0)
    specialised = n_sig >= cfg.min_metrics
    up, down = (significant & (d > 0)).sum(axis=0), (significant & (d < 0)).sum(axis=0)
    cls = np.where(specialised, _classify(up, down), "none")
    with np.errstate(invalid="ignore"):
        score = np.where(significant, np.abs(d), 0.0).sum(axis=0) / n_sig  # NaN where none significant
    strength = np.where(significant.any(axis=0), np.where(significant, np.abs(d), -1.0), np.abs(d))
    effect = d[np.argmax(strength, axis=0), np.arange(n_units)]
    min_p = p_adj.min(axis=0)

    ids = [head_id(u // n_heads, u % n_heads) for u in range(n_units)]
    with np.errstate(all="ignore"):  # a head skipped on every prompt has no mean (NaN -> null)
        mean_c, mean_r = np.nanmean(xc, axis=0), np.nanmean(xr, axis=0)  # [n_metrics, units]
    components = {}
    for u, hid in enumerate(ids):
        details = {
            # effect: the original's d (reasoning - recall, unbiased SDs; 0 where skipped or capped)
            "features": feature_details(H2_METRICS, d[:, u], p_adj[:, u], mean_c[:, u], mean_r[:, u]),
            "significant": [m for i, m in enumerate(H2_METRICS) if significant[i, u]],
            "skipped": [m for i, m in enumerate(H2_METRICS) if skip[i, u]],
            "score": None if np.isnan(score[u]) else float(score[u]),
        }
        components[hid] = ComponentResult(hid, str(cls[u]), float(effect[u]), float(min_p[u]), details)

    def top(kind: str) -> list[str]:
        units = np.flatnonzero(cls == kind)
        return [ids[u] for u in units[np.argsort(-score[units], kind="stable")][:TOP_HEADS]]

    threshold = cfg.min_heads.for_size(n_units)
    n_specialised = int(specialised.sum())
    summary: dict[str, Any] = {
        **class_counts(cls),
        "mean_abs_d": float(score[specialised].mean()) if n_specialised else None,
        "top_recall": top("recall"),
        "top_reasoning": top("reasoning"),
        "threshold": threshold,
        "n_heads": n_units,
        "n_pairs": recall.n_prompts,
    }
    verdict = "supported" if n_specialised >= threshold else "not_supported"
    return HypothesisResult("H2", verdict, METHOD, summary, components)


class NeuronStats(NamedTuple):
    """H3's per-neuron arrays, each [L, F] (flattened layer-major into one Bonferroni family)."""

    d: np.ndarray  # Cohen's d (reasoning - recall), unbiased variances; 0 where skipped
    p: np.ndarray  # two-sided Mann-Whitney U; 1 where skipped
    p_adj: np.ndarray  # Bonferroni over all L * F neurons
    skipped: np.ndarray
    specific: np.ndarray  # rejected and |d| > d_significant
    rate_recall: np.ndarray  # P(g > 0 | recall)
    rate_reasoning: np.ndarray


def h3_neuron_stats(recall: np.ndarray, reasoning: np.ndarray, cfg: H3Config,
                    device: str | torch.device = "cpu") -> NeuronStats:
    """All neurons of all layers in one vectorised pass (docs/method.md "H3").

    recall, reasoning: gate_proj pre-activations [P, L, F]. Moments are float64 on ``device`` (the
    GPU when the model runs on one); the rank test sorts each neuron's P + P values once.
    """
    shape = recall.shape[1:]
    n_units = int(np.prod(shape))
    # float32 moments (float64 on a float64 input): |d| is compared with 1.0, and float32's 1e-7
    # relative error is far below that; float64 copies of a 7B model's arrays cost ~30% more time.
    dtype = torch.float64 if recall.dtype == np.float64 else torch.float32
    xr = torch.as_tensor(reasoning).to(device, dtype).reshape(reasoning.shape[0], n_units)
    xc = torch.as_tensor(recall).to(device, dtype).reshape(recall.shape[0], n_units)
    mean_r, mean_c = xr.mean(dim=0), xc.mean(dim=0)
    var_r, var_c = xr.var(dim=0, correction=1), xc.var(dim=0, correction=1)
    skip = ((var_r < cfg.min_variance) & (var_c < cfg.min_variance)) | \
           ((xr.abs().mean(dim=0) < cfg.min_abs_mean) & (xc.abs().mean(dim=0) < cfg.min_abs_mean))
    d = torch.where(skip, 0.0, (mean_r - mean_c) / torch.sqrt((var_r + var_c) / 2.0)).double()
    rate_r, rate_c = (xr > 0).double().mean(dim=0), (xc > 0).double().mean(dim=0)
    del xr, xc
    # Reasoning first, as in H1/H2, so the statistic's sign follows d's.
    p = mann_whitney_u_dense(reasoning.reshape(reasoning.shape[0], n_units),
                             recall.reshape(recall.shape[0], n_units), device=device).p
    skip_np, d_np = skip.cpu().numpy(), d.cpu().numpy()
    p = np.where(skip_np, 1.0, p)
    # Bonferroni over every neuron of every layer (statsmodels' rule: reject where p <= alpha / n).
    p_adj = np.minimum(p * n_units, 1.0)
    specific = (p <= cfg.alpha / n_units) & (np.abs(d_np) > cfg.d_significant)
    arrays = (d_np, p, p_adj, skip_np, specific, rate_c.cpu().numpy(), rate_r.cpu().numpy())
    return NeuronStats(*(a.reshape(shape) for a in arrays))


def analyse_h3(recall: Activations, reasoning: Activations, cfg: H3Config,
               device: str | torch.device = "cpu") -> HypothesisResult:
    """H3 (MLP neurons) by the original method (docs/method.md "H3"): gate_proj pre-activations,
    skip rules, unpaired rank test per neuron, Bonferroni over all neurons, |d| > 1, then the
    firing-rate ranking of the task-specific neurons and the sign check of the top ``top_k`` on the
    KFold training parts (selected and "validated" on the same data: flaw 3).

    Components are layers (``L04``): the share of the layer's neurons that are task-specific decides
    whether it is specialised (``layer_fraction``), the majority type its class.
    """
    validate_sides(recall, reasoning, ("gate",))
    n_pairs, n_layers, n_neurons = recall.gate.shape
    if n_pairs < cfg.n_folds:
        raise CircuitgateError(f"H3's sign check needs at least h3.n_folds={cfg.n_folds} pairs, got {n_pairs}")
    st = h3_neuron_stats(recall.gate, reasoning.gate, cfg, device)
    n_rec = (st.specific & (st.d < 0)).sum(axis=1)
    n_rea = (st.specific & (st.d > 0)).sum(axis=1)
    n_specific = n_rec + n_rea
    fraction = n_specific / n_neurons
    specialised = fraction >= cfg.layer_fraction
    cls = np.where(specialised, _classify(n_rea, n_rec), "none")

    # Ranking: task-specific neurons by |P(g>0 | recall) - P(g>0 | reasoning)|, ties by index.
    flat = np.flatnonzero(st.specific.ravel())
    gap = np.abs(st.rate_recall - st.rate_reasoning).ravel()
    top = flat[np.argsort(-gap[flat], kind="stable")][: cfg.top_k]
    # The sign check: each top neuron's mean difference keeps its sign on every training part. The
    # recall and reasoning lists were split by two KFold calls with one seed: identical indices.
    folds = kfold_indices(n_pairs, cfg.n_folds, shuffle=True, seed=cfg.seed)
    g_r = reasoning.gate.reshape(n_pairs, -1)[:, top].astype(np.float64)
    g_c = recall.gate.reshape(n_pairs, -1)[:, top].astype(np.float64)
    sign = np.sign(g_r.mean(axis=0) - g_c.mean(axis=0))
    fold_signs = np.stack([np.sign(g_r[tr].mean(axis=0) - g_c[tr].mean(axis=0)) for tr, _ in folds])
    validated = (fold_signs == sign).all(axis=0)
    d_flat, p_flat = st.d.ravel(), st.p_adj.ravel()
    top_neurons = [
        {"id": neuron_id(int(u) // n_neurons, int(u) % n_neurons),
         "type": "reasoning" if d_flat[u] > 0 else "recall",
         "d": float(d_flat[u]), "p_adj": float(p_flat[u]),
         "rate_recall": float(st.rate_recall.ravel()[u]), "rate_reasoning": float(st.rate_reasoning.ravel()[u]),
         "validated": bool(ok)}
        for u, ok in zip(top, validated)
    ]

    min_p = st.p_adj.min(axis=1)
    components = {}
    for layer in range(n_layers):
        lid = layer_id(layer)
        details = {"fraction": float(fraction[layer]), "n_specific": int(n_specific[layer]),
                   "n_recall": int(n_rec[layer]), "n_reasoning": int(n_rea[layer]),
                   "n_skipped": int(st.skipped[layer].sum()), "n_neurons": int(n_neurons)}
        # Effect: the signed share of the layer's neurons (> 0: more reasoning- than recall-specific).
        effect = float((n_rea[layer] - n_rec[layer]) / n_neurons)
        components[lid] = ComponentResult(lid, str(cls[layer]), effect, float(min_p[layer]), details)

    best = int(np.argmax(n_specific))
    total = n_layers * n_neurons
    threshold = cfg.min_layers.for_size(n_layers)
    summary: dict[str, Any] = {
        **class_counts(cls),
        "n_neurons": total,
        "n_task_specific": int(n_specific.sum()),
        "fraction_task_specific": float(n_specific.sum() / total),
        "n_recall_neurons": int(n_rec.sum()),
        "n_reasoning_neurons": int(n_rea.sum()),
        "n_skipped": int(st.skipped.sum()),
        "most_specialised_layer": {"layer": best, "n": int(n_specific[best]), "fraction": float(fraction[best])},
        "layer_fraction": [float(f) for f in fraction],
        "layer_recall": [int(n) for n in n_rec],
        "layer_reasoning": [int(n) for n in n_rea],
        "bonferroni_threshold": cfg.alpha / total,
        "top_neurons": top_neurons,
        "n_validated": int(validated.sum()),
        "n_top": int(len(top)),
        "threshold": threshold,
        "n_layers": n_layers,
        "n_pairs": n_pairs,
    }
    verdict = "supported" if int(specialised.sum()) >= threshold else "not_supported"
    return HypothesisResult("H3", verdict, METHOD, summary, components,
                            arrays={"specific": st.specific, "d": st.d})
