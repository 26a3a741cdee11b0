"""circuitgate.causal: paired bootstrap, the task x target interaction (H5), depth profiles and their
permutation-tested agreement (H4), against slow reference loops, scipy and hand-built cases."""

from __future__ import annotations

import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from circuitgate import CircuitgateError
from circuitgate.causal import TargetStats, classify_targets
from circuitgate.stats import (Agreement, Interval, depth_bins, depth_profile, paired_bootstrap_means, profile_agreement,
                               spearman_rows)

SWAP = {"recall": "reasoning", "reasoning": "recall", "mixed": "mixed", "none": "none"}


# --- paired bootstrap ------------------------------------------------------------------------------------

def _slow_bootstrap(x: np.ndarray, n_boot: int, seed: int, level: float) -> tuple[np.ndarray, np.ndarray]:
    idx = np.random.default_rng(seed).integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    means = np.array([x[row].mean(axis=0) for row in idx])
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2], axis=0, method="linear")
    return low, high


@pytest.mark.parametrize("shape,level", [((12, 5), 0.95), ((7, 2, 3), 0.8), ((30,), 0.5)])
def test_paired_bootstrap_matches_slow_loop_with_same_indices(shape, level):
    x = np.random.default_rng(3).normal(size=shape)
    iv = paired_bootstrap_means(x, n_boot=500, seed=11, level=level)
    low, high = _slow_bootstrap(x, 500, 11, level)
    np.testing.assert_array_equal(iv.estimate, x.mean(axis=0))
    np.testing.assert_allclose(iv.ci_low, low, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(iv.ci_high, high, rtol=1e-12, atol=1e-12)
    assert iv.estimate.shape == iv.ci_low.shape == iv.ci_high.shape == shape[1:]


def test_paired_bootstrap_columns_are_jointly_resampled():
    # A column's interval does not depend on which other columns are resampled with it.
    x = np.random.default_rng(4).normal(size=(15, 6))
    full = paired_bootstrap_means(x, n_boot=300, seed=2)
    alone = paired_bootstrap_means(x[:, [4]], n_boot=300, seed=2)
    np.testing.assert_allclose(full.ci_low[4], alone.ci_low[0], rtol=1e-12)
    np.testing.assert_allclose(full.ci_high[4], alone.ci_high[0], rtol=1e-12)


def test_paired_bootstrap_ci_contains_estimate_for_symmetric_data():
    v = np.random.default_rng(5).exponential(size=(10, 4))
    x = np.concatenate([v, -v]) + np.array([0.0, 1.0, -2.0, 5.0])  # symmetric around each column's shift
    iv = paired_bootstrap_means(x, n_boot=2000, seed=0)
    np.testing.assert_allclose(iv.estimate, [0.0, 1.0, -2.0, 5.0], atol=1e-12)
    assert np.all(iv.ci_low < iv.estimate) and np.all(iv.estimate < iv.ci_high)


def test_paired_bootstrap_n_boot_zero_is_degenerate():
    x = np.random.default_rng(6).normal(size=(8, 3))
    iv = paired_bootstrap_means(x, n_boot=0, seed=0)
    np.testing.assert_array_equal(iv.ci_low, iv.estimate)
    np.testing.assert_array_equal(iv.ci_high, iv.estimate)


def test_paired_bootstrap_nan_column_propagates_alone():
    x = np.random.default_rng(7).normal(size=(9, 3))
    x[2, 1] = np.nan
    iv = paired_bootstrap_means(x, n_boot=200, seed=1)
    assert np.isnan([iv.estimate[1], iv.ci_low[1], iv.ci_high[1]]).all()
    ref = paired_bootstrap_means(x[:, [0, 2]], n_boot=200, seed=1)
    np.testing.assert_allclose(iv.ci_low[[0, 2]], ref.ci_low, rtol=1e-12)
    np.testing.assert_allclose(iv.ci_high[[0, 2]], ref.ci_high, rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(arrays(float, st.tuples(st.integers(2, 9), st.integers(1, 4)), elements=st.floats(-50, 50)),
       st.integers(0, 2**32 - 1))
def test_paired_bootstrap_negation_is_exact(x, seed):
    a = paired_bootstrap_means(x, n_boot=150, seed=seed)
    b = paired_bootstrap_means(-x, n_boot=150, seed=seed)
    np.testing.assert_array_equal(b.estimate, -a.estimate)
    np.testing.assert_array_equal(b.ci_low, -a.ci_high)
    np.testing.assert_array_equal(b.ci_high, -a.ci_low)
    assert np.all(a.ci_low <= a.ci_high)


# --- classify_targets: every branch by hand ----------------------------------------------------------------

P = 12
NOISE = np.random.default_rng(8).normal(0.0, 0.01, size=P)


def _col(mean: float, noise: np.ndarray = NOISE) -> np.ndarray:
    return mean + noise


def test_classify_every_branch():
    alternating = np.where(np.arange(P) % 2 == 0, 1.0, -1.0)
    recall = np.stack([_col(0.0), _col(1.0), _col(1.0), _col(0.0), _col(0.12, alternating)], axis=1)
    reasoning = np.stack([_col(0.01), _col(1.0), _col(0.0), _col(1.0), _col(0.08, -alternating)], axis=1)
    r = classify_targets(recall, reasoning, tau=0.1, n_boot=1000, seed=0)
    # none; hurts both -> mixed; recall; reasoning; recall hurt only by its point estimate but the
    # interaction (0.04 +- 2 per pair) straddles zero -> mixed, not specialised
    assert r.cls.tolist() == ["none", "mixed", "recall", "reasoning", "mixed"]
    assert r.interaction.ci_low[4] < 0 < r.interaction.ci_high[4]
    assert r.interaction.ci_low[2] > 0 and r.interaction.ci_high[3] < 0
    assert isinstance(r, TargetStats) and isinstance(r.interaction, Interval)
    assert (r.n_pairs, r.n_boot, r.level, r.tau) == (P, 1000, 0.95, 0.1)
    assert "paired bootstrap" in r.method


def test_classify_control_turns_selective_target_into_mixed():
    recall = np.stack([_col(1.0), _col(1.0)], axis=1)
    reasoning = np.stack([_col(0.0), _col(0.0)], axis=1)
    # target 0: a random same-size component hurts recall just as much -> nothing selective remains;
    # target 1: no control (all-NaN columns) -> the plain difference decides
    other = np.random.default_rng(9).normal(0.0, 0.01, size=P)
    control_recall = np.stack([_col(1.0, other), np.full(P, np.nan)], axis=1)
    control_reasoning = np.stack([_col(0.0, -other), np.full(P, np.nan)], axis=1)
    plain = classify_targets(recall, reasoning, tau=0.1)
    ctrl = classify_targets(recall, reasoning, tau=0.1, control_recall_drop=control_recall,
                            control_reasoning_drop=control_reasoning)
    assert plain.cls.tolist() == ["recall", "recall"]
    assert ctrl.cls.tolist() == ["mixed", "recall"]
    expected = (recall - reasoning - (control_recall - control_reasoning))[:, 0].mean()
    assert ctrl.interaction.estimate[0] == pytest.approx(expected)
    for field in ("estimate", "ci_low", "ci_high"):  # no control: identical to the uncontrolled interval
        assert getattr(ctrl.interaction, field)[1] == getattr(plain.interaction, field)[1]
    np.testing.assert_array_equal(ctrl.recall_drop.estimate, plain.recall_drop.estimate)


def test_classify_drop_of_exactly_tau_hurts():
    recall = np.full((8, 1), 1.0 - 0.9)  # 0.09999999999999998 in floats
    reasoning = np.zeros((8, 1))
    assert recall[0, 0] < 0.1
    r = classify_targets(recall, reasoning, tau=0.1, n_boot=100)
    assert r.cls.tolist() == ["recall"]
    assert classify_targets(recall - 1e-6, reasoning, tau=0.1, n_boot=100).cls.tolist() == ["none"]


def test_classify_is_deterministic_for_a_seed():
    rng = np.random.default_rng(10)
    recall, reasoning = rng.normal(0.2, 0.3, size=(20, 6)), rng.normal(0.1, 0.3, size=(20, 6))
    a = classify_targets(recall, reasoning, tau=0.1, seed=3)
    b = classify_targets(recall, reasoning, tau=0.1, seed=3)
    c = classify_targets(recall, reasoning, tau=0.1, seed=4)
    for x, y in zip(a[:3], b[:3]):
        for f in Interval._fields:
            np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
    np.testing.assert_array_equal(a.cls, b.cls)
    assert not np.array_equal(a.interaction.ci_low, c.interaction.ci_low)
    np.testing.assert_array_equal(a.interaction.estimate, c.interaction.estimate)


# --- classify_targets: properties ---------------------------------------------------------------------------

drops = st.floats(-2, 2, allow_nan=False, allow_infinity=False)


@st.composite
def drop_sets(draw, with_control: bool = False):
    p, t = draw(st.integers(2, 8)), draw(st.integers(1, 4))
    out = [draw(arrays(float, (p, t), elements=drops)) for _ in range(4 if with_control else 2)]
    if with_control:
        no_control = draw(arrays(bool, (t,)))
        out[2][:, no_control] = np.nan
        out[3][:, no_control] = np.nan
    return out


@settings(max_examples=60, deadline=None)
@given(drop_sets(with_control=True), st.sampled_from([0.0, 0.1, 0.5]), st.integers(0, 1000))
def test_swapping_tasks_mirrors_classes_and_negates_interaction(arrs, tau, seed):
    recall, reasoning, c_recall, c_reasoning = arrs
    kw = dict(tau=tau, n_boot=200, seed=seed)
    a = classify_targets(recall, reasoning, control_recall_drop=c_recall, control_reasoning_drop=c_reasoning, **kw)
    b = classify_targets(reasoning, recall, control_recall_drop=c_reasoning, control_reasoning_drop=c_recall, **kw)
    assert b.cls.tolist() == [SWAP[c] for c in a.cls]
    for f in Interval._fields:
        np.testing.assert_array_equal(getattr(b.recall_drop, f), getattr(a.reasoning_drop, f))
        np.testing.assert_array_equal(getattr(b.reasoning_drop, f), getattr(a.recall_drop, f))
    np.testing.assert_array_equal(b.interaction.estimate, -a.interaction.estimate)
    np.testing.assert_array_equal(b.interaction.ci_low, -a.interaction.ci_high)
    np.testing.assert_array_equal(b.interaction.ci_high, -a.interaction.ci_low)


@settings(max_examples=40, deadline=None)
@given(drop_sets(), st.floats(-3, 3), st.integers(0, 1000))
def test_equal_shift_of_both_tasks_leaves_interaction_unchanged(arrs, c, seed):
    # An ablation that hurts every prompt by the same extra amount says nothing about task selectivity.
    recall, reasoning = arrs
    a = classify_targets(recall, reasoning, tau=0.1, n_boot=200, seed=seed)
    b = classify_targets(recall + c, reasoning + c, tau=0.1, n_boot=200, seed=seed)
    for f in Interval._fields:
        np.testing.assert_allclose(getattr(b.interaction, f), getattr(a.interaction, f), atol=1e-9)
        np.testing.assert_allclose(getattr(b.recall_drop, f), getattr(a.recall_drop, f) + c, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(drop_sets(), st.floats(0.01, 3), st.integers(0, 1000))
def test_hurting_recall_more_keeps_recall_targets_recall(arrs, c, seed):
    # Monotonicity: a larger recall drop raises the interaction by c and cannot unmake a recall target.
    recall, reasoning = arrs
    a = classify_targets(recall, reasoning, tau=0.1, n_boot=200, seed=seed)
    b = classify_targets(recall + c, reasoning, tau=0.1, n_boot=200, seed=seed)
    np.testing.assert_allclose(b.interaction.ci_low, a.interaction.ci_low + c, atol=1e-9)
    assert np.all(b.cls[a.cls == "recall"] == "recall")


@settings(max_examples=40, deadline=None)
@given(drop_sets(), st.integers(0, 1000))
def test_target_no_better_than_its_control_is_never_specialised(arrs, seed):
    recall, reasoning = arrs
    r = classify_targets(recall, reasoning, tau=0.0, n_boot=200, seed=seed, control_recall_drop=recall,
                         control_reasoning_drop=reasoning)
    np.testing.assert_array_equal(r.interaction.estimate, 0.0)
    assert set(r.cls.tolist()) <= {"mixed", "none"}


# --- depth bins and profiles -------------------------------------------------------------------------------

def test_depth_bins_28_and_32_layers_into_4_bins():
    b28, b32 = depth_bins(28, 4), depth_bins(32, 4)
    np.testing.assert_array_equal(b28, np.repeat(np.arange(4), 7))
    np.testing.assert_array_equal(b32, np.repeat(np.arange(4), 8))
    np.testing.assert_array_equal(depth_bins(4, 4), np.arange(4))
    np.testing.assert_array_equal(depth_bins(3, 2), [0, 1, 1])  # centre 1.5 of 3 sits on the edge -> upper


def test_depth_bins_match_exact_formula_and_fill_every_bin():
    for n_layers in range(1, 41):
        for n_bins in range(1, n_layers + 1):
            got = depth_bins(n_layers, n_bins)
            ref = [math.floor(Fraction(2 * i + 1, 2 * n_layers) * n_bins) for i in range(n_layers)]
            assert got.tolist() == ref
            assert np.all(np.diff(got) >= 0) and set(got.tolist()) == set(range(n_bins))


def test_depth_profile_means_per_bin():
    np.testing.assert_allclose(depth_profile(np.arange(28.0), 4), [3.0, 10.0, 17.0, 24.0])
    np.testing.assert_allclose(depth_profile(np.arange(32.0), 4), [3.5, 11.5, 19.5, 27.5])
    values = np.random.default_rng(12).normal(size=(3, 2, 4))
    np.testing.assert_array_equal(depth_profile(values, 4), values)  # 4 layers into 4 bins: identity


def test_depth_profile_is_nan_aware_without_warnings():
    v = np.arange(8.0)
    v[[0, 6, 7]] = np.nan  # bin 0 = layers 0, 1; bin 3 = layers 6, 7 (all NaN)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prof = depth_profile(v, 4)
    np.testing.assert_array_equal(prof[:3], [1.0, 2.5, 4.5])
    assert np.isnan(prof[3])


# --- Spearman and profile agreement ------------------------------------------------------------------------

@pytest.mark.parametrize("ties", [False, True])
def test_spearman_matches_scipy(ties):
    rng = np.random.default_rng(13)
    a = rng.integers(0, 3, size=(50, 7)).astype(float) if ties else rng.normal(size=(50, 7))
    b = rng.integers(0, 3, size=(50, 7)).astype(float) if ties else rng.normal(size=(50, 7))
    keep = (a.std(axis=1) > 0) & (b.std(axis=1) > 0)
    ref = [scipy.stats.spearmanr(x, y).statistic for x, y in zip(a[keep], b[keep])]
    np.testing.assert_allclose(spearman_rows(a[keep], b[keep]), ref, rtol=1e-12, atol=1e-12)


def test_spearman_nan_for_constant_or_missing_profiles():
    rho = spearman_rows(np.array([[1.0, 1.0, 1.0], [1.0, np.nan, 2.0], [1.0, 2.0, 3.0]]),
                        np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))
    assert np.isnan(rho[:2]).all() and rho[2] == pytest.approx(-1.0)


def _brute_force_p(a: dict, b: dict) -> tuple[float, float]:
    def stat(perm):
        rhos = [scipy.stats.spearmanr(a[k], np.asarray(b[k])[list(perm)]).statistic for k in a]
        return float(np.mean(rhos))

    n = len(next(iter(a.values())))
    obs = stat(range(n))
    null = [stat(perm) for perm in itertools.permutations(range(n))]
    return obs, sum(s >= obs - 1e-12 for s in null) / math.factorial(n)


def test_exact_p_matches_brute_force_with_joint_permutation():
    rng = np.random.default_rng(14)
    a = {"H1": rng.normal(size=5), "H2": np.array([1.0, 2.0, 2.0, 3.0, 1.0]), "H5": rng.normal(size=5)}
    b = {"H1": a["H1"] + rng.normal(0, 0.5, 5), "H2": np.array([0.0, 1.0, 1.0, 2.0, 2.0]), "H5": rng.normal(size=5)}
    r = profile_agreement(a, b)
    obs, p = _brute_force_p(a, b)
    assert isinstance(r, Agreement) and r.exact and r.n_perm == 120 and r.n_bins == 5
    assert r.statistic == pytest.approx(obs) and r.p == pytest.approx(p)
    for k in a:
        assert r.rho[k] == pytest.approx(scipy.stats.spearmanr(a[k], b[k]).statistic)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_p_matches_scipy_permutation_test_for_one_profile(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 4, size=6).astype(float), rng.integers(0, 4, size=6).astype(float)
    if x.std() == 0 or y.std() == 0:
        pytest.skip("constant draw")
    # One sample: scipy permutes its order against the fixed y (6! orderings; with (x, y) it would
    # enumerate 6!**2 joint orderings for the same p-value).
    ref = scipy.stats.permutation_test((x,), lambda u: scipy.stats.spearmanr(u, y).statistic,
                                       permutation_type="pairings", alternative="greater", n_resamples=np.inf,
                                       vectorized=False)
    r = profile_agreement({"H1": x}, {"H1": y})
    assert r.exact and r.p == pytest.approx(ref.pvalue, abs=1e-12)


def test_monte_carlo_p_is_valid_and_close_to_exact():
    rng = np.random.default_rng(15)
    for n_bins, n_perm_mc in ((6, 700), (8, 20000)):
        a = {k: rng.normal(size=n_bins) for k in ("H1", "H2")}
        b = {k: v + rng.normal(0, 1.0, n_bins) for k, v in a.items()}
        exact = profile_agreement(a, b, n_perm=math.factorial(n_bins))
        mc = profile_agreement(a, b, n_perm=n_perm_mc, seed=1)
        assert exact.exact and not mc.exact and mc.n_perm == n_perm_mc
        assert 1 / (n_perm_mc + 1) <= mc.p <= 1.0
        se = math.sqrt(exact.p * (1 - exact.p) / n_perm_mc) + 1 / n_perm_mc
        assert abs(mc.p - exact.p) < 4 * se
        assert mc == profile_agreement(a, b, n_perm=n_perm_mc, seed=1)  # deterministic for a seed


def test_perfect_agreement_of_monotone_profiles_gives_one_over_b_factorial():
    up = np.array([0.1, 0.5, 0.7, 2.0])
    a = {"H1": up, "H2": -up}
    r = profile_agreement(a, {"H1": up * 3, "H2": -up + 1})
    assert r.statistic == pytest.approx(1.0) and r.p == pytest.approx(1 / 24) and r.exact
    opposite = profile_agreement(a, {"H1": -up, "H2": up})
    assert opposite.statistic == pytest.approx(-1.0) and opposite.p == 1.0
    # Monte Carlo can never reach below 1 / (n_perm + 1)
    mc = profile_agreement({"H1": np.arange(9.0)}, {"H1": np.arange(9.0)}, n_perm=99)
    assert not mc.exact and mc.p == pytest.approx(1 / 100)


def test_constant_profiles_are_left_out_of_the_statistic():
    a = {"H1": np.array([1.0, 2.0, 3.0]), "H2": np.array([1.0, 1.0, 1.0])}
    b = {"H1": np.array([1.0, 2.0, 3.0]), "H2": np.array([3.0, 2.0, 1.0])}
    r = profile_agreement(a, b)
    assert np.isnan(r.rho["H2"]) and r.statistic == pytest.approx(1.0) and r.p == pytest.approx(1 / 6)
    none = profile_agreement({"H2": a["H2"]}, {"H2": b["H2"]})
    assert np.isnan(none.statistic) and none.p == 1.0


# --- input errors ----------------------------------------------------------------------------------------

GOOD = np.zeros((4, 2))


@pytest.mark.parametrize("call", [
    lambda: paired_bootstrap_means(np.zeros((0, 2)), n_boot=10, seed=0),
    lambda: paired_bootstrap_means(GOOD, n_boot=-1, seed=0),
    lambda: paired_bootstrap_means(GOOD, n_boot=10, seed=0, level=1.0),
    lambda: classify_targets(GOOD, np.zeros((4, 3)), tau=0.1),
    lambda: classify_targets(np.zeros((1, 2)), np.zeros((1, 2)), tau=0.1),
    lambda: classify_targets(np.zeros(4), np.zeros(4), tau=0.1),
    lambda: classify_targets(np.array([[np.nan, 0.0]] * 4), GOOD, tau=0.1),
    lambda: classify_targets(GOOD, GOOD, tau=-0.1),
    lambda: classify_targets(GOOD, GOOD, tau=0.1, level=0.0),
    lambda: classify_targets(GOOD, GOOD, tau=0.1, control_recall_drop=GOOD),
    lambda: classify_targets(GOOD, GOOD, tau=0.1, control_recall_drop=GOOD, control_reasoning_drop=np.zeros((4, 3))),
    lambda: classify_targets(GOOD, GOOD, tau=0.1, control_recall_drop=np.array([[np.nan, 0.0], [0.0, 0.0]] * 2),
                             control_reasoning_drop=GOOD),
    lambda: classify_targets(GOOD, GOOD, tau=0.1, control_recall_drop=np.array([[np.nan, 0.0]] * 4),
                             control_reasoning_drop=GOOD),
    lambda: depth_bins(4, 5),
    lambda: depth_bins(4, 0),
    lambda: depth_profile(np.zeros(3), 4),
    lambda: profile_agreement({"H1": np.zeros(3)}, {"H2": np.zeros(3)}),
    lambda: profile_agreement({"H1": np.zeros(3)}, {"H1": np.zeros(4)}),
    lambda: profile_agreement({"H1": np.zeros(1)}, {"H1": np.zeros(1)}),
    lambda: profile_agreement({"H1": np.zeros((2, 3))}, {"H1": np.zeros((2, 3))}),
    lambda: profile_agreement({}, {}),
    lambda: profile_agreement({"H1": np.arange(3.0)}, {"H1": np.arange(3.0)}, n_perm=0),
])
def test_input_errors_are_one_line(call):
    with pytest.raises(CircuitgateError) as err:
        call()
    assert "\n" not in str(err.value) and str(err.value)


# -- false discovery control over the targets ------------------------------------------------------
def test_selective_needs_the_signed_rank_p_to_survive_bh_over_the_targets():
    """p is scipy's two-sided Wilcoxon of the per-pair interaction, p_adj statsmodels' BH over targets."""
    from scipy.stats import wilcoxon
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    recall = rng.normal(0.3, 0.2, size=(12, 5))
    reasoning = rng.normal(0.0, 0.2, size=(12, 5))
    recall[:, 3:] = reasoning[:, 3:] + rng.normal(0.0, 0.2, size=(12, 2)) + 0.2  # hurt both about alike
    r = classify_targets(recall, reasoning, tau=0.1, n_boot=500)
    ref = [wilcoxon(recall[:, t] - reasoning[:, t], zero_method="wilcox", correction=False).pvalue for t in range(5)]
    np.testing.assert_allclose(r.p, ref, rtol=1e-10)
    np.testing.assert_allclose(r.p_adj, multipletests(ref, 0.05, "fdr_bh")[1], rtol=1e-10)
    assert (r.selective == (r.p_adj <= 0.05) & ((r.interaction.ci_low > 0) | (r.interaction.ci_high < 0))).all()
    assert r.alpha == 0.05 and r.correction == "bh"


def test_five_pairs_can_never_be_selective():
    """The smallest two-sided signed-rank p over 5 pairs is 2/32 = 0.0625 > 0.05: however clear the
    drops, the target is hurt but not shown selective (mixed), as any rule with error control must say."""
    recall, reasoning = np.ones((5, 1)), np.zeros((5, 1))
    r = classify_targets(recall, reasoning, tau=0.1, n_boot=100)
    assert r.p[0] == pytest.approx(0.0625) and r.cls.tolist() == ["mixed"]
    six = classify_targets(np.ones((6, 1)), np.zeros((6, 1)), tau=0.1, n_boot=100)
    assert six.cls.tolist() == ["recall"]


def test_more_targets_raise_the_bar_a_per_target_interval_ignores():
    """One real effect among many nulls: alone it is selective; beside 400 null targets, BH's bar
    (alpha * rank / m) is what it must pass, and nulls that a per-target 95% interval would call
    selective are not."""
    rng = np.random.default_rng(3)
    n_pairs, m = 30, 400
    recall = rng.normal(0.15, 0.4, size=(n_pairs, m))
    reasoning = rng.normal(0.15, 0.4, size=(n_pairs, m))
    r = classify_targets(recall, reasoning, tau=0.1, n_boot=500)
    per_target = (r.interaction.ci_low > 0) | (r.interaction.ci_high < 0)
    assert per_target.sum() >= 5  # about 5% of 400 nulls by their own intervals
    assert not r.selective.any()
    assert not np.isin(r.cls, ["recall", "reasoning"]).any()


def test_no_targets_classifies_nothing():
    r = classify_targets(np.zeros((8, 0)), np.zeros((8, 0)), tau=0.1, n_boot=10)
    assert r.cls.size == 0 and r.p.size == 0 and r.selective.size == 0


def test_by_is_no_more_liberal_than_bh():
    rng = np.random.default_rng(5)
    recall = rng.normal(0.3, 0.3, size=(16, 40))
    recall[:, 20:] = rng.normal(0.0, 0.3, size=(16, 20))
    reasoning = rng.normal(0.0, 0.3, size=(16, 40))
    bh = classify_targets(recall, reasoning, tau=0.1, n_boot=200)
    by = classify_targets(recall, reasoning, tau=0.1, n_boot=200, correction="by")
    assert (by.selective <= bh.selective).all() and bh.selective.sum() > 0
