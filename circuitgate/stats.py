"""Vectorised statistics: effect sizes, rank tests, multiple-testing corrections, bootstrap, folds.

Every function works along axis 0 (samples) over any number of trailing unit axes (layers, heads,
neurons) in one pass; NaN marks a missing sample (H2 skips prompts per head, SEED_METHOD.md "H2"),
so each unit may have its own sample size. Nothing here loops over units.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from scipy import special
from statsmodels.stats.multitest import multipletests

from circuitgate import CircuitgateError


class Moments(NamedTuple):
    """NaN-aware per-unit sample size, mean and variance."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray


class MannWhitneyResult(NamedTuple):
    """Two-sided Mann-Whitney U test per unit; ``statistic`` is U of the first sample (as scipy)."""

    statistic: np.ndarray
    p: np.ndarray
    n_x: np.ndarray
    n_y: np.ndarray
    exact: np.ndarray  # True where the exact null distribution was used (scipy's method="auto" choice)


class BHResult(NamedTuple):
    reject: np.ndarray
    p_adj: np.ndarray


class BootstrapCI(NamedTuple):
    """Percentile bootstrap confidence interval of Cohen's d per unit."""

    effect: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_boot: int
    level: float


def _as_float(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 0:
        raise CircuitgateError(f"{name} must have a sample axis (axis 0)")
    return x


def nan_moments(x: np.ndarray, ddof: int = 0) -> Moments:
    """Sample size, mean and variance along axis 0, ignoring NaN; NaN mean/var where n <= ddof.

    Written out instead of np.nanvar so that units with too few samples give NaN without warnings.
    """
    x = _as_float(x, "x")
    valid = ~np.isnan(x)
    n = valid.sum(axis=0)
    filled = np.where(valid, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=0) / n
        dev = np.where(valid, x - mean, 0.0)
        var = (dev * dev).sum(axis=0) / (n - ddof)
    var = np.where(n > ddof, var, np.nan)
    return Moments(n, mean, var)


def cohens_d(x: np.ndarray, y: np.ndarray, *, ddof: int = 0, eps: float = 0.0) -> np.ndarray:
    """Cohen's d = (mean_x - mean_y) / (sqrt((var_x + var_y) / 2) + eps), per unit, NaN-aware.

    Pass reasoning as ``x`` and recall as ``y`` so that d > 0 means "larger on reasoning". The
    original method used ddof=0 and eps=1e-10 for H1, ddof=1 and no eps for H2, ddof=1 for H3
    (SEED_METHOD.md "H1", "H2", "H3"). The pooled SD is the unweighted mean of the two variances,
    as in the original code, not the df-weighted pooled variance.
    """
    mx, my = nan_moments(x, ddof), nan_moments(y, ddof)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (mx.mean - my.mean) / (np.sqrt((mx.var + my.var) / 2.0) + eps)


def _average_ranks(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) along axis 0 of a 2-D array, NaN left unranked, and sum(t^3 - t).

    Sorting puts NaN last, so the valid values of each column occupy its first n positions; tie
    groups are found from neighbour inequality and get the mean of their first and last position.
    """
    m = z.shape[0]
    order = np.argsort(z, axis=0, kind="stable")
    s = np.take_along_axis(z, order, axis=0)
    pos = np.arange(m)[:, None]
    differs = s[1:] != s[:-1]  # NaN != NaN, so NaN never joins a tie group
    starts = np.concatenate([np.ones((1, s.shape[1]), bool), differs], axis=0)
    ends = np.concatenate([differs, np.ones((1, s.shape[1]), bool)], axis=0)
    first = np.maximum.accumulate(np.where(starts, pos, 0), axis=0)
    last = np.minimum.accumulate(np.where(ends, pos, m)[::-1], axis=0)[::-1]
    valid = ~np.isnan(s)
    size = (last - first + 1).astype(float)
    # A tie group of size t contributes t elements of (t^2 - 1) each: t^3 - t in total.
    tie_term = np.where(valid, size * size - 1.0, 0.0).sum(axis=0)
    ranks = np.empty_like(z)
    np.put_along_axis(ranks, order, np.where(valid, (first + last) / 2.0 + 1.0, np.nan), axis=0)
    return ranks, tie_term


def _mwu_exact_sf(u: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """P(U >= u) under H0 without ties: the U distribution's counts are the coefficients of the
    Gaussian binomial [n1 + n2 choose n1]_q = prod_{i=1..k} (1 - q^(m+i)) / (1 - q^i), k = min, m = max.
    Python integers keep the counts exact."""
    k, m = min(n1, n2), max(n1, n2)
    top = k * m
    counts = [1] + [0] * top
    for i in range(1, k + 1):
        # multiply by (1 - q^(m+i)), then divide by (1 - q^i) (a running sum with stride i)
        for j in range(top, m + i - 1, -1):
            counts[j] -= counts[j - m - i]
        for j in range(i, top + 1):
            counts[j] += counts[j - i]
    total = sum(counts)
    tail = np.cumsum(np.array(counts[::-1], dtype=object))[::-1]  # tail[j] = #(U >= j)
    sf = np.array([t / total for t in tail])  # one entry per value of U; int / int is correctly rounded
    return sf[np.clip(np.asarray(u, dtype=np.int64), 0, top)]


def mann_whitney_u(x: np.ndarray, y: np.ndarray) -> MannWhitneyResult:
    """Two-sided Mann-Whitney U test per unit, matching ``scipy.stats.mannwhitneyu(x, y,
    alternative="two-sided")`` (method "auto") applied to each column with its NaNs dropped.

    Like scipy 1.17, a unit uses the exact null distribution when one sample has at most 8 values and
    the unit has no ties, else the normal approximation with tie and continuity correction. The
    original method used this unpaired test on paired data (SEED_METHOD.md flaw 1). Units where a
    sample is empty get p = NaN.
    """
    x, y = _as_float(x, "x"), _as_float(y, "y")
    if x.shape[1:] != y.shape[1:]:
        raise CircuitgateError(f"unit shapes differ: {x.shape[1:]} vs {y.shape[1:]}")
    units = x.shape[1:]
    xf, yf = x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)
    ranks, tie_term = _average_ranks(np.concatenate([xf, yf], axis=0))
    n1 = (~np.isnan(xf)).sum(axis=0)
    n2 = (~np.isnan(yf)).sum(axis=0)
    r1 = np.nansum(ranks[: xf.shape[0]], axis=0)
    u1 = r1 - n1 * (n1 + 1) / 2.0
    u = np.maximum(u1, n1 * n2 - u1)
    n = n1 + n2
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = np.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
        z = (u - n1 * n2 / 2.0 - 0.5) / sd
    p = 2.0 * special.ndtr(-z)  # an all-tied unit has sd 0, z = -inf, p = 2 -> clipped to 1 as scipy
    exact = ((n1 <= 8) | (n2 <= 8)) & (tie_term == 0) & (n1 > 0) & (n2 > 0)
    if exact.any():
        # One pass per distinct (n1, n2) pair, not per unit: sizes vary only through NaN masking.
        sizes = np.stack([n1[exact], n2[exact]], axis=1)
        pairs, inverse = np.unique(sizes, axis=0, return_inverse=True)
        inverse = inverse.ravel()
        p_exact = np.empty(len(sizes))
        for g, (a, b) in enumerate(pairs):
            sel = inverse == g
            p_exact[sel] = 2.0 * _mwu_exact_sf(u[exact][sel], int(a), int(b))
        p[exact] = p_exact
    p = np.where((n1 > 0) & (n2 > 0), np.clip(p, 0.0, 1.0), np.nan)
    return MannWhitneyResult(u1.reshape(units), p.reshape(units), n1.reshape(units), n2.reshape(units),
                             exact.reshape(units))


def _sort_rows(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted values and sort order along dim 1 of a [units, samples] tensor.

    On the CPU numpy sorts many short rows far faster than torch.sort with one thread (measured for
    530,432 rows of 60: argsort 0.30 s and sort 0.08 s against 1.55 s), so the CPU path sorts with
    numpy (the values sorted separately: cheaper than gathering them by the order); on a GPU,
    torch.sort.
    """
    if z.device.type == "cpu":
        zn = z.numpy()
        return torch.from_numpy(np.sort(zn, axis=1)), torch.from_numpy(np.argsort(zn, axis=1))
    return torch.sort(z, dim=1)


def mann_whitney_u_dense(x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor,
                         device: str | torch.device | None = None) -> MannWhitneyResult:
    """``mann_whitney_u`` for a large family of complete units (no NaN), e.g. all 530,432 MLP neurons
    of a 7B model at once (SEED_METHOD.md "H3"), on ``device`` (default: where ``x`` lives; a GPU
    when the model runs on one).

    x [n1, ...], y [n2, ...]. Rows of the [units, n1 + n2] matrix are sorted once; a unit without
    ties gets its rank sum from the sorted positions directly, and only units with ties (common in
    bfloat16) go through the average-rank pass. The p-value arithmetic is float64 whatever the input
    dtype, and agrees with scipy's method="auto" like ``mann_whitney_u``.
    """
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    if xt.ndim < 1 or xt.shape[1:] != yt.shape[1:]:
        raise CircuitgateError(f"unit shapes differ: {tuple(xt.shape[1:])} vs {tuple(yt.shape[1:])}")
    n1, n2 = int(xt.shape[0]), int(yt.shape[0])
    if n1 == 0 or n2 == 0:
        raise CircuitgateError("mann_whitney_u_dense needs at least one sample on each side")
    units = tuple(xt.shape[1:])
    dev = torch.device(device) if device is not None else xt.device
    # float16/bfloat16 widen to float32 exactly (ties kept); numpy cannot sort bfloat16.
    dtype = torch.float64 if xt.dtype == torch.float64 else torch.float32
    if not (bool(torch.isfinite(xt).all()) and bool(torch.isfinite(yt).all())):
        raise CircuitgateError("mann_whitney_u_dense: values must be finite (use mann_whitney_u for NaN-masked units)")
    z = torch.cat([xt.reshape(n1, -1).to(dev, dtype), yt.reshape(n2, -1).to(dev, dtype)]).T.contiguous()
    n = n1 + n2
    s, order = _sort_rows(z)
    del z
    from_x = order < n1
    del order
    tied = s[:, 1:] == s[:, :-1]  # neighbours in sorted order: equal values form tie groups
    has_ties = tied.any(dim=1)
    # Rank sum of x where all values are distinct: integers <= n(n+1)/2, exact in float32.
    pos = torch.arange(1, n + 1, device=dev, dtype=torch.float32)
    r1 = (from_x.to(torch.float32) @ pos).to(torch.float64)
    tie_term = torch.zeros(s.shape[0], device=dev, dtype=torch.float64)
    if bool(has_ties.any()):
        rows = torch.nonzero(has_ties).squeeze(1)
        differs = ~tied[rows]
        edge = torch.ones((len(rows), 1), dtype=torch.bool, device=dev)
        starts, ends = torch.cat([edge, differs], dim=1), torch.cat([differs, edge], dim=1)
        idx = torch.arange(n, device=dev).expand(len(rows), n)
        first = torch.cummax(torch.where(starts, idx, 0), dim=1).values
        last = torch.flip(torch.cummin(torch.flip(torch.where(ends, idx, n), [1]), dim=1).values, [1])
        size = (last - first + 1).to(torch.float64)
        # A tie group of size t contributes t elements of (t^2 - 1) each: t^3 - t in total.
        tie_term[rows] = (size * size - 1.0).sum(dim=1)
        avg_rank = (first + last).to(torch.float64) / 2.0 + 1.0
        r1[rows] = (avg_rank * from_x[rows]).sum(dim=1)
    u1 = r1 - n1 * (n1 + 1) / 2.0
    u = torch.maximum(u1, n1 * n2 - u1)
    sd = torch.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    zscore = ((u - n1 * n2 / 2.0 - 0.5) / sd).cpu().numpy()
    # scipy's ndtr, not torch's: torch.special.ndtr loses accuracy in the far tail (measured in
    # float64: 2.82316e-10 against 2.82316e-10 * (1 + 8e-7) at z = -6.2, 0 at z = -10), exactly where
    # H3's Bonferroni bar lies (1e-4 / 530,432 = 1.9e-10). An all-tied unit: sd 0, p 2 -> clipped to 1.
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.clip(2.0 * special.ndtr(-zscore), 0.0, 1.0)
    u1, tie_term = u1.cpu().numpy(), tie_term.cpu().numpy()
    exact = np.full(u1.shape, min(n1, n2) <= 8) & (tie_term == 0)
    if exact.any():
        p[exact] = np.clip(2.0 * _mwu_exact_sf(np.maximum(u1, n1 * n2 - u1)[exact], n1, n2), 0.0, 1.0)
    sizes = (np.full(u1.shape, n1), np.full(u1.shape, n2))
    return MannWhitneyResult(u1.reshape(units), p.reshape(units), sizes[0].reshape(units),
                             sizes[1].reshape(units), exact.reshape(units))


def benjamini_hochberg(p: np.ndarray, alpha: float) -> BHResult:
    """Benjamini-Hochberg FDR (statsmodels ``multipletests(method="fdr_bh")``), one family per row:
    the last axis holds the family's units (e.g. the layers of one feature), leading axes index
    families (one per feature or metric)."""
    p = np.asarray(p, dtype=float)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise CircuitgateError("benjamini_hochberg needs at least one p-value per family")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise CircuitgateError("benjamini_hochberg: p-values must be finite and in [0, 1]")
    flat = p.reshape(-1, p.shape[-1])
    reject = np.empty(flat.shape, bool)
    p_adj = np.empty(flat.shape)
    for i, row in enumerate(flat):  # one call per family (feature/metric), never per unit
        reject[i], p_adj[i] = multipletests(row, alpha=alpha, method="fdr_bh")[:2]
    return BHResult(reject.reshape(p.shape), p_adj.reshape(p.shape))


def bootstrap_d_ci(x: np.ndarray, y: np.ndarray, *, n_boot: int, seed: int, ddof: int = 0,
                   eps: float = 1e-10, level: float = 0.95) -> BootstrapCI:
    """Percentile bootstrap CI of ``cohens_d(x, y)``, the two groups resampled independently
    (SEED_METHOD.md "H1": the original's unpaired bootstrap, flaw 1). All ``n_boot`` resamples are
    drawn at once ([n_boot, n, ...]); one set of row indices per resample is shared by all units, so
    the CIs of different units come from the same resamples. ``n_boot = 0`` gives NaN bounds."""
    x, y = _as_float(x, "x"), _as_float(y, "y")
    effect = cohens_d(x, y, ddof=ddof, eps=eps)
    if n_boot == 0:
        nan = np.full(effect.shape, np.nan)
        return BootstrapCI(effect, nan, nan.copy(), 0, level)
    rng = np.random.default_rng(seed)
    ix = rng.integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    iy = rng.integers(0, y.shape[0], size=(n_boot, y.shape[0]))
    # cohens_d reduces axis 0, so put the sample axis first: [n, n_boot, ...]
    ds = cohens_d(np.swapaxes(x[ix], 0, 1), np.swapaxes(y[iy], 0, 1), ddof=ddof, eps=eps)
    tail = (1.0 - level) / 2.0 * 100.0
    # nan-aware: a resample can leave a NaN-masked unit with too few samples for its variance
    low, high = np.nanpercentile(ds, [tail, 100.0 - tail], axis=0)
    return BootstrapCI(effect, low, high, n_boot, level)


def kfold_indices(n: int, k: int, *, shuffle: bool = True, seed: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs identical to ``sklearn.model_selection.KFold(n_splits=k,
    shuffle=shuffle, random_state=seed).split(range(n))``: a permutation from
    ``np.random.RandomState(seed)``, contiguous test chunks of n // k (the first n % k one larger),
    both index arrays returned sorted (sklearn builds them from a boolean mask)."""
    if not 2 <= k <= n:
        raise CircuitgateError(f"cannot split {n} samples into {k} folds (need 2 <= folds <= samples)")
    order = np.arange(n)
    if shuffle:
        np.random.RandomState(seed).shuffle(order)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    folds = []
    for stop, size in zip(np.cumsum(sizes), sizes):
        test = np.zeros(n, bool)
        test[order[stop - size: stop]] = True
        folds.append((np.flatnonzero(~test), np.flatnonzero(test)))
    return folds
