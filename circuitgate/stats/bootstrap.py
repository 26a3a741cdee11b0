"""Percentile bootstrap intervals of effect sizes: Cohen's d with the two groups resampled independently
(the original method, docs/method.md "H1"), and d_z with whole pairs resampled (the paired method,
docs/method.md flaw 1)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from circuitgate import CircuitgateError
from circuitgate.stats.effects import _d_z, cohens_d
from circuitgate.stats.inputs import _as_float, _check_count, _check_level, _finite64


class BootstrapCI(NamedTuple):
    """Percentile bootstrap confidence interval of Cohen's d per unit."""

    effect: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_boot: int
    level: float


class PairedCI(NamedTuple):
    """Percentile bootstrap confidence interval of the paired effect size d_z per unit."""

    effect: np.ndarray   # d_z on all pairs
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_boot: int
    level: float


def _tail(level: float) -> float:
    """The lower percentile (0-100) of a central ``level`` interval; the upper is 100 minus it."""
    return (1.0 - level) / 2.0 * 100.0


def bootstrap_d_ci(x: np.ndarray, y: np.ndarray, *, n_boot: int, seed: int, ddof: int = 0,
                   eps: float = 1e-10, level: float = 0.95) -> BootstrapCI:
    """Percentile bootstrap CI of ``cohens_d(x, y)``, the two groups resampled independently
    (docs/method.md "H1": the original's unpaired bootstrap, flaw 1). All ``n_boot`` resamples are
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
    tail = _tail(level)
    # nan-aware: a resample can leave a NaN-masked unit with too few samples for its variance
    low, high = np.nanpercentile(ds, [tail, 100.0 - tail], axis=0)
    return BootstrapCI(effect, low, high, n_boot, level)


def _percentile_with_inf(values: np.ndarray, q: float) -> np.ndarray:
    """The q-th percentile along axis 0, NaN ignored, by linear interpolation between neighbouring
    order statistics (numpy's default method) that stays defined with infinite values.

    numpy's lerp a + (b - a) w turns an infinite neighbour into NaN (inf - inf, or 0 * inf); here a
    neighbour with weight 0 is dropped and one with positive weight counts, so a bound next to an
    infinite order statistic it leans on is that infinity (both neighbours -inf and +inf: NaN).
    All-NaN columns give NaN.
    """
    s = np.sort(values, axis=0)  # NaN sorts last, after +inf
    k = (~np.isnan(values)).sum(axis=0)
    h = np.maximum(k - 1, 0) * (q / 100.0)
    lo = np.floor(h).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(k - 1, 0))
    w = h - lo
    a = np.take_along_axis(s, lo[None], axis=0)[0]
    b = np.take_along_axis(s, hi[None], axis=0)[0]
    with np.errstate(invalid="ignore"):
        lerp = a + (b - a) * w
        weighted = np.where(w < 1.0, (1.0 - w) * a, 0.0) + np.where(w > 0.0, w * b, 0.0)
    out = np.where(np.isfinite(a) & np.isfinite(b), lerp, weighted)
    return np.where(k > 0, out, np.nan)


def paired_bootstrap_dz(diff: np.ndarray | torch.Tensor, *, n_boot: int, seed: int, level: float = 0.95,
                        chunk: int = 4096) -> PairedCI:
    """Percentile bootstrap CI of ``d_z`` per unit, resampling pairs (rows of diff [n_pairs, *units]).

    Pairs stay whole, unlike the original's independent resampling of two groups (docs/method.md
    flaw 1). One index matrix [n_boot, n_pairs] from ``np.random.default_rng(seed)`` is shared by all
    units, so the CIs of different units come from the same resamples. Units go in chunks of
    ``chunk`` (the result does not depend on it), and each chunk's resampled sums are two matrix
    products with the resample's count matrix [n_boot, n_pairs] rather than an [n_boot, n_pairs,
    chunk] gather: memory O(n_boot x chunk), and all 530,432 neurons of a 7B model are feasible.

    The products run on data centred on each unit's full-sample mean (variance by sum of squares
    minus n mean^2 then loses no accuracy to a large mean). A resample whose variance falls below
    1e-4 of the unit's full-sample variance may be a degenerate one (every drawn difference equal:
    sd 0, so d_z is 0 or +/-inf exactly as in ``d_z``) or near it, where cancellation would leave a
    rounding residue; those few are recomputed exactly from their drawn values. Resampled d_z can
    therefore be infinite; the percentiles keep infinities (``_percentile_with_inf``): a bound that
    leans on an infinite resample is infinite, which reports rather than hides a degenerate unit.
    NaN resampled values (only with n_pairs < 2) are ignored. n_boot == 0: NaN bounds.
    """
    x = _finite64(diff, "diff")
    if n_boot < 0 or chunk < 1:
        raise CircuitgateError(f"paired_bootstrap_dz needs n_boot >= 0 and chunk >= 1, got {n_boot} and {chunk}")
    if not 0.0 < level < 1.0:
        raise CircuitgateError(f"paired_bootstrap_dz: level must lie in (0, 1), got {level}")
    effect = _d_z(x)
    n, units = x.shape[0], x.shape[1:]
    if n_boot == 0 or n < 2:
        nan = np.full(effect.shape, np.nan)
        return PairedCI(effect, nan, nan.copy(), n_boot, level)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    counts = np.zeros((n_boot, n))
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)  # how often each pair is drawn
    flat = x.reshape(n, -1)
    tail = _tail(level)
    low, high = np.empty(flat.shape[1]), np.empty(flat.shape[1])
    for start in range(0, flat.shape[1], chunk):
        xs = flat[:, start: start + chunk]
        mean = xs.mean(axis=0)
        xc = xs - mean
        sq = xc * xc
        s1, s2 = counts @ xc, counts @ sq
        full_var = sq.sum(axis=0) / (n - 1)
        var = (s2 - s1 * s1 / n) / (n - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            ds = (mean + s1 / n) / np.sqrt(var)
        constant = xs.max(axis=0) == xs.min(axis=0)  # every resample degenerate; its residue var could pass
        suspect = ~(var > 1e-4 * full_var) | constant[None, :]
        b_idx, u_idx = np.nonzero(suspect)
        step = max(1, 2 ** 20 // n)
        for s in range(0, len(b_idx), step):  # chunks of resamples bound the [n_pairs, k] gather
            b, u = b_idx[s: s + step], u_idx[s: s + step]
            ds[b, u] = _d_z(xs[idx[b], u[:, None]].T)
        low[start: start + chunk] = _percentile_with_inf(ds, tail)
        high[start: start + chunk] = _percentile_with_inf(ds, 100.0 - tail)
    return PairedCI(effect, low.reshape(units), high.reshape(units), n_boot, level)


class Interval(NamedTuple):
    """A point estimate per target with its confidence interval."""

    estimate: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray


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
