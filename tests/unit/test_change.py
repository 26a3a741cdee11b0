"""The change of an effect between two runs (stats/change.py) against scipy and statsmodels, and its
properties: exact decisions without spread, symmetry, the margin's role, and the noise floor."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from circuitgate import CircuitgateError
from circuitgate.stats import d_z, resample_rows
from circuitgate.stats.change import (change_of_dz, change_of_intervals, change_of_means, change_of_replicates,
                                      noise_floor)


@pytest.fixture
def runs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(20, 4))
    return a, a + rng.normal(0.1, 0.3, size=(20, 4))


def test_paired_means_are_the_paired_t_test_and_statsmodels_tost(runs):
    a, b = runs
    ch = change_of_means(a, b, 0.2, paired=True)
    at_zero = change_of_means(a, b, 0.0, paired=True)
    for j in range(a.shape[1]):
        assert ch.delta[j] == pytest.approx((b[:, j] - a[:, j]).mean())
        assert ch.p_within[j] == pytest.approx(ttost_paired(b[:, j], a[:, j], -0.2, 0.2)[0], rel=1e-10)
        assert at_zero.p_moved[j] == pytest.approx(stats.ttest_rel(b[:, j], a[:, j]).pvalue, rel=1e-10)
        ci = stats.ttest_rel(b[:, j], a[:, j]).confidence_interval(0.95)
        assert (ch.ci_low[j], ch.ci_high[j]) == pytest.approx((ci.low, ci.high), rel=1e-10)
    assert ch.paired and ch.method.startswith("paired t")


def test_unpaired_means_are_welch_and_statsmodels_tost(runs):
    a, b = runs
    b = b[:15] + 0.5  # other pairs, another count
    ch = change_of_means(a, b, 0.2, paired=False)
    at_zero = change_of_means(a, b, 0.0, paired=False)
    for j in range(a.shape[1]):
        assert ch.p_within[j] == pytest.approx(ttost_ind(b[:, j], a[:, j], -0.2, 0.2, usevar="unequal")[0], rel=1e-9)
        assert at_zero.p_moved[j] == pytest.approx(stats.ttest_ind(b[:, j], a[:, j], equal_var=False).pvalue,
                                                   rel=1e-9)
    assert not ch.paired


def test_the_moved_test_is_the_minimum_effect_test_by_hand():
    # One unit, paired differences with mean 1 and sd 1 over 16 pairs: se 0.25, df 15; margin 0.5.
    d = np.array([0.0, 2.0] * 8)[:, None]
    ch = change_of_means(np.zeros_like(d), d, 0.5, paired=True)
    assert ch.se[0] == pytest.approx(np.std(d, ddof=1) / 4)
    t_up = (1.0 - 0.5) / ch.se[0]
    assert ch.p_moved[0] == pytest.approx(2 * stats.t.sf(t_up, 15))
    assert ch.p_within[0] == pytest.approx(max(stats.t.sf((1.0 + 0.5) / ch.se[0], 15),
                                               stats.t.cdf((1.0 - 0.5) / ch.se[0], 15)))


def test_identical_runs_hold_exactly_and_a_shift_without_spread_moves_exactly():
    a = np.arange(10.0)[:, None] * np.ones((1, 3))
    same = change_of_means(a, a, 0.1, paired=True)
    assert (same.delta == 0).all() and (same.se == 0).all()
    assert (same.p_within == 0).all() and (same.p_moved == 1).all()
    assert (same.ci_low == 0).all() and (same.ci_high == 0).all()
    shifted = change_of_means(a, a + np.array([0.25, 0.5, 0.75]), 0.5, paired=True)  # exact in floats
    assert list(shifted.p_within) == [0.0, 1.0, 1.0]  # 0.5 is on the margin: not within
    assert list(shifted.p_moved) == [1.0, 1.0, 0.0]  # nor beyond it


@given(st.integers(0, 10_000), st.floats(0.0, 2.0))
@settings(max_examples=40, deadline=None)
def test_swapping_the_runs_mirrors_the_change(seed, margin):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=(12, 3)), rng.normal(size=(12, 3))
    ab, ba = change_of_means(a, b, margin, paired=True), change_of_means(b, a, margin, paired=True)
    assert np.allclose(ab.delta, -ba.delta) and np.allclose(ab.se, ba.se)
    assert np.allclose(ab.p_moved, ba.p_moved) and np.allclose(ab.p_within, ba.p_within)
    assert np.allclose(ab.ci_low, -ba.ci_high)


@given(st.integers(0, 10_000))
@settings(max_examples=30, deadline=None)
def test_a_wider_margin_is_easier_to_hold_and_harder_to_leave(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(15, 5))
    b = a + rng.normal(0.3, 0.5, size=(15, 5))
    narrow, wide = change_of_means(a, b, 0.1, paired=True), change_of_means(a, b, 0.6, paired=True)
    assert (wide.p_within <= narrow.p_within + 1e-12).all()
    assert (wide.p_moved >= narrow.p_moved - 1e-12).all()


def test_held_and_moved_exclude_each_other_at_the_same_level(runs):
    a, b = runs
    for margin in (0.05, 0.2, 1.0):
        ch = change_of_means(a, b, margin, paired=True)
        assert not ((ch.p_within <= 0.05) & (ch.p_moved <= 0.05)).any()


def test_dz_change_is_the_difference_of_dz_with_a_paired_bootstrap_se(runs):
    a, b = runs
    ch = change_of_dz(a, b, 0.5, paired=True, n_boot=4000, seed=1)
    assert np.allclose(ch.delta, d_z(b) - d_z(a))
    # The same resamples of the same pairs for both runs: one reference loop over them.
    rng = np.random.default_rng(1)
    idx = rng.integers(0, 20, size=(4000, 20))
    ref = np.array([d_z(b[i]) - d_z(a[i]) for i in idx]).std(axis=0, ddof=1)
    assert np.allclose(ch.se, ref, rtol=1e-8)
    unpaired = change_of_dz(a, b, 0.5, paired=False, n_boot=4000, seed=1)
    assert (unpaired.se > ch.se).all()  # b is a + noise: pairing removes most of the spread


def test_dz_of_units_without_spread_compares_as_equal():
    a = np.zeros((10, 2))
    a[:, 1] = np.arange(10.0)
    ch = change_of_dz(a, a.copy(), 0.5, paired=True, n_boot=200)
    assert ch.delta[0] == 0 and ch.se[0] == 0 and ch.p_within[0] == 0


def test_replicates_pair_up_when_both_runs_drew_the_same_resamples():
    rng = np.random.default_rng(3)
    common = rng.normal(size=(10, 2))
    ra, rb = common, common + 0.01 * rng.normal(size=(10, 2))
    paired = change_of_replicates([0.2, 0.3], [0.21, 0.3], ra, rb, 0.05, paired=True)
    unpaired = change_of_replicates([0.2, 0.3], [0.21, 0.3], ra, rb, 0.05, paired=False)
    assert np.allclose(paired.se, (rb - ra).std(axis=0, ddof=1))
    assert np.allclose(unpaired.se, np.sqrt(ra.var(axis=0, ddof=1) + rb.var(axis=0, ddof=1)))
    assert (paired.p_within < 0.05).all() and (unpaired.p_within > 0.05).all()


def test_intervals_give_back_their_standard_errors():
    z = stats.norm.ppf(0.975)
    ch = change_of_intervals([1.0], [[1.0 - z * 0.3, 1.0 + z * 0.3]], [2.0], [[2.0 - z * 0.4, 2.0 + z * 0.4]], 0.5)
    assert ch.se[0] == pytest.approx(0.5) and ch.delta[0] == pytest.approx(1.0)
    assert ch.p_moved[0] == pytest.approx(2 * stats.norm.sf((1.0 - 0.5) / 0.5))


@pytest.mark.parametrize("call, message", [
    (lambda: change_of_means(np.zeros((5, 2)), np.zeros((4, 2)), 0.1, paired=True), "same pairs"),
    (lambda: change_of_means(np.zeros((5, 2)), np.zeros((5, 3)), 0.1, paired=False), "same units"),
    (lambda: change_of_means(np.zeros((1, 2)), np.zeros((1, 2)), 0.1, paired=True), "at least 2 pairs"),
    (lambda: change_of_means(np.full((3, 1), np.nan), np.zeros((3, 1)), 0.1, paired=True), "finite"),
    (lambda: change_of_means(np.zeros((3, 1)), np.zeros((3, 1)), -1.0, paired=True), "margin"),
])
def test_bad_input_is_one_clear_error(call, message):
    with pytest.raises(CircuitgateError, match=message):
        call()


def test_noise_floor_counts_class_flips_per_resample():
    classes = np.array(["recall", "none", "mixed"])
    resampled = np.array([["recall", "none", "mixed"], ["none", "none", "recall"], ["recall", "mixed", "mixed"]])
    nf = noise_floor(classes, resampled, "by hand")
    assert nf.expected_flips == pytest.approx(1.0) and nf.sd == pytest.approx(1.0)
    assert (nf.resamples, nf.n_units) == (3, 3)


def test_resample_rows_are_reproducible_and_shared_by_seed():
    assert (resample_rows(7, 5, 3) == resample_rows(7, 5, 3)).all()
    assert not (resample_rows(7, 5, 3) == resample_rows(7, 5, 4)).all()
    assert resample_rows(7, 5, 3).shape == (5, 7) and resample_rows(7, 5, 3).max() < 7
