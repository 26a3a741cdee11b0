"""The change of a per-unit effect between two runs (B minus A), judged against a material margin
(docs/design.md, "Gating"): did it move beyond the margin (a minimum-effect test), or is it shown to
lie within it (an equivalence test, TOST)?

Every estimator ends in the same place: an estimate ``delta`` per unit, its standard error and degrees
of freedom (``inf``: normal), from which ``_judged`` draws the interval and both p-values. They differ in
what the two runs stored:

- ``change_of_means``: per-pair values whose mean is the effect (H5's interaction, H4's depth bins).
  On the same pairs the test is the paired t-test of b - a; on different pairs, Welch's.
- ``change_of_dz``: per-pair differences whose d_z is the effect (H1 and H2 under the paired method);
  the standard error by a bootstrap that resamples whole pairs of both runs together (paired) or each
  run on its own (different pairs).
- ``change_of_replicates``: bootstrap replicates of each run's effect (H3's layer shares, whose
  statistic has no per-pair form); paired when both runs drew the same resamples of the same pairs;
  t with the replicates' degrees of freedom.
- ``change_of_intervals``: only each run's interval (an older document, the original method's H1):
  unpaired, standard errors read back from the intervals' widths.

The tests, for margin m >= 0:
- moved: H0 |delta| <= m, rejected when the interval's lower tail clears m on either side:
  p = min(1, 2 min(P(T >= (d - m) / se), P(T <= (d + m) / se))); m = 0 is the ordinary two-sided test.
- within (TOST, Schuirmann 1987): H0 |delta| >= m, p = max(P(T >= (d + m) / se), P(T <= (d - m) / se)).
A standard error of 0 (identical values: a rerun) decides exactly: moved iff |d| > m, within iff |d| < m.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import stats as sps

from circuitgate import CircuitgateError
from circuitgate.stats.effects import _d_z
from circuitgate.stats.inputs import _check_count, _check_level


class Change(NamedTuple):
    """Per unit: the change B - A of an effect, its interval, and the two tests against the margin."""

    delta: np.ndarray
    se: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    p_moved: np.ndarray  # H0: |delta| <= margin
    p_within: np.ndarray  # H0: |delta| >= margin (equivalence)
    df: np.ndarray  # inf: normal
    margin: float
    level: float
    paired: bool
    method: str


def _judged(delta: np.ndarray, se: np.ndarray, df: np.ndarray | float, margin: float, level: float,
            paired: bool, method: str) -> Change:
    delta = np.asarray(delta, dtype=float)
    se = np.broadcast_to(np.asarray(se, dtype=float), delta.shape).copy()
    df = np.broadcast_to(np.asarray(df, dtype=float), delta.shape).copy()
    margin = float(margin)
    if not (np.isfinite(margin) and margin >= 0):
        raise CircuitgateError(f"a margin must be a finite number >= 0, got {margin}")
    level = _check_level(level)
    t = sps.t
    with np.errstate(invalid="ignore", divide="ignore"):
        up, down = (delta - margin) / se, (delta + margin) / se
        p_moved = np.minimum(1.0, 2.0 * np.minimum(t.sf(up, df), t.cdf(down, df)))
        p_within = np.maximum(t.sf(down, df), t.cdf(up, df))
        half = t.ppf(0.5 + level / 2.0, df) * se
    exact = se == 0
    if exact.any():  # no spread: the values decide without a distribution
        p_moved = np.where(exact, np.where(np.abs(delta) > margin, 0.0, 1.0), p_moved)
        p_within = np.where(exact, np.where(np.abs(delta) < margin, 0.0, 1.0), p_within)
        half = np.where(exact, 0.0, half)
    unknown = ~np.isfinite(delta) | ~np.isfinite(se) | (se < 0)  # nothing can be said either way
    p_moved, p_within = np.where(unknown, 1.0, p_moved), np.where(unknown, 1.0, p_within)
    return Change(delta, se, delta - half, delta + half, p_moved, p_within, df, margin, level, paired, method)


def _two(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise CircuitgateError(f"per-pair values must be [pairs, units] with the same units, got {a.shape} and {b.shape}")
    if paired and a.shape != b.shape:
        raise CircuitgateError(f"paired values need the same pairs, got {a.shape[0]} and {b.shape[0]}")
    if min(a.shape[0], b.shape[0]) < 2:
        raise CircuitgateError("a change needs at least 2 pairs on each side")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise CircuitgateError("per-pair values must be finite")
    return a, b


def change_of_means(a: np.ndarray, b: np.ndarray, margin: float, *, paired: bool, level: float = 0.95) -> Change:
    """The change of per-unit means of per-pair values a [Pa, U] and b [Pb, U]: the paired t-test of
    b - a on the same pairs (row i of each is pair i), Welch's t-test otherwise (scipy.stats.ttest_rel
    and ttest_ind(equal_var=False) at margin 0; statsmodels' ttost_paired / ttost_ind for the
    equivalence p)."""
    a, b = _two(a, b, paired)
    if paired:
        d = b - a
        n = d.shape[0]
        return _judged(d.mean(axis=0), d.std(axis=0, ddof=1) / np.sqrt(n), n - 1.0, margin, level, True,
                       "paired t over prompt pairs")
    na, nb = a.shape[0], b.shape[0]
    va, vb = a.var(axis=0, ddof=1) / na, b.var(axis=0, ddof=1) / nb
    se2 = va + vb
    with np.errstate(invalid="ignore", divide="ignore"):
        df = se2 ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    df = np.where(se2 > 0, df, np.inf)
    return _judged(b.mean(axis=0) - a.mean(axis=0), np.sqrt(se2), df, margin, level, False,
                   "Welch t (different pairs)")


def _resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n]: how often each of n pairs is drawn in each resample (with replacement)."""
    idx = rng.integers(0, n, size=(n_boot, n))
    counts = np.bincount((idx + n * np.arange(n_boot)[:, None]).ravel(), minlength=n_boot * n)
    return counts.reshape(n_boot, n).astype(float)


def _resampled_dz(x: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """[n_boot, U] d_z of x [P, U] under each resample of its pairs (``counts``), from two matrix
    products on values centred on the full-sample mean (no [n_boot, P, U] copy)."""
    n = x.shape[0]
    centre = x.mean(axis=0)
    xc = x - centre
    s1, s2 = counts @ xc, counts @ (xc * xc)
    mean = s1 / n
    var = np.maximum(s2 - n * mean * mean, 0.0) / (n - 1)
    total = centre + mean
    with np.errstate(invalid="ignore", divide="ignore"):
        # No spread (a unit whose values are all equal): 0 where they are 0, else +/-inf, as d_z defines it.
        return np.where(var > 0, total / np.sqrt(var), np.where(total == 0, 0.0, np.copysign(np.inf, total)))


def _spread(replicates: np.ndarray) -> np.ndarray:
    """Standard deviation (ddof 1) of each column's finite replicates; infinite when any is infinite
    (a resample with no spread has an infinite d_z: its distribution says nothing finite)."""
    finite = np.isfinite(replicates).all(axis=0)
    with np.errstate(invalid="ignore"):
        sd = np.where(finite, replicates.std(axis=0, ddof=1), np.inf)
    return sd


def change_of_dz(a: np.ndarray, b: np.ndarray, margin: float, *, paired: bool, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> Change:
    """The change of per-unit d_z (mean over sd of per-pair differences, docs/method.md flaw 1) from
    per-pair values a [Pa, U] and b [Pb, U]; the standard error by ``n_boot`` bootstrap resamples of
    the pairs, drawn for both runs at once on the same pairs (the paired bootstrap) and for each run
    on its own otherwise; the tests then use the normal distribution."""
    a, b = _two(a, b, paired)
    n_boot = _check_count(n_boot, "n_boot", 2)
    rng = np.random.default_rng(seed)
    delta = _d_z(b) - _d_z(a)
    if paired:
        counts = _resample_counts(a.shape[0], n_boot, rng)
        se = _spread(_resampled_dz(b, counts) - _resampled_dz(a, counts))
        method = "paired bootstrap of d_z over prompt pairs"
    else:
        ra = _resampled_dz(a, _resample_counts(a.shape[0], n_boot, rng))
        rb = _resampled_dz(b, _resample_counts(b.shape[0], n_boot, rng))
        se = np.sqrt(_spread(ra) ** 2 + _spread(rb) ** 2)
        method = "bootstrap of d_z, each run's pairs on their own (different pairs)"
    return _judged(delta, se, np.inf, margin, level, paired, method)


def change_of_replicates(effect_a: np.ndarray, effect_b: np.ndarray, rep_a: np.ndarray, rep_b: np.ndarray,
                         margin: float, *, paired: bool, level: float = 0.95) -> Change:
    """The change of per-unit effects with each run's bootstrap replicates rep [R, U] of them (the
    effect recomputed on R resamples of the pairs). Paired (both runs drew the same resamples of the
    same pairs): the standard error is the spread of rep_b - rep_a; otherwise of each on its own."""
    rep_a, rep_b = np.asarray(rep_a, dtype=float), np.asarray(rep_b, dtype=float)
    if rep_a.ndim != 2 or rep_b.ndim != 2 or rep_a.shape[1] != rep_b.shape[1] or min(len(rep_a), len(rep_b)) < 2:
        raise CircuitgateError(f"replicates must be [>= 2 resamples, units] with the same units, got {rep_a.shape} "
                               f"and {rep_b.shape}")
    if paired and rep_a.shape != rep_b.shape:
        raise CircuitgateError("paired replicates need the same resamples on both sides")
    delta = np.asarray(effect_b, dtype=float) - np.asarray(effect_a, dtype=float)
    # A handful of replicates estimates the spread roughly: t with their degrees of freedom, not normal.
    if paired:
        se, df = _spread(rep_b - rep_a), len(rep_a) - 1.0
        method = "paired bootstrap replicates (the same resamples of the same pairs)"
    else:
        se, df = np.sqrt(_spread(rep_a) ** 2 + _spread(rep_b) ** 2), min(len(rep_a), len(rep_b)) - 1.0
        method = "bootstrap replicates of each run on its own"
    return _judged(delta, se, df, margin, level, paired, method)


def change_of_intervals(effect_a: np.ndarray, ci_a: np.ndarray, effect_b: np.ndarray, ci_b: np.ndarray,
                        margin: float, *, interval_level: float = 0.95, level: float = 0.95) -> Change:
    """The change of per-unit effects known only by their intervals ci [U, 2] (at ``interval_level``):
    each standard error read back as the interval's half width over the normal quantile, the two runs
    taken as independent (conservative when they share pairs: their covariance would shrink it)."""
    ci_a, ci_b = np.asarray(ci_a, dtype=float).reshape(-1, 2), np.asarray(ci_b, dtype=float).reshape(-1, 2)
    z = sps.norm.ppf(0.5 + _check_level(interval_level) / 2.0)
    se_a, se_b = (ci_a[:, 1] - ci_a[:, 0]) / (2 * z), (ci_b[:, 1] - ci_b[:, 0]) / (2 * z)
    delta = np.asarray(effect_b, dtype=float) - np.asarray(effect_a, dtype=float)
    return _judged(delta, np.sqrt(se_a ** 2 + se_b ** 2), np.inf, margin, level, False,
                   "each run's interval (independent normal)")


class NoiseFloor(NamedTuple):
    """How many units a rerun on other pairs like these would put in another class by chance."""

    expected_flips: float  # mean over resamples of the units whose class differs from the run's
    sd: float
    resamples: int
    n_units: int
    how: str


def noise_floor(classes: np.ndarray, resampled_classes: np.ndarray, how: str) -> NoiseFloor:
    """The noise floor of a run's classes [U] from its decisions rerun on resamples of its pairs
    [R, U] (docs/design.md, "Gating"). A bootstrap resample repeats pairs, which sharpens a test a
    little, so this leans high."""
    classes, resampled_classes = np.asarray(classes), np.asarray(resampled_classes)
    if resampled_classes.ndim != 2 or resampled_classes.shape[1] != classes.size:
        raise CircuitgateError(f"resampled classes must be [resamples, {classes.size}], got {resampled_classes.shape}")
    flips = (resampled_classes != classes[None, :]).sum(axis=1)
    return NoiseFloor(float(flips.mean()) if flips.size else 0.0, float(flips.std(ddof=1)) if flips.size > 1 else 0.0,
                      int(flips.size), int(classes.size), how)
