"""circuitgate.stats against hand-computed values, scipy and statsmodels, plus properties."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from statsmodels.stats.multitest import multipletests

from circuitgate import CircuitgateError
from circuitgate.stats import (benjamini_hochberg, bootstrap_d_ci, cohens_d, kfold_indices, mann_whitney_u,
                               mann_whitney_u_dense, nan_moments)

finite = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
small_ints = st.integers(-3, 3).map(float)  # many ties


def _column(a: np.ndarray, j: int) -> np.ndarray:
    c = a[:, j]
    return c[~np.isnan(c)]


# --- moments and Cohen's d -------------------------------------------------------------------------------

def test_nan_moments_match_numpy_per_column():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3, 4))
    x[rng.random(x.shape) < 0.3] = np.nan
    for ddof in (0, 1):
        m = nan_moments(x, ddof)
        np.testing.assert_array_equal(m.n, (~np.isnan(x)).sum(axis=0))
        np.testing.assert_allclose(m.mean, np.nanmean(x, axis=0))
        np.testing.assert_allclose(m.var, np.nanvar(x, axis=0, ddof=ddof))


def test_nan_moments_too_few_samples_is_nan_without_warning():
    x = np.array([[1.0, np.nan], [np.nan, np.nan]])
    with np.errstate(all="raise"):
        m = nan_moments(x, ddof=1)
    assert np.isnan(m.var).all() and m.mean[0] == 1.0 and np.isnan(m.mean[1])


def test_cohens_d_hand_values():
    reasoning, recall = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    # population variances 8/3 and 2/3 -> pooled sqrt(5/3); means 4 and 2
    assert cohens_d(reasoning, recall, ddof=0) == pytest.approx(2.0 / np.sqrt(5.0 / 3.0))
    # unbiased variances 4 and 1 -> pooled sqrt(2.5)
    assert cohens_d(reasoning, recall, ddof=1) == pytest.approx(2.0 / np.sqrt(2.5))
    # H1's eps goes outside the square root; with no spread d is diff / eps
    assert cohens_d(np.array([1.0, 1.0]), np.array([0.0, 0.0]), eps=1e-10) == pytest.approx(1e10)


def test_cohens_d_nan_masked_equals_per_column():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(15, 6)), rng.normal(1.0, 2.0, size=(12, 6))
    x[rng.random(x.shape) < 0.3] = np.nan
    y[rng.random(y.shape) < 0.3] = np.nan
    d = cohens_d(x, y, ddof=1)
    for j in range(6):
        a, b = _column(x, j), _column(y, j)
        ref = (a.mean() - b.mean()) / np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
        assert d[j] == pytest.approx(ref)


@settings(max_examples=40, deadline=None)
@given(arrays(float, (6, 3), elements=finite), arrays(float, (5, 3), elements=finite), st.sampled_from([0, 1]))
def test_cohens_d_antisymmetric(x, y, ddof):
    np.testing.assert_array_equal(cohens_d(x, y, ddof=ddof, eps=1e-10), -cohens_d(y, x, ddof=ddof, eps=1e-10))


# --- Mann-Whitney U --------------------------------------------------------------------------------------

def test_mwu_exact_hand_value():
    # complete separation of 3 vs 3: U1 = 0, P(U >= 9) = 1 / C(6, 3) = 1/20, two-sided 0.1
    r = mann_whitney_u(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
    assert r.statistic == 0.0 and r.p == pytest.approx(0.1) and bool(r.exact)


def _check_against_scipy(x, y):
    r = mann_whitney_u(x, y)
    for j in range(x.shape[1]):
        a, b = _column(x, j), _column(y, j)
        if len(a) == 0 or len(b) == 0:
            assert np.isnan(r.p[j])
            continue
        ref = scipy.stats.mannwhitneyu(a, b, alternative="two-sided")
        assert r.statistic[j] == pytest.approx(ref.statistic, rel=1e-12, abs=1e-12)
        assert r.p[j] == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        assert (r.n_x[j], r.n_y[j]) == (len(a), len(b))


@pytest.mark.parametrize("n1,n2,ties,nan", [
    (30, 30, False, False),  # asymptotic, the seed's size
    (30, 30, True, False),  # tie correction
    (30, 30, True, True),  # per-column sample sizes (H2's skipped prompts)
    (5, 7, False, False),  # exact
    (3, 25, False, False),  # exact: one side <= 8
    (6, 6, True, False),  # small with ties: asymptotic
    (10, 9, False, True),  # NaN masking moves columns in and out of the exact range
])
def test_mwu_matches_scipy_per_column(n1, n2, ties, nan):
    rng = np.random.default_rng(n1 * 100 + n2)
    x, y = rng.normal(size=(n1, 40)), rng.normal(0.7, 1.0, size=(n2, 40))
    if ties:
        x, y = np.round(x * 2), np.round(y * 2)
    if nan:
        x[rng.random(x.shape) < 0.25] = np.nan
        y[rng.random(y.shape) < 0.25] = np.nan
    _check_against_scipy(x, y)


def test_mwu_degenerate_columns():
    x = np.array([[1.0, np.nan, 2.0], [1.0, np.nan, 2.0], [1.0, np.nan, 3.0]])
    y = np.array([[1.0, 0.0, 2.0], [1.0, 1.0, 2.0], [1.0, 2.0, 2.0]])
    r = mann_whitney_u(x, y)
    assert r.p[0] == 1.0  # all tied: scipy gives 1
    assert np.isnan(r.p[1])  # an empty sample
    _check_against_scipy(x, y)


def test_mwu_keeps_trailing_shape_and_rejects_mismatch():
    r = mann_whitney_u(np.ones((4, 2, 3)), np.zeros((5, 2, 3)))
    assert r.p.shape == (2, 3) and r.statistic.shape == (2, 3)
    with pytest.raises(CircuitgateError):
        mann_whitney_u(np.ones((4, 2)), np.ones((4, 3)))


@settings(max_examples=40, deadline=None)
@given(arrays(float, (7, 4), elements=small_ints), arrays(float, (9, 4), elements=small_ints))
def test_mwu_symmetric_under_swap_and_matches_scipy(x, y):
    a, b = mann_whitney_u(x, y), mann_whitney_u(y, x)
    np.testing.assert_allclose(a.p, b.p, rtol=1e-12)
    np.testing.assert_allclose(a.statistic + b.statistic, 7 * 9)
    _check_against_scipy(x, y)


@settings(max_examples=30, deadline=None)
@given(arrays(float, (4, 3), elements=finite, unique=True), arrays(float, (6, 3), elements=finite, unique=True))
def test_mwu_exact_range_matches_scipy(x, y):
    _check_against_scipy(x, y)


# --- Benjamini-Hochberg ----------------------------------------------------------------------------------

def test_bh_hand_value():
    reject, p_adj = benjamini_hochberg(np.array([0.01, 0.04, 0.03, 0.005]), 0.05)
    np.testing.assert_allclose(p_adj, [0.02, 0.04, 0.04, 0.02])
    assert reject.all()


def test_bh_one_family_per_row_matches_statsmodels():
    rng = np.random.default_rng(3)
    p = rng.random((6, 28)) ** 3
    reject, p_adj = benjamini_hochberg(p, 0.01)
    for row in range(6):
        ref_reject, ref_adj = multipletests(p[row], alpha=0.01, method="fdr_bh")[:2]
        np.testing.assert_array_equal(reject[row], ref_reject)
        np.testing.assert_allclose(p_adj[row], ref_adj)


@pytest.mark.parametrize("p", [np.array([0.1, np.nan]), np.array([1.5]), np.zeros((2, 0))])
def test_bh_rejects_bad_input(p):
    with pytest.raises(CircuitgateError):
        benjamini_hochberg(p, 0.05)


@settings(max_examples=50, deadline=None)
@given(arrays(float, st.integers(1, 30), elements=st.floats(0, 1)), st.floats(1e-4, 0.5))
def test_bh_monotone(p, alpha):
    reject, p_adj = benjamini_hochberg(p, alpha)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(p_adj[order]) >= -1e-15)  # adjusted p keeps the order of p
    assert np.all(p_adj >= p - 1e-15) and np.all(p_adj <= 1)
    if reject.any():  # everything at or below the largest rejected p is rejected
        assert reject[p <= p[reject].max()].all()


# --- bootstrap -------------------------------------------------------------------------------------------

def test_bootstrap_equals_explicit_resampling_loop():
    rng = np.random.default_rng(4)
    x, y = rng.normal(1.0, size=(12, 2, 3)), rng.normal(size=(10, 2, 3))
    ci = bootstrap_d_ci(x, y, n_boot=50, seed=7)
    draw = np.random.default_rng(7)
    ix, iy = draw.integers(0, 12, size=(50, 12)), draw.integers(0, 10, size=(50, 10))
    ds = np.stack([cohens_d(x[ix[b]], y[iy[b]], eps=1e-10) for b in range(50)])
    np.testing.assert_allclose(ci.ci_low, np.percentile(ds, 2.5, axis=0))
    np.testing.assert_allclose(ci.ci_high, np.percentile(ds, 97.5, axis=0))
    np.testing.assert_allclose(ci.effect, cohens_d(x, y, eps=1e-10))
    assert np.all(ci.ci_low <= ci.ci_high)


def test_bootstrap_deterministic_and_zero_resamples():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=(30, 4))
    a, b = bootstrap_d_ci(x, y, n_boot=200, seed=42), bootstrap_d_ci(x, y, n_boot=200, seed=42)
    np.testing.assert_array_equal(a.ci_low, b.ci_low)
    none = bootstrap_d_ci(x, y, n_boot=0, seed=42)
    assert np.isnan(none.ci_low).all() and np.isnan(none.ci_high).all() and none.n_boot == 0


def test_bootstrap_ci_covers_a_large_effect():
    rng = np.random.default_rng(6)
    ci = bootstrap_d_ci(rng.normal(2.0, size=(30, 3)), rng.normal(size=(30, 3)), n_boot=1000, seed=42)
    assert np.all(ci.ci_low > 1.0) and np.all(ci.ci_low < ci.effect) and np.all(ci.effect < ci.ci_high)


# --- KFold -----------------------------------------------------------------------------------------------

# Reference folds from sklearn 1.9.1: KFold(k, shuffle=True, random_state=42).split(np.arange(n)),
# obtained once and hard-coded so that the tests do not need sklearn.
SKLEARN_TEST_FOLDS = {
    (30, 5): [[8, 9, 15, 17, 23, 27], [0, 4, 12, 16, 24, 28], [1, 2, 5, 11, 13, 22], [3, 18, 21, 25, 26, 29],
              [6, 7, 10, 14, 19, 20]],
    (24, 5): [[0, 8, 11, 16, 18], [1, 5, 9, 13, 21], [2, 3, 4, 12, 15], [7, 17, 20, 22, 23], [6, 10, 14, 19]],
    (10, 3): [[0, 1, 5, 8], [2, 7, 9], [3, 4, 6]],
    (7, 2): [[0, 1, 2, 5], [3, 4, 6]],
}


@pytest.mark.parametrize("n,k", sorted(SKLEARN_TEST_FOLDS))
def test_kfold_matches_sklearn(n, k):
    folds = kfold_indices(n, k, shuffle=True, seed=42)
    assert [test.tolist() for _, test in folds] == SKLEARN_TEST_FOLDS[(n, k)]
    for train, test in folds:
        assert train.tolist() == sorted(set(range(n)) - set(test.tolist()))


def test_kfold_without_shuffle_and_bad_sizes():
    assert [t.tolist() for _, t in kfold_indices(5, 2, shuffle=False)] == [[0, 1, 2], [3, 4]]
    for n, k in ((3, 5), (10, 1)):
        with pytest.raises(CircuitgateError):
            kfold_indices(n, k)


# -- the dense rank-sum test of H3 (all neurons at once) ----------------------------------------------

@pytest.mark.parametrize("n1,n2,ties", [(30, 30, False), (30, 30, True), (5, 7, False), (5, 7, True), (12, 3, False)])
def test_mwu_dense_matches_scipy_per_column(n1, n2, ties):
    rng = np.random.default_rng(n1 * 100 + n2 + ties)
    x, y = rng.normal(size=(n1, 40)), rng.normal(0.4, 1.0, size=(n2, 40))
    if ties:  # coarse values: most columns have ties, some between the samples
        x, y = np.round(x * 2) / 2, np.round(y * 2) / 2
    res = mann_whitney_u_dense(x, y)
    for j in range(x.shape[1]):
        ref = scipy.stats.mannwhitneyu(x[:, j], y[:, j], alternative="two-sided")
        assert res.statistic[j] == ref.statistic
        assert res.p[j] == pytest.approx(ref.pvalue, rel=1e-12, abs=1e-300)


def test_mwu_dense_equals_nan_aware_version_and_keeps_shape():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(9, 3, 5)).astype(np.float32), rng.normal(size=(11, 3, 5)).astype(np.float32)
    x[:, 0, :2] = 1.0  # an all-tied block within x
    dense, loose = mann_whitney_u_dense(x, y), mann_whitney_u(x.astype(float), y.astype(float))
    assert dense.p.shape == (3, 5)
    np.testing.assert_array_equal(dense.statistic, loose.statistic)
    np.testing.assert_allclose(dense.p, loose.p, rtol=1e-12)
    np.testing.assert_array_equal(dense.exact, loose.exact)


def test_mwu_dense_all_tied_unit_has_p_one():
    res = mann_whitney_u_dense(np.ones((10, 2)), np.ones((10, 2)))
    np.testing.assert_array_equal(res.p, [1.0, 1.0])


def test_mwu_dense_bfloat16_ties_match_scipy():
    # bfloat16 activations (GPU runs) repeat values often: the tie path must carry the rank sums.
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(size=(30, 64)), dtype=torch.bfloat16)
    y = torch.tensor(rng.normal(0.3, 1, size=(30, 64)), dtype=torch.bfloat16)
    res = mann_whitney_u_dense(x, y)
    xf, yf = x.float().numpy().astype(float), y.float().numpy().astype(float)
    ref = scipy.stats.mannwhitneyu(xf, yf, alternative="two-sided", axis=0)
    np.testing.assert_array_equal(res.statistic, ref.statistic)
    np.testing.assert_allclose(res.p, ref.pvalue, rtol=1e-12)


@pytest.mark.parametrize("x,y", [(np.ones((3, 2)), np.ones((3, 3))), (np.zeros((0, 2)), np.ones((3, 2))),
                                 (np.array([[np.nan], [1.0]]), np.ones((3, 1)))])
def test_mwu_dense_rejects_bad_input(x, y):
    with pytest.raises(CircuitgateError):
        mann_whitney_u_dense(x, y)
