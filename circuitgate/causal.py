"""The decision rules of the causal hypotheses, H5 (interventions) and H4 (cross-architecture
consistency), shared by the analyses, the organisms' ground truth and the expectations read from it;
their statistics (paired bootstrap, depth profiles and rank agreement) are in ``circuitgate.stats``.

H5: an ablation target is called a recall (reasoning) component only when it hurts its own skill more
than the other one *in the same prompt pair*, beyond pair-to-pair noise and beyond what a random
component of the same size does: a task x target interaction with pair-level bootstrap CIs and a
random-component control (docs/method.md flaw 7), whose signed-rank p survives a false-discovery-rate
correction over every target of the run (docs/method.md, "H5's classes control false discoveries").
A target that hurts only one side by its point estimate but whose interaction is not selective is
"mixed", not specialised.

H4: two architectures with different depths agree when their depth profiles rank alike beyond what
permuting one model's depth bins gives, and both specialise; a depth bin's class is the one both give it.

Everything is vectorised over targets; nothing loops over units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from circuitgate import CircuitgateError
from circuitgate.config import H4Config, H5Config
from circuitgate.ids import attn_target, depth_id, mlp_target
from circuitgate.results import combine_classes
from circuitgate.stats.bootstrap import Interval, paired_bootstrap_means
from circuitgate.stats.depth import Agreement, depth_bins, depth_profile, profile_agreement
from circuitgate.stats.inputs import _check_count, _check_level
from circuitgate.stats.multiple import fdr_correction
from circuitgate.stats.wilcoxon import wilcoxon_signed_rank
from circuitgate.vocabulary import SKILLS

# A drop of exactly tau computed in floats (1.0 - 0.9 = 0.09999999999999998 for tau = 0.1) still hurts.
_TAU_EPS = 1e-9

BOOTSTRAP_METHOD = "paired bootstrap over prompt pairs (percentile)"


class TargetStats(NamedTuple):
    """Per-target drops on both tasks, their interaction, and the resulting class.

    A drop is clean metric - ablated metric (positive = the ablation hurt). ``interaction`` is the
    mean over pairs of (recall_drop - reasoning_drop), minus the same difference for the target's
    random control where it has one.
    """

    recall_drop: Interval
    reasoning_drop: Interval
    interaction: Interval
    cls: np.ndarray  # [T] str: "recall" | "reasoning" | "mixed" | "none"
    pair_interaction: np.ndarray  # [P, T] per pair: recall drop - reasoning drop, net of the control's
    p: np.ndarray  # [T] two-sided Wilcoxon signed-rank p of the per-pair interaction
    p_adj: np.ndarray  # [T] p adjusted over the targets (``correction``)
    selective: np.ndarray  # [T] bool: rejected at false discovery rate ``alpha`` over the targets
    alpha: float
    correction: str
    n_pairs: int
    n_boot: int
    level: float
    tau: float
    method: str


# --- H5: paired bootstrap and the task x target interaction ---------------------------------------------

def _check_drops(name: str, a: np.ndarray, shape: tuple[int, ...] | None, allow_nan_columns: bool) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != 2:
        raise CircuitgateError(f"{name} must be [pairs, targets], got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise CircuitgateError(f"{name} has shape {a.shape}, expected {shape}")
    if a.shape[0] < 2:
        raise CircuitgateError(f"{name}: need at least 2 prompt pairs, got {a.shape[0]}")
    bad = ~np.isfinite(a)
    if allow_nan_columns:
        bad &= ~np.isnan(a).all(axis=0)  # a target without a control is an all-NaN column
    if bad.any():
        what = "values (or an all-NaN column for a target without control)" if allow_nan_columns else "values"
        raise CircuitgateError(f"{name} must hold finite {what}")
    return a


def classify_targets(recall_drop: np.ndarray, reasoning_drop: np.ndarray, *, tau: float, level: float = 0.95,
                     n_boot: int = 2000, seed: int = 0, control_recall_drop: np.ndarray | None = None,
                     control_reasoning_drop: np.ndarray | None = None, alpha: float = 0.05,
                     correction: str = "bh") -> TargetStats:
    """Classify ablation targets as recall / reasoning / mixed / none from per-pair drops [P, T].

    A side is hurt when its mean drop is at least ``tau`` (a practical-size threshold on the metric).
    Neither side hurt: "none"; both: "mixed". One side hurt is not enough to call the target
    specialised: a target that hurts everything a little, with recall just above tau and reasoning just
    below, would be "recall" by chance. So a target is "recall" only if also its interaction is
    selective and positive (it hurts recall more than reasoning in the same pairs, beyond pair noise
    and beyond a random same-size control), "reasoning" only if selective and negative; otherwise
    "mixed". Selective: the interaction's two-sided Wilcoxon signed-rank p survives ``correction``
    (bh, or by under any dependence) at false discovery rate ``alpha`` over all T targets, *and* its
    own bootstrap interval excludes zero. A per-target interval alone, over tens to thousands of
    targets, calls some null targets selective in every run (2 of 63 on a real-weight null measured
    before the correction; docs/method.md, "H5's classes control false discoveries").

    Control column t is the drop caused by a random component of the same size as target t; it is
    all-NaN where target t has no control, and the interaction then has no control term. All three
    intervals use the same bootstrap index matrix (the same seed), so the result is deterministic.
    """
    r = _check_drops("recall_drop", recall_drop, None, False)
    s = _check_drops("reasoning_drop", reasoning_drop, r.shape, False)
    tau = float(tau)
    if not (np.isfinite(tau) and tau >= 0.0):
        raise CircuitgateError(f"tau must be a finite number >= 0, got {tau}")
    level = _check_level(level)
    n_boot = _check_count(n_boot, "n_boot", 0)
    if (control_recall_drop is None) != (control_reasoning_drop is None):
        raise CircuitgateError("control_recall_drop and control_reasoning_drop must be given together")
    diff = r - s
    if control_recall_drop is not None:
        cr = _check_drops("control_recall_drop", control_recall_drop, r.shape, True)
        cs = _check_drops("control_reasoning_drop", control_reasoning_drop, r.shape, True)
        has_r, has_s = ~np.isnan(cr).all(axis=0), ~np.isnan(cs).all(axis=0)
        if (has_r != has_s).any():
            t = int(np.flatnonzero(has_r != has_s)[0])
            raise CircuitgateError(f"target {t} has a control on one task only (all-NaN on the other)")
        diff = np.where(has_r, diff - (cr - cs), diff)

    recall = paired_bootstrap_means(r, n_boot=n_boot, seed=seed, level=level)
    reasoning = paired_bootstrap_means(s, n_boot=n_boot, seed=seed, level=level)
    interaction = paired_bootstrap_means(diff, n_boot=n_boot, seed=seed, level=level)

    if diff.shape[1]:
        p = wilcoxon_signed_rank(diff).p
        fdr = fdr_correction(p, alpha, correction)
        p_adj, rejected = fdr.p_adj, fdr.reject
    else:  # no targets: nothing to test (fdr_correction needs one p)
        p = p_adj = np.zeros(0)
        rejected = np.zeros(0, dtype=bool)
    selective = rejected & ((interaction.ci_low > 0) | (interaction.ci_high < 0))
    hurts_r = recall.estimate >= tau - _TAU_EPS
    hurts_s = reasoning.estimate >= tau - _TAU_EPS
    cls = np.select(
        [~hurts_r & ~hurts_s, hurts_r & hurts_s,
         hurts_r & selective & (interaction.ci_low > 0), hurts_s & selective & (interaction.ci_high < 0)],
        ["none", "mixed", "recall", "reasoning"],
        default="mixed",  # one side hurt, but not selectively beyond pair noise, control and the FDR bar
    )
    return TargetStats(recall, reasoning, interaction, cls, diff, p, p_adj, selective, float(alpha),
                       correction, r.shape[0], n_boot, level, tau, BOOTSTRAP_METHOD)




# --- the decisions built on these: H5's verdict, H4's agreement and depth-bin classes ----------------

def verdict_from_classes(classes: Mapping[str, str], cfg: H5Config) -> str:
    """Supported when each skill has selective targets: a circuit for recall and one for reasoning."""
    counts = [sum(c == skill for c in classes.values()) for skill in SKILLS]
    return "supported" if min(counts) >= cfg.min_per_skill else "not_supported"


def layer_interactions(interaction: Mapping[str, float], n_layers: int) -> np.ndarray:
    """Per layer: the mean interaction of its ``attn-L{i}`` and ``mlp-L{i}`` targets."""
    return np.array([(interaction[attn_target(i)] + interaction[mlp_target(i)]) / 2.0 for i in range(n_layers)])


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


def binned_classes(classes: Sequence[str], n_bins: int) -> list[str]:
    bins = depth_bins(len(classes), n_bins)
    return [combine_classes([c for c, k in zip(classes, bins) if k == b]) for b in range(n_bins)]


def agreed_classes(binned_a: Sequence[str], binned_b: Sequence[str]) -> dict[str, str]:
    return {depth_id(b): ca if ca == cb else "none" for b, (ca, cb) in enumerate(zip(binned_a, binned_b))}


def bin_classes(classes_a: Sequence[str], classes_b: Sequence[str]) -> dict[str, str]:
    """Per depth bin: the class both models give it (their layers in the bin combined), else none."""
    n_bins = min(len(classes_a), len(classes_b))
    return agreed_classes(binned_classes(classes_a, n_bins), binned_classes(classes_b, n_bins))
