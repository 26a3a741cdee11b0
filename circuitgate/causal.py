"""Statistics for interventions (H5) and for cross-architecture consistency (H4).

H5: an ablation target is called a recall (reasoning) component only when it hurts its own skill more
than the other one *in the same prompt pair*, beyond pair-to-pair noise and beyond what a random
component of the same size does: a task x target interaction with pair-level bootstrap CIs and a
random-component control (docs/method.md flaw 7). A target that hurts only one side by its point
estimate but whose interaction CI straddles zero is "mixed", not specialised.

H4: two architectures with different depths are compared through depth profiles (layers binned by
relative depth) and a rank-agreement statistic whose null permutes one model's bins.

Everything is vectorised over targets, profiles and resamples; nothing loops over units.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

from circuitgate import CircuitgateError

# A drop of exactly tau computed in floats (1.0 - 0.9 = 0.09999999999999998 for tau = 0.1) still hurts.
_TAU_EPS = 1e-9
# Permuted statistics that tie the observed one up to rounding count as "at least as extreme".
_TIE_EPS = 1e-12

BOOTSTRAP_METHOD = "paired bootstrap over prompt pairs (percentile)"


class Interval(NamedTuple):
    """A point estimate per target with its confidence interval."""

    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


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
    n_pairs: int
    n_boot: int
    level: float
    tau: float
    method: str


class Agreement(NamedTuple):
    """Rank agreement of two models' depth profiles and its permutation p-value (one-sided)."""

    rho: dict[str, float]  # Spearman correlation per profile; NaN when a profile is constant or has NaN
    statistic: float  # mean of the finite rho (NaN if none)
    p: float
    n_perm: int  # permutations used (n_bins! when exact)
    exact: bool  # True when all n_bins! orderings were enumerated
    n_bins: int


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise CircuitgateError(f"level must be in (0, 1), got {level}")
    return level


def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CircuitgateError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --- H5: paired bootstrap and the task x target interaction ---------------------------------------------

def paired_bootstrap_means(x: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95) -> Interval:
    """Mean over axis 0 (prompt pairs) with a percentile bootstrap CI that resamples whole pairs.

    Pairs, not prompts, are the independent units (docs/method.md flaw 1): resampling rows keeps a
    pair's recall and reasoning values together. One index matrix
    ``default_rng(seed).integers(0, P, size=(n_boot, P))`` serves every column, so intervals computed
    with the same seed for different targets or quantities come from the same resamples. The
    resampled means are computed as (resample counts [n_boot, P]) @ x / P: no [n_boot, P, T] copy.

    Percentiles are np.quantile(method="linear") at (1 - level) / 2 and (1 + level) / 2; the upper
    bound is taken as minus the lower quantile of the negated means (equal up to rounding) so that the
    interval of -x is exactly the negated interval of x -- swapping the tasks must mirror a target's
    class exactly. A column with a non-finite value gets NaN bounds (and a NaN estimate for NaN).
    ``n_boot = 0`` gives a degenerate CI equal to the estimate.
    """
    x = np.asarray(x, dtype=float)
    if x.ndim == 0 or x.shape[0] < 1:
        raise CircuitgateError("paired_bootstrap_means needs at least one pair along axis 0")
    n_boot = _check_count(n_boot, "n_boot", 0)
    level = _check_level(level)
    estimate = x.mean(axis=0)
    if n_boot == 0:
        return Interval(estimate, estimate.copy(), estimate.copy())
    p = x.shape[0]
    idx = np.random.default_rng(seed).integers(0, p, size=(n_boot, p))
    # counts[b, i] = how often pair i appears in resample b (one bincount over offset indices)
    counts = np.bincount((idx + p * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * p)
    counts = counts.reshape(n_boot, p).astype(float)
    means = (counts @ x.reshape(p, -1)) / p  # [n_boot, K]; 0 * NaN keeps NaN columns NaN
    tail = (1.0 - level) / 2.0
    low = np.quantile(means, tail, axis=0, method="linear")
    high = -np.quantile(-means, tail, axis=0, method="linear")
    bad = ~np.isfinite(x.reshape(p, -1)).all(axis=0)  # do not rely on BLAS propagating 0 * NaN
    low, high = np.where(bad, np.nan, low), np.where(bad, np.nan, high)
    return Interval(estimate, low.reshape(estimate.shape), high.reshape(estimate.shape))


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
                     control_reasoning_drop: np.ndarray | None = None) -> TargetStats:
    """Classify ablation targets as recall / reasoning / mixed / none from per-pair drops [P, T].

    A side is hurt when its mean drop is at least ``tau`` (a practical-size threshold on the metric).
    Neither side hurt: "none"; both: "mixed". One side hurt is not enough to call the target
    specialised: a target that hurts everything a little, with recall just above tau and reasoning just
    below, would be "recall" by chance. So a target is "recall" only if also the interaction's CI lies
    above zero (it hurts recall more than reasoning in the same pairs, beyond pair noise and beyond a
    random same-size control), "reasoning" only if the CI lies below zero; otherwise "mixed".

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

    hurts_r = recall.estimate >= tau - _TAU_EPS
    hurts_s = reasoning.estimate >= tau - _TAU_EPS
    cls = np.select(
        [~hurts_r & ~hurts_s, hurts_r & hurts_s,
         hurts_r & (interaction.ci_low > 0), hurts_s & (interaction.ci_high < 0)],
        ["none", "mixed", "recall", "reasoning"],
        default="mixed",  # one side hurt, but not selectively beyond pair noise and control
    )
    return TargetStats(recall, reasoning, interaction, cls, r.shape[0], n_boot, level, tau, BOOTSTRAP_METHOD)


# --- H4: depth profiles and their agreement across architectures -----------------------------------------

def depth_bins(n_layers: int, n_bins: int) -> np.ndarray:
    """Bin of each layer by relative depth: floor((i + 0.5) / n_layers * n_bins).

    Layer centres make models of different depth comparable (28 and 32 layers into 4 bins give 7 and
    8 layers per bin). Computed in integers, (2i + 1) * n_bins // (2 * n_layers), so a centre exactly
    on a bin edge never falls into the lower bin by float rounding. With n_bins <= n_layers every bin
    holds at least one layer (bins are at least one layer wide).
    """
    n_layers = _check_count(n_layers, "n_layers", 1)
    n_bins = _check_count(n_bins, "n_bins", 1)
    if n_bins > n_layers:
        raise CircuitgateError(f"n_bins ({n_bins}) must be between 1 and n_layers ({n_layers})")
    return (2 * np.arange(n_layers) + 1) * n_bins // (2 * n_layers)


def depth_profile(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Mean of the layers in each depth bin along the last axis: [..., L] -> [..., n_bins].

    NaN-aware (a layer without a value does not count); a bin whose layers are all NaN is NaN. Done as
    one matrix product with the layer-to-bin indicator, without nanmean's empty-slice warnings.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim == 0:
        raise CircuitgateError("depth_profile needs a layer axis (the last axis)")
    bins = depth_bins(values.shape[-1], n_bins)
    member = (bins[:, None] == np.arange(n_bins)[None, :]).astype(float)  # [L, n_bins]
    valid = ~np.isnan(values)
    total = np.where(valid, values, 0.0) @ member
    count = valid.astype(float) @ member
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _standardised_ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis, centred and scaled to unit norm; NaN rows where the input
    has NaN or is constant (no rank correlation is defined there, as scipy.stats.spearmanr)."""
    ranks = sps.rankdata(x, axis=-1, method="average")
    bad = np.isnan(x).any(axis=-1)
    ranks = np.where(bad[..., None], 0.0, ranks)
    centred = ranks - ranks.mean(axis=-1, keepdims=True)
    norm = np.sqrt((centred * centred).sum(axis=-1, keepdims=True))
    ok = ~bad[..., None] & (norm > 0)
    return np.where(ok, centred / np.where(ok, norm, 1.0), np.nan)


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of matching rows of a and b ([..., B] each), average ranks for ties,
    as scipy.stats.spearmanr; NaN where either row is constant or has NaN."""
    za, zb = _standardised_ranks(np.asarray(a, dtype=float)), _standardised_ranks(np.asarray(b, dtype=float))
    return np.clip((za * zb).sum(axis=-1), -1.0, 1.0)


def profile_agreement(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray], *, n_perm: int = 10000,
                      seed: int = 0) -> Agreement:
    """Do two models specialise at the same relative depths? Mean Spearman rho over profiles, tested
    one-sided (agreement greater than chance) against a null that permutes model B's depth bins.

    One permutation is applied to all of B's profiles at once, so the null keeps the dependence between
    profiles (H1, H2 and H5 profiles of one model are correlated) and only breaks the depth alignment.
    With n_bins! <= n_perm all orderings are enumerated (identity included) and p is exact, so the
    smallest p is 1/n_bins!: few bins cannot give strong evidence, and the result says so. Otherwise
    p = (1 + #extreme) / (1 + n_perm) from random permutations (never 0). Ranks are computed once;
    permuting bins permutes ranks, so every permutation's rho is one dot product.
    """
    if set(a) != set(b):
        raise CircuitgateError(f"profile names differ: {sorted(a)} vs {sorted(b)}")
    if not a:
        raise CircuitgateError("profile_agreement needs at least one profile")
    n_perm = _check_count(n_perm, "n_perm", 1)
    names = list(a)
    pa = [np.asarray(a[k], dtype=float) for k in names]
    pb = [np.asarray(b[k], dtype=float) for k in names]
    lengths = {p.shape for p in pa + pb}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise CircuitgateError(f"profiles must be 1-D with one common length, got shapes {sorted(lengths)}")
    n_bins = next(iter(lengths))[0]
    if n_bins < 2:
        raise CircuitgateError(f"profiles need at least 2 depth bins, got {n_bins}")

    za, zb = _standardised_ranks(np.stack(pa)), _standardised_ranks(np.stack(pb))  # [K, B]
    rho = np.clip((za * zb).sum(axis=-1), -1.0, 1.0)
    finite = np.isfinite(rho)
    exact = math.factorial(n_bins) <= n_perm
    used = math.factorial(n_bins) if exact else n_perm
    rho_dict = {k: float(v) for k, v in zip(names, rho)}
    if not finite.any():
        return Agreement(rho_dict, float("nan"), 1.0, used, exact, n_bins)
    statistic = float(rho[finite].mean())

    if exact:
        perms = np.array(list(itertools.permutations(range(n_bins))))
    else:
        rng = np.random.default_rng(seed)
        perms = rng.permuted(np.tile(np.arange(n_bins), (n_perm, 1)), axis=1)
    za, zb = za[finite], zb[finite]
    null = np.einsum("kb,knb->n", za, zb[:, perms]) / za.shape[0]  # mean rho per permutation
    hits = int((null >= statistic - _TIE_EPS).sum())
    p = hits / used if exact else (1 + hits) / (1 + n_perm)
    return Agreement(rho_dict, statistic, float(p), used, exact, n_bins)
