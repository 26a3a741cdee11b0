"""Effect sizes: NaN-aware moments and Cohen's d of two groups (the original method, docs/method.md
"H1"-"H3"), and the paired d_z of pair differences (docs/method.md flaw 1)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from circuitgate.stats.inputs import _as_float, _finite64


class Moments(NamedTuple):
    """NaN-aware per-unit sample size, mean and variance."""

    n: np.ndarray
    mean: np.ndarray
    var: np.ndarray


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
