"""Two-sided Mann-Whitney U test per unit, the original method's unpaired rank test (docs/method.md
"H1"-"H3", flaw 1): NaN-masked units (``mann_whitney_u``) and large complete families on a GPU
(``mann_whitney_u_dense``), both agreeing with scipy's method="auto"."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
import torch
from scipy import special

from circuitgate import CircuitgateError
from circuitgate.stats.inputs import _as_float
from circuitgate.stats.ranks import _sort_dtype, _tie_groups, tie_groups_columns


class MannWhitneyResult(NamedTuple):
    """Two-sided Mann-Whitney U test per unit; ``statistic`` is U of the first sample (as scipy)."""

    statistic: np.ndarray
    p: np.ndarray
    n_x: np.ndarray
    n_y: np.ndarray
    exact: np.ndarray  # True where the exact null distribution was used (scipy's method="auto" choice)


def _average_ranks(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based) along axis 0 of a 2-D array, NaN left unranked, and sum(t^3 - t).

    Sorting puts NaN last, so the valid values of each column occupy its first n positions; tie
    groups are found from neighbour inequality and get the mean of their first and last position.
    """
    order = np.argsort(z, axis=0, kind="stable")
    s = np.take_along_axis(z, order, axis=0)
    valid = ~np.isnan(s)
    rank2, tie_term = tie_groups_columns(s[1:] != s[:-1], valid)
    ranks = np.empty_like(z)
    np.put_along_axis(ranks, order, np.where(valid, rank2 / 2.0, np.nan), axis=0)
    return ranks, tie_term


def _mwu_exact_sf(u: np.ndarray, n1: int, n2: int) -> np.ndarray:
    """P(U >= u) under H0 without ties (``_mwu_sf_table``)."""
    k, m = min(n1, n2), max(n1, n2)
    return _mwu_sf_table(k, m)[np.clip(np.asarray(u, dtype=np.int64), 0, k * m)]


@functools.lru_cache(maxsize=1024)
def _mwu_sf_table(k: int, m: int) -> np.ndarray:
    """P(U >= j), j = 0..k m, for samples of k <= m: the U distribution's counts are the coefficients of
    the Gaussian binomial [k + m choose k]_q = prod_{i=1..k} (1 - q^(m+i)) / (1 - q^i). Python integers
    keep the counts exact. Kept per sample sizes (read-only), as the signed-rank tables are: a test of
    16 against 16 samples over 48 units took 0.64 ms with its table built and 0.26 ms without (measured)."""
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
    sf.flags.writeable = False
    return sf


def _mwu_p(u1: np.ndarray | torch.Tensor, n1: np.ndarray | int, n2: np.ndarray | int,
           tie_term: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided p and the exact-path mask per unit (numpy) from U of the first sample, the sample
    sizes (arrays per unit, or one int each when all units share them) and the tie term sum(t^3 - t):
    float64 numpy arrays, or torch tensors on any device.

    scipy 1.17's method="auto": the exact null distribution when one sample has at most 8 values and
    the unit has no ties, else the normal approximation with tie and continuity correction. Units
    where a sample is empty get p = NaN.
    """
    # The normal approximation's arithmetic stays in the inputs' library: torch's float64 sqrt on the
    # CPU is not always correctly rounded (measured: 1 ulp off numpy's on 1,238 of 100,000 random
    # values), so either path moved to the other library would change its p-values.
    xp = torch if isinstance(u1, torch.Tensor) else np
    u = xp.maximum(u1, n1 * n2 - u1)
    n = n1 + n2
    with np.errstate(invalid="ignore", divide="ignore"):
        sd = xp.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
        z = (u - n1 * n2 / 2.0 - 0.5) / sd
        if xp is torch:
            u, z, tie_term = u.cpu().numpy(), z.cpu().numpy(), tie_term.cpu().numpy()
        # scipy's ndtr, not torch's: torch.special.ndtr loses accuracy in the far tail (measured in
        # float64: 2.82316e-10 against 2.82316e-10 * (1 + 8e-7) at z = -6.2, 0 at z = -10), exactly
        # where H3's Bonferroni bar lies (1e-4 / 530,432 = 1.9e-10). An all-tied unit: sd 0, z = -inf,
        # p 2 -> clipped to 1 as scipy.
        p = 2.0 * special.ndtr(-z)
    exact = ((n1 <= 8) | (n2 <= 8)) & (tie_term == 0) & (n1 > 0) & (n2 > 0)
    if exact.any():
        if np.ndim(n1) == 0 and np.ndim(n2) == 0:
            p[exact] = 2.0 * _mwu_exact_sf(u[exact], int(n1), int(n2))
        else:
            # One pass per distinct (n1, n2) pair, not per unit: sizes vary only through NaN masking.
            sizes = np.stack([n1[exact], n2[exact]], axis=1)
            pairs, inverse = np.unique(sizes, axis=0, return_inverse=True)
            inverse = inverse.ravel()
            p_exact = np.empty(len(sizes))
            for g, (a, b) in enumerate(pairs):
                sel = inverse == g
                p_exact[sel] = 2.0 * _mwu_exact_sf(u[exact][sel], int(a), int(b))
            p[exact] = p_exact
    return np.where((n1 > 0) & (n2 > 0), np.clip(p, 0.0, 1.0), np.nan), exact


def mann_whitney_u(x: np.ndarray, y: np.ndarray) -> MannWhitneyResult:
    """Two-sided Mann-Whitney U test per unit, matching ``scipy.stats.mannwhitneyu(x, y,
    alternative="two-sided")`` (method "auto") applied to each column with its NaNs dropped.

    Like scipy 1.17, a unit uses the exact null distribution when one sample has at most 8 values and
    the unit has no ties, else the normal approximation with tie and continuity correction. The
    original method used this unpaired test on paired data (docs/method.md flaw 1). Units where a
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
    p, exact = _mwu_p(u1, n1, n2, tie_term)
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
    of a 7B model at once (docs/method.md "H3"), on ``device`` (default: where ``x`` lives; a GPU
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
    dtype = _sort_dtype(xt)
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
        rank2, tie_term[rows] = _tie_groups(~tied[rows])
        r1[rows] = (rank2.to(torch.float64) / 2.0 * from_x[rows]).sum(dim=1)
    u1 = r1 - n1 * (n1 + 1) / 2.0
    p, exact = _mwu_p(u1, n1, n2, tie_term)
    u1 = u1.cpu().numpy()
    sizes = (np.full(u1.shape, n1), np.full(u1.shape, n2))
    return MannWhitneyResult(u1.reshape(units), p.reshape(units), sizes[0].reshape(units),
                             sizes[1].reshape(units), exact.reshape(units))
