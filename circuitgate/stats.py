"""Vectorised statistics: effect sizes, rank tests, multiple-testing corrections, bootstrap, folds.

Every function works along axis 0 (samples) over any number of trailing unit axes (layers, heads,
neurons) in one pass; NaN marks a missing sample (H2 skips prompts per head, docs/method.md "H2"),
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
    (docs/method.md "H1", "H2", "H3"). The pooled SD is the unweighted mean of the two variances,
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


# --- paired statistics (docs/method.md flaw 1: tests on pair differences; flaw 5: attainable p) -------------

EXACT_MAX_N = 50  # exact null distribution of the signed-rank statistic up to this many non-zero differences (scipy's auto rule)
_PERMUTATION_MAX_PAIRS = 13  # scipy's auto rule: with ties or zeros and at most 13 pairs, all 2**13 sign flips


class WilcoxonResult(NamedTuple):
    """Wilcoxon signed-rank test per unit (``wilcoxon_signed_rank``)."""

    statistic: np.ndarray  # W+ = sum of the ranks of |diff| over positive differences, zeros dropped (zero_method="wilcox")
    p: np.ndarray          # two-sided
    p_greater: np.ndarray  # one-sided, H1: differences tend to be > 0
    p_less: np.ndarray     # one-sided, H1: differences tend to be < 0
    n: np.ndarray          # non-zero differences per unit (int)
    exact: np.ndarray      # bool: the exact distribution was used


class PairedCI(NamedTuple):
    """Percentile bootstrap confidence interval of the paired effect size d_z per unit."""

    effect: np.ndarray   # d_z on all pairs
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_boot: int
    level: float


class FDRResult(NamedTuple):
    """One false-discovery-rate family over a whole array of p-values (``fdr_correction``)."""

    reject: np.ndarray
    p_adj: np.ndarray
    bar: float     # the smallest rejection threshold of the procedure: alpha/m for BH, alpha/(m * sum_{i<=m} 1/i) for BY
    method: str    # "bh" or "by"


def _signed_rank_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """P(W+ <= w) and P(W+ >= w), w = 0..n(n+1)/2, for n untied non-zero differences under H0.

    The counts of subsets of {1..n} with each rank sum come from the DP "add rank k or not" in Python
    integers, so they are exact; each tail is one correctly rounded int / int division. (scipy sums
    float pmfs and takes 1 - cdf for the upper half, which loses the far tail's relative accuracy.)
    """
    top = n * (n + 1) // 2
    counts = [1] + [0] * top
    for k in range(1, n + 1):
        for w in range(k * (k + 1) // 2, k - 1, -1):
            counts[w] += counts[w - k]
    total = 2 ** n
    cum = np.cumsum(np.array(counts, dtype=object))  # #(W+ <= w)
    cdf = np.array([c / total for c in cum])
    sf = cdf[::-1].copy()  # the null is symmetric about n(n+1)/4: P(W+ >= w) = P(W+ <= top - w)
    return cdf, sf


def _signed_rank_sort(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|z| in ascending order along dim 1 of a [units, pairs] tensor, as an integer key (equal keys =
    tied magnitudes, key 0 = a zero difference), and whether each sorted entry was positive.

    On the CPU one numpy sort of unsigned keys (bit pattern of |z|) << 1 | (z > 0) gives both at once:
    the bit patterns of non-negative floats order like the floats, the sign bit rides along in bit 0,
    and no argsort or gather is needed (measured for 530,432 rows of 50 float32: 0.1 s against 0.9 s
    for argsort + gather). On a GPU, torch.sort and a gather.
    """
    if z.device.type == "cpu":
        zn = z.numpy()
        signed, unsigned = (np.int32, np.uint32) if zn.dtype == np.float32 else (np.int64, np.uint64)
        key = np.abs(zn).view(unsigned)  # a fresh array; |finite| < 2**31 (2**63), so << 1 cannot overflow
        key <<= 1
        key |= zn > 0
        key.sort(axis=1)
        positive = (key & 1).astype(bool)
        key >>= 1
        return torch.from_numpy(key.view(signed)), torch.from_numpy(positive)
    return _signed_rank_sort_torch(z)


def _signed_rank_sort_torch(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``_signed_rank_sort`` with torch.sort (the GPU path): the sorted |z| themselves are the key."""
    mag, order = torch.sort(z.abs(), dim=1)
    return mag, torch.gather(z > 0, 1, order)


def _doubled_ranks(mag: torch.Tensor, n_zero: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """2 x the average rank among the non-zero magnitudes (0 for zeros) of each sorted row, and the
    tie term sum(t^3 - t) over the non-zero tie groups.

    Zeros have the smallest magnitude, so they fill the first n_zero sorted positions and never share
    a tie group with a non-zero value: the rank among the non-zeros is the average rank among all
    minus n_zero. Doubling keeps average ranks (halves) integral.
    """
    rows, m = mag.shape
    differs = mag[:, 1:] != mag[:, :-1]
    edge = torch.ones((rows, 1), dtype=torch.bool, device=mag.device)
    starts, ends = torch.cat([edge, differs], dim=1), torch.cat([differs, edge], dim=1)
    idx = torch.arange(m, device=mag.device).expand(rows, m)
    first = torch.cummax(torch.where(starts, idx, 0), dim=1).values
    last = torch.flip(torch.cummin(torch.flip(torch.where(ends, idx, m), [1]), dim=1).values, [1])
    nonzero = mag != 0
    size = (last - first + 1).to(torch.float64)
    # A tie group of size t contributes t elements of (t^2 - 1) each: t^3 - t in total.
    tie_term = torch.where(nonzero, size * size - 1.0, 0.0).sum(dim=1)
    rank2 = torch.where(nonzero, first + last + 2 - 2 * n_zero[:, None], 0)
    return rank2, tie_term


def wilcoxon_signed_rank(diff: np.ndarray | torch.Tensor, device: str | torch.device | None = None) -> WilcoxonResult:
    """Wilcoxon signed-rank test of paired differences per unit, all three alternatives at once.

    diff [n_pairs, *units] (reasoning - recall), float16/bfloat16/float32/float64, numpy or torch, all
    finite; axis 0 is reduced. The paired test keeps what the original unpaired tests threw away
    (docs/method.md flaw 1). Runs on ``device`` (default: where ``diff`` lives): a [50, 530432]
    float32 family takes about a second on two CPU cores.

    Agrees per unit with ``scipy.stats.wilcoxon(d, zero_method="wilcox", correction=False,
    method="auto", alternative=...)`` of scipy 1.17, whose "auto" rule is:

    - n_pairs <= EXACT_MAX_N, no zero and no tied |d|: the exact null distribution of W+ (``exact``);
    - otherwise, with n_pairs <= 13: a permutation test over all 2**n_pairs sign flips, which is the
      exact conditional null under ties and zeros; mirrored here by enumerating the flips as one
      matrix product over units (``exact`` is True for these units too);
    - otherwise the normal approximation of W+ with zeros dropped: mean n(n+1)/4, variance
      n(n+1)(2n+1)/24 - sum(t^3 - t)/48 over the non-zero tie groups, no continuity correction.

    The rule looks at n_pairs (zeros included), as scipy does, not at the non-zero count n. Two-sided
    p = min(1, 2 min(P(W+ >= w), P(W+ <= w))) on the exact and permutation paths, 2 ndtr(-|z|) on
    the normal one. Deviation: a unit whose differences are all zero (n == 0) gets statistic 0 and
    p = p_greater = p_less = 1 (scipy: NaN when n_pairs > 13, 1 otherwise). p-values are float64
    whatever the input dtype; tails use scipy's ndtr (torch's is inaccurate in the far tail, see
    ``mann_whitney_u_dense``).
    """
    dt = torch.as_tensor(diff)
    if dt.ndim < 1 or dt.shape[0] == 0:
        raise CircuitgateError("wilcoxon_signed_rank needs diff of shape [n_pairs >= 1, *units]")
    if not dt.is_floating_point():
        raise CircuitgateError(f"wilcoxon_signed_rank: diff must be floating point, got {dt.dtype}")
    if not bool(torch.isfinite(dt).all()):
        raise CircuitgateError("wilcoxon_signed_rank: differences must be finite")
    m, units = int(dt.shape[0]), tuple(dt.shape[1:])
    dev = torch.device(device) if device is not None else dt.device
    # float16/bfloat16 widen to float32 exactly (ties kept); numpy cannot handle bfloat16.
    dtype = torch.float64 if dt.dtype == torch.float64 else torch.float32
    z = dt.reshape(m, -1).to(dev, dtype).T.contiguous()  # [units, pairs]: one sort per row
    mag, positive = _signed_rank_sort(z)
    del z
    n_zero = (mag == 0).sum(dim=1)
    n = m - n_zero
    has_ties = ((mag[:, 1:] == mag[:, :-1]) & (mag[:, 1:] != 0)).any(dim=1)
    n_pos = positive.sum(dim=1)
    # Without ties the sorted position j (1-based) has rank j - n_zero. Integers below 2**24 are exact
    # in float32, so the CPU's float32 product is exact while n_pairs(n_pairs + 1)/2 < 2**24; a GPU
    # may run float32 products in TF32 (10-bit mantissa), so it gets float64.
    small = m * (m + 1) // 2 < 2 ** 24
    mm_dtype = torch.float32 if small and dev.type == "cpu" else torch.float64
    pos_rank = torch.arange(1, m + 1, device=dev, dtype=mm_dtype)
    w_plus = (positive.to(mm_dtype) @ pos_rank).to(torch.float64) - (n_zero * n_pos).to(torch.float64)
    tie_term = torch.zeros(len(n), device=dev, dtype=torch.float64)
    exact = (n_zero == 0) & ~has_ties & (m <= EXACT_MAX_N)
    permute = ~exact & (n > 0) & (m <= _PERMUTATION_MAX_PAIRS)
    ranked = torch.nonzero(has_ties | permute).squeeze(1)
    perm_rows, perm_rank2 = [], []
    for start in range(0, len(ranked), 65536):  # chunks of units bound the [units, pairs] int64 temporaries
        rows = ranked[start: start + 65536]
        rank2, tie_term[rows] = _doubled_ranks(mag[rows], n_zero[rows])
        w_plus[rows] = (rank2 * positive[rows]).sum(dim=1).to(torch.float64) / 2.0
        keep = permute[rows]
        perm_rows.append(rows[keep])
        perm_rank2.append(rank2[keep])
    del mag

    w = w_plus.cpu().numpy()
    nn = n.cpu().numpy().astype(np.int64)
    tie = tie_term.cpu().numpy()
    exact_np, permute_np = exact.cpu().numpy(), permute.cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        var = nn * (nn + 1) * (2 * nn + 1) / 24.0 - tie / 48.0
        zscore = (w - nn * (nn + 1) / 4.0) / np.sqrt(var)
    p_greater, p_less = special.ndtr(-zscore), special.ndtr(zscore)
    p = 2.0 * special.ndtr(-np.abs(zscore))
    if exact_np.any():
        # With scipy's rule an exact unit has no zero, so n == n_pairs; grouping by n keeps this
        # right for any rule (one table per distinct n, never per unit).
        for size in np.unique(nn[exact_np]):
            sel = exact_np & (nn == size)
            cdf, sf = _signed_rank_tables(int(size))
            wi = w[sel].astype(np.int64)
            p_less[sel], p_greater[sel] = cdf[wi], sf[wi]
    if permute_np.any():
        rows = torch.cat(perm_rows)
        # doubled ranks sum to <= 2 * 91: exact in float32 on the CPU, float64 against TF32 on a GPU
        pdtype = torch.float32 if dev.type == "cpu" else torch.float64
        rank2 = torch.cat(perm_rank2).to(pdtype)
        flips = torch.arange(2 ** m, device=dev)[:, None].bitwise_right_shift(torch.arange(m, device=dev)) & 1
        flips = flips.to(pdtype)  # [2**m, m]: every assignment of signs to the magnitudes
        observed = (2.0 * w_plus[rows]).to(pdtype)
        ge, le = [], []
        step = max(1, 2 ** 22 // 2 ** m)
        for start in range(0, len(rows), step):  # chunks of units bound the [2**m, units] null
            null = flips @ rank2[start: start + step].T
            obs = observed[start: start + step]
            ge.append((null >= obs).sum(dim=0))
            le.append((null <= obs).sum(dim=0))
        rows_np = rows.cpu().numpy()
        p_greater[rows_np] = torch.cat(ge).cpu().numpy() / 2.0 ** m
        p_less[rows_np] = torch.cat(le).cpu().numpy() / 2.0 ** m
    two = exact_np | permute_np
    p[two] = 2.0 * np.minimum(p_greater[two], p_less[two])
    empty = nn == 0
    w[empty] = 0.0
    p[empty] = p_greater[empty] = p_less[empty] = 1.0
    p = np.clip(p, 0.0, 1.0)
    return WilcoxonResult(w.reshape(units), p.reshape(units), p_greater.reshape(units), p_less.reshape(units),
                          nn.reshape(units), (exact_np | permute_np).reshape(units))


def min_attainable_p(n: int) -> float:
    """The smallest two-sided p ``wilcoxon_signed_rank`` can give with n non-zero, untied differences
    (all of one sign): 2 / 2**n on the exact path (n <= EXACT_MAX_N), else the normal approximation's
    p at W+ = n(n+1)/2. A threshold below this can never be passed, however strong the effect
    (docs/method.md flaw 5: 30 pairs cannot reach a Bonferroni bar over 530,432 neurons). n < 1: 1.
    """
    n = int(n)
    if n < 1:
        return 1.0
    if n <= EXACT_MAX_N:
        return min(1.0, 2.0 / 2 ** n)
    z = (n * (n + 1) / 4.0) / np.sqrt(n * (n + 1) * (2 * n + 1) / 24.0)
    return float(min(1.0, 2.0 * special.ndtr(-z)))


def _finite64(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """float64 numpy copy of a numpy or torch array (any float dtype, bfloat16 included), finite, with
    a sample axis."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        raise CircuitgateError(f"{name} must have a sample axis (axis 0)")
    if not np.all(np.isfinite(x)):
        raise CircuitgateError(f"{name}: values must be finite")
    return x


def _d_z(x: np.ndarray) -> np.ndarray:
    """d_z along axis 0 of a finite float64 array (see ``d_z``)."""
    n = x.shape[0]
    if n < 2:
        return np.full(x.shape[1:], np.nan)
    mean = x.mean(axis=0)
    dev = x - mean
    sd = np.sqrt((dev * dev).sum(axis=0) / (n - 1))
    # No spread exactly when every value is equal; tested on the values, because the two-pass sd of
    # n equal values can come out as a rounding residue instead of 0.
    constant = x.max(axis=0) == x.min(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = mean / sd
    if constant.any():
        d = np.where(constant, np.where(x[0] == 0, 0.0, np.copysign(np.inf, x[0])), d)
    return d


def d_z(diff: np.ndarray | torch.Tensor) -> np.ndarray:
    """Paired effect size d_z = mean(diff) / sd(diff, ddof=1) over axis 0, float64, per unit.

    The standardised mean of the pair differences, the effect size that goes with the paired test
    (docs/method.md flaw 1). Not capped (flaw 6: a huge |d_z| is a finding to report, e.g. a template
    confound, not to hide). No spread (all differences equal): 0 where they are 0, else +/-inf with
    the sign of the mean. Fewer than 2 pairs: NaN.
    """
    return _d_z(_finite64(diff, "diff"))


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
    tail = (1.0 - level) / 2.0 * 100.0
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


def fdr_correction(p: np.ndarray, alpha: float, method: str = "bh") -> FDRResult:
    """False discovery rate control over ONE family: every p-value in ``p`` (all features x all
    units, flattened), via statsmodels ``multipletests`` "fdr_bh" (Benjamini-Hochberg) or "fdr_by"
    (Benjamini-Yekutieli, valid under any dependence between the tests, e.g. features computed from the
    same activations: docs/method.md flaw 5). Correcting per feature or per layer instead would let the
    family size, and so the error rate, grow with the number of families.

    ``reject`` and ``p_adj`` keep p's shape. ``bar`` is the procedure's smallest rejection threshold
    (the bar the best unit must pass): alpha/m for BH, alpha/(m sum_{i<=m} 1/i) for BY; compare it with
    ``min_attainable_p`` to see whether a rejection is possible at all. NaN p-values are an error:
    dropping them would silently shrink the family.
    """
    methods = {"bh": "fdr_bh", "by": "fdr_by"}
    if method not in methods:
        raise CircuitgateError(f"unknown FDR method {method!r}: use one of bh, by")
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        raise CircuitgateError("fdr_correction needs at least one p-value")
    if np.isnan(p).any():
        raise CircuitgateError("fdr_correction: NaN p-values are not allowed (every test in the family must have a p)")
    if np.any((p < 0) | (p > 1)):
        raise CircuitgateError("fdr_correction: p-values must lie in [0, 1]")
    if not 0.0 < alpha < 1.0:
        raise CircuitgateError(f"fdr_correction: alpha must lie in (0, 1), got {alpha}")
    m = p.size
    reject, p_adj = multipletests(p.ravel(), alpha=alpha, method=methods[method])[:2]
    harmonic = 1.0 if method == "bh" else float(np.sum(1.0 / np.arange(1, m + 1)))
    return FDRResult(reject.reshape(p.shape), p_adj.reshape(p.shape), alpha / (m * harmonic), method)


def pair_splits(n_pairs: int, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Repeated random half splits of pair indices into (select, confirm): select units on one half,
    confirm them on the other, never on the data that chose them (docs/method.md flaw 3). Whole pairs
    are split, so both members of a pair land on the same side.

    Each split is a permutation from one ``np.random.default_rng(seed)`` cut into floor(n/2) and the
    rest; both index arrays sorted, disjoint, covering all pairs.
    """
    if n_pairs < 4:
        raise CircuitgateError(f"pair_splits needs at least 4 pairs (2 per half), got {n_pairs}")
    if n_splits < 1:
        raise CircuitgateError(f"pair_splits needs n_splits >= 1, got {n_splits}")
    rng = np.random.default_rng(seed)
    half = n_pairs // 2
    splits = []
    for _ in range(n_splits):  # a handful of splits, not units
        order = rng.permutation(n_pairs)
        splits.append((np.sort(order[:half]), np.sort(order[half:])))
    return splits
