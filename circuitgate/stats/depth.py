"""Depth profiles and their agreement across architectures (H4): layers binned by relative depth, and a
rank-agreement statistic whose null permutes one model's bins. Vectorised over profiles and
permutations."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np
from scipy import stats as sps

from circuitgate import CircuitgateError
from circuitgate.stats.inputs import _check_count

# Permuted statistics that tie the observed one up to rounding count as "at least as extreme".
_TIE_EPS = 1e-12


class Agreement(NamedTuple):
    """Rank agreement of two models' depth profiles and its permutation p-value (one-sided)."""

    rho: dict[str, float]  # Spearman correlation per profile; NaN when a profile is constant or has NaN
    statistic: float  # mean of the finite rho (NaN if none)
    p: float
    n_perm: int  # permutations used (n_bins! when exact)
    exact: bool  # True when all n_bins! orderings were enumerated
    n_bins: int


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
