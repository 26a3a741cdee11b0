"""circuitgate.stats' paired statistics against scipy, statsmodels and hand values, plus properties.

scipy.stats.wilcoxon(method="auto") picks one of three paths per unit (see wilcoxon_signed_rank): the
exact table (n_pairs <= 50, no zero, no tie), all sign flips (n_pairs <= 13 with ties or zeros; slow
in scipy, so those comparisons keep n_pairs small), the normal approximation otherwise. The tests
cover each path; agreement is to rounding everywhere except an all-zero unit with more than 13 pairs
(scipy: NaN, here p = 1 by design).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from statsmodels.stats.multitest import multipletests

from circuitgate import CircuitgateError
from circuitgate.stats import (EXACT_MAX_N, _doubled_ranks, _percentile_with_inf, _signed_rank_sort, _signed_rank_sort_torch,
                               d_z, fdr_correction, min_attainable_p, paired_bootstrap_dz, pair_splits,
                               wilcoxon_signed_rank)

ALTERNATIVES = {"two-sided": "p", "greater": "p_greater", "less": "p_less"}


def _scipy(col: np.ndarray, alternative: str):
    return scipy.stats.wilcoxon(np.asarray(col, dtype=np.float64), zero_method="wilcox", correction=False,
                                method="auto", alternative=alternative)


def _assert_matches_scipy(diff, res=None, rtol=1e-12, atol=1e-15):
    """Every unit and alternative of wilcoxon_signed_rank(diff) against scipy on the same column."""
    res = wilcoxon_signed_rank(diff) if res is None else res
    d = torch.as_tensor(diff).to(torch.float64).numpy()  # exact widening of float32/bfloat16
    flat = d.reshape(d.shape[0], -1)
    for j in range(flat.shape[1]):
        for alternative, field in ALTERNATIVES.items():
            ref = _scipy(flat[:, j], alternative)
            mine = getattr(res, field).reshape(-1)[j]
            assert mine == pytest.approx(float(ref.pvalue), rel=rtol, abs=atol), (alternative, j, flat[:, j])
        # scipy's statistic is W+ for one-sided alternatives (min(W+, W-) for two-sided)
        assert res.statistic.reshape(-1)[j] == pytest.approx(float(_scipy(flat[:, j], "greater").statistic))
    np.testing.assert_array_equal(res.n.reshape(-1), (flat != 0).sum(axis=0))
    return res


# --- Wilcoxon signed-rank against scipy --------------------------------------------------------------------

def test_wilcoxon_hand_values():
    # 5 positive untied differences: W+ = 15 of 15, P(W+ >= 15) = 1/32
    r = wilcoxon_signed_rank(np.array([0.5, 1.0, 2.0, 3.0, 4.0]))
    assert r.statistic == 15.0 and r.n == 5 and bool(r.exact)
    assert r.p_greater == 1 / 32 and r.p_less == 1.0 and r.p == 2 / 32
    # zeros are dropped before ranking: ranks of 1, -2, 3 among themselves are 1, 2, 3
    r = wilcoxon_signed_rank(np.array([0.0, 1.0, -2.0, 3.0, 0.0]))
    assert r.statistic == 4.0 and r.n == 3


def test_wilcoxon_exact_small_n_matches_scipy():
    rng = np.random.default_rng(0)
    for m in (1, 2, 7, 20, EXACT_MAX_N):
        d = rng.normal(0.4, 1.0, size=(m, 12))
        res = _assert_matches_scipy(d)
        assert res.exact.all()


def test_wilcoxon_large_n_normal_approximation_matches_scipy():
    rng = np.random.default_rng(1)
    d = rng.normal(0.2, 1.0, size=(EXACT_MAX_N + 1, 10))
    d[:5, 0] = 0.0  # zeros: n varies per unit
    res = _assert_matches_scipy(d)
    assert not res.exact.any() and res.n[0] == EXACT_MAX_N + 1 - 5
    # n_pairs (n_pairs + 1) / 2 > 2**24: the no-tie rank sums switch to a float64 product
    big = rng.normal(0.05, 1.0, size=(6000, 3))
    _assert_matches_scipy(big, rtol=1e-9)


def test_wilcoxon_zeros_and_ties_match_scipy():
    rng = np.random.default_rng(2)
    # n_pairs <= 13 with ties or zeros: scipy enumerates all sign flips, mirrored here
    small = rng.integers(-3, 4, size=(8, 6)).astype(float)
    res = _assert_matches_scipy(small)
    assert res.exact[res.n > 0].all()
    # 14 <= n_pairs <= 50 with ties or zeros: normal approximation with the tie term
    mid = rng.integers(-4, 5, size=(30, 15)).astype(float)
    res = _assert_matches_scipy(mid)
    assert not res.exact.any()
    # ties without zeros, and zeros without ties
    ties = np.abs(rng.normal(size=(25, 4))) + 0.1
    ties[:4] = [[1.0], [-1.0], [1.0], [2.0]]
    zeros = rng.normal(size=(25, 4))
    zeros[:3] = 0.0
    _assert_matches_scipy(ties)
    _assert_matches_scipy(zeros)


def test_wilcoxon_float32_and_bfloat16_inputs():
    rng = np.random.default_rng(3)
    f32 = torch.from_numpy(rng.normal(0.3, 1.0, size=(30, 20)).astype(np.float32))
    res = _assert_matches_scipy(f32)
    assert res.p.dtype == np.float64
    bf16 = torch.from_numpy(rng.normal(0.3, 1.0, size=(40, 20))).to(torch.bfloat16)  # coarse: many ties
    res = _assert_matches_scipy(bf16)
    assert not res.exact.all()
    _assert_matches_scipy(torch.from_numpy(rng.normal(size=(9, 5))).to(torch.bfloat16))
    _assert_matches_scipy(f32.to(torch.float16))


def test_wilcoxon_multidimensional_units_and_explicit_device():
    rng = np.random.default_rng(4)
    d = rng.normal(0.2, 1.0, size=(15, 3, 4))
    d[:, 1, 2] = np.round(d[:, 1, 2])
    res = wilcoxon_signed_rank(d, device="cpu")
    flat = wilcoxon_signed_rank(d.reshape(15, 12))
    for field in res._fields:
        assert getattr(res, field).shape == (3, 4)
        np.testing.assert_array_equal(getattr(res, field).reshape(-1), getattr(flat, field))
    _assert_matches_scipy(d, res)
    one = wilcoxon_signed_rank(d[:, 0, 0])  # no unit axes: 0-d results
    assert one.p.shape == () and one.p == res.p[0, 0]


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # scipy: 0 / zero standard error
def test_wilcoxon_all_zero_units():
    for m in (5, 30):
        d = np.zeros((m, 3))
        d[:, 1] = np.arange(1, m + 1)
        res = wilcoxon_signed_rank(d)
        for j in (0, 2):
            assert res.n[j] == 0 and res.statistic[j] == 0.0 and not res.exact[j]
            assert res.p[j] == res.p_greater[j] == res.p_less[j] == 1.0
        assert res.n[1] == m
    # scipy agrees where it runs its sign-flip enumeration; with > 13 pairs it returns NaN instead
    assert _scipy(np.zeros(5), "two-sided").pvalue == 1.0
    assert np.isnan(_scipy(np.zeros(30), "two-sided").pvalue)


def test_wilcoxon_chunked_rank_pass_is_consistent():
    # > 65,536 tied units: the rank and tie pass runs in chunks; units agree with a small call
    rng = np.random.default_rng(5)
    d = torch.from_numpy(rng.normal(size=(10, 70_000))).to(torch.bfloat16)
    res = wilcoxon_signed_rank(d)
    for cols in (slice(0, 50), slice(69_950, 70_000)):
        part = wilcoxon_signed_rank(d[:, cols])
        for field in res._fields:
            np.testing.assert_array_equal(getattr(res, field)[cols], getattr(part, field))


def test_signed_rank_sort_paths_agree():
    # The numpy key sort (CPU) and torch.sort (GPU path) give the same zero/tie structure and signs.
    rng = np.random.default_rng(6)
    for dtype in (torch.float32, torch.float64):
        z = torch.from_numpy(rng.integers(-3, 4, size=(200, 12)) * rng.choice([0.5, 1.0], size=(200, 12))).to(dtype)
        k1, p1 = _signed_rank_sort(z)
        k2, p2 = _signed_rank_sort_torch(z)
        torch.testing.assert_close(k1 == 0, k2 == 0)
        torch.testing.assert_close(k1[:, 1:] == k1[:, :-1], k2[:, 1:] == k2[:, :-1])
        # signs may come in another order inside a tie group; the rank sums agree
        n_zero = (k1 == 0).sum(dim=1)
        (r1, t1), (r2, t2) = _doubled_ranks(k1, n_zero), _doubled_ranks(k2, n_zero)
        torch.testing.assert_close(r1, r2)
        torch.testing.assert_close(t1, t2)
        torch.testing.assert_close((r1 * p1).sum(dim=1), (r2 * p2).sum(dim=1))
        res = wilcoxon_signed_rank(z.T)
        assert np.isfinite(res.p).all()


def test_wilcoxon_rejects_bad_input():
    with pytest.raises(CircuitgateError, match="n_pairs"):
        wilcoxon_signed_rank(np.zeros((0, 3)))
    with pytest.raises(CircuitgateError, match="n_pairs"):
        wilcoxon_signed_rank(np.float64(1.0))
    with pytest.raises(CircuitgateError, match="finite"):
        wilcoxon_signed_rank(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(CircuitgateError, match="floating"):
        wilcoxon_signed_rank(torch.tensor([1, 2, 3]))


# --- min_attainable_p --------------------------------------------------------------------------------------

def test_min_attainable_p():
    assert min_attainable_p(0) == min_attainable_p(-3) == 1.0 == min_attainable_p(1)
    for n in (2, 10, 30, EXACT_MAX_N):
        assert min_attainable_p(n) == 2.0 / 2 ** n
    for n in (10, 60):  # all-positive untied differences reach it, in scipy and here
        d = np.arange(1.0, n + 1)
        assert min_attainable_p(n) == pytest.approx(float(_scipy(d, "two-sided").pvalue), rel=1e-12)
        assert min_attainable_p(n) == pytest.approx(float(wilcoxon_signed_rank(d).p), rel=1e-12)
    # docs/method.md flaw 5: 30 pairs cannot pass a Bonferroni bar over 530,432 neurons
    assert min_attainable_p(30) > 1e-4 / 530_432
    # The normal approximation's extreme tail is far heavier than the exact one's: the smallest p
    # jumps from 1.8e-15 at 50 pairs to 5e-10 at 51 (above the H3 bar 1.9e-10) and only falls
    # below the 50-pair value again past a hundred pairs.
    assert min_attainable_p(EXACT_MAX_N + 1) > 1e5 * min_attainable_p(EXACT_MAX_N)
    ps = [min_attainable_p(n) for n in range(EXACT_MAX_N + 1, 200)]
    assert all(b < a for a, b in zip(ps, ps[1:]))


# --- d_z -----------------------------------------------------------------------------------------------------

def test_d_z_hand_values():
    assert d_z(np.array([1.0, 2.0, 3.0])) == 2.0  # mean 2, sd 1
    d = np.array([[1.0, 0.0, 2.0, -1.0, 0.1], [3.0, 0.0, 2.0, -1.0, 0.1], [2.0, 0.0, 2.0, -1.0, 0.1]])
    np.testing.assert_array_equal(d_z(d), [2.0, 0.0, np.inf, -np.inf, np.inf])
    assert d_z(np.full(7, 0.1)) == np.inf  # equal values whose two-pass sd is a rounding residue
    assert np.isnan(d_z(np.array([5.0]))) and np.isnan(d_z(np.zeros((0, 2)))).all()
    big = d_z(np.array([100.0, 100.001, 100.002]))
    assert big == pytest.approx(100.001 / 0.001, rel=1e-6) and big > 15  # no capping (flaw 6)
    assert d_z(torch.tensor([1.0, 2.0, 3.0], dtype=torch.bfloat16)).dtype == np.float64
    with pytest.raises(CircuitgateError, match="finite"):
        d_z(np.array([1.0, np.inf]))


def test_d_z_matches_numpy():
    rng = np.random.default_rng(7)
    x = rng.normal(0.5, 2.0, size=(20, 3, 4))
    np.testing.assert_allclose(d_z(x), x.mean(axis=0) / x.std(axis=0, ddof=1), rtol=1e-12)


# --- paired bootstrap ----------------------------------------------------------------------------------------

def _reference_bootstrap(x, n_boot, seed, level):
    """The definition, by gathering: [n_boot, n_pairs, units] resamples of whole pairs."""
    idx = np.random.default_rng(seed).integers(0, x.shape[0], size=(n_boot, x.shape[0]))
    ds = d_z(np.swapaxes(x[idx], 0, 1))
    tail = (1.0 - level) / 2.0 * 100.0
    return _percentile_with_inf(ds, tail), _percentile_with_inf(ds, 100.0 - tail), ds


def test_paired_bootstrap_matches_definition_and_contains_effect():
    rng = np.random.default_rng(8)
    x = rng.normal(0.8, 1.0, size=(25, 3, 4)) + rng.normal(size=(1, 3, 4))
    ci = paired_bootstrap_dz(x, n_boot=300, seed=1)
    assert ci.effect.shape == ci.ci_low.shape == ci.ci_high.shape == (3, 4)
    assert ci.n_boot == 300 and ci.level == 0.95
    np.testing.assert_array_equal(ci.effect, d_z(x))
    assert (ci.ci_low <= ci.effect).all() and (ci.effect <= ci.ci_high).all()
    low, high, ds = _reference_bootstrap(x.reshape(25, -1), 300, 1, 0.95)
    np.testing.assert_allclose(ci.ci_low.reshape(-1), low, rtol=1e-10)
    np.testing.assert_allclose(ci.ci_high.reshape(-1), high, rtol=1e-10)
    # the percentiles are numpy's where everything is finite
    np.testing.assert_allclose(low, np.percentile(ds, 2.5, axis=0), rtol=1e-12)
    narrow = paired_bootstrap_dz(x, n_boot=300, seed=1, level=0.5)
    assert (narrow.ci_low >= ci.ci_low).all() and (narrow.ci_high <= ci.ci_high).all()


def test_paired_bootstrap_deterministic_and_chunk_invariant():
    rng = np.random.default_rng(9)
    x = rng.normal(0.3, 1.0, size=(12, 37))
    a = paired_bootstrap_dz(x, n_boot=200, seed=5)
    b = paired_bootstrap_dz(x, n_boot=200, seed=5)
    for field in ("effect", "ci_low", "ci_high"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.ci_low, paired_bootstrap_dz(x, n_boot=200, seed=6).ci_low)
    for chunk in (1, 5, 36):
        c = paired_bootstrap_dz(x, n_boot=200, seed=5, chunk=chunk)
        np.testing.assert_allclose(c.ci_low, a.ci_low, rtol=1e-12)
        np.testing.assert_allclose(c.ci_high, a.ci_high, rtol=1e-12)
    # units share the resamples: a unit's CI does not depend on its neighbours
    alone = paired_bootstrap_dz(x[:, 3], n_boot=200, seed=5)
    assert alone.ci_low == pytest.approx(a.ci_low[3], rel=1e-12)


def test_paired_bootstrap_degenerate_resamples_are_exact():
    # mostly-zero differences: many resamples draw only zeros (d_z exactly 0) or one repeated value
    # (+/-inf); a constant unit has an infinite effect and CI
    x = np.zeros((10, 4))
    x[-1, 0] = 5.0
    x[-2:, 1] = [0.3, -0.7]
    x[:, 2] = 0.1
    x[:, 3] = np.linspace(-1.0, 2.0, 10)
    ci = paired_bootstrap_dz(x, n_boot=400, seed=2, level=0.9)
    low, high, ds = _reference_bootstrap(x, 400, 2, 0.9)
    assert (ds[:, 0] == 0.0).any() and np.isinf(ds[:, 2]).all()
    np.testing.assert_allclose(ci.ci_low, low, rtol=1e-10)
    np.testing.assert_allclose(ci.ci_high, high, rtol=1e-10)
    assert ci.effect[2] == ci.ci_low[2] == ci.ci_high[2] == np.inf


def test_paired_bootstrap_edge_cases():
    x = np.random.default_rng(10).normal(size=(8, 3))
    ci = paired_bootstrap_dz(x, n_boot=0, seed=0)
    assert np.isnan(ci.ci_low).all() and np.isnan(ci.ci_high).all() and ci.n_boot == 0
    one = paired_bootstrap_dz(x[:1], n_boot=10, seed=0)
    assert np.isnan(one.effect).all() and np.isnan(one.ci_low).all()
    with pytest.raises(CircuitgateError, match="level"):
        paired_bootstrap_dz(x, n_boot=10, seed=0, level=1.5)
    with pytest.raises(CircuitgateError, match="n_boot"):
        paired_bootstrap_dz(x, n_boot=-1, seed=0)


def test_percentile_with_inf():
    v = np.array([[1.0, -np.inf, 1.0, np.nan], [2.0, 0.0, 2.0, np.nan], [np.inf, 1.0, 3.0, np.nan]])
    np.testing.assert_array_equal(_percentile_with_inf(v, 0.0), [1.0, -np.inf, 1.0, np.nan])
    np.testing.assert_array_equal(_percentile_with_inf(v, 75.0), [np.inf, 0.5, 2.5, np.nan])
    np.testing.assert_array_equal(_percentile_with_inf(v, 25.0), [1.5, -np.inf, 1.5, np.nan])


# --- FDR -----------------------------------------------------------------------------------------------------

def test_fdr_matches_statsmodels_over_one_family():
    rng = np.random.default_rng(11)
    p = rng.uniform(size=(3, 5, 7)) ** 4  # features x layers x heads: one family of 105
    for method, sm in (("bh", "fdr_bh"), ("by", "fdr_by")):
        res = fdr_correction(p, 0.05, method)
        reject, p_adj = multipletests(p.ravel(), alpha=0.05, method=sm)[:2]
        assert res.reject.shape == res.p_adj.shape == p.shape and res.method == method
        np.testing.assert_array_equal(res.reject.ravel(), reject)
        np.testing.assert_allclose(res.p_adj.ravel(), p_adj, rtol=1e-12)
        assert res.reject.any() and not res.reject.all()


def test_fdr_bar_by_hand():
    p = np.array([[0.001, 0.2], [0.03, 0.04]])
    assert fdr_correction(p, 0.05, "bh").bar == pytest.approx(0.05 / 4)
    assert fdr_correction(p, 0.05, "by").bar == pytest.approx(0.05 / (4 * (1 + 1 / 2 + 1 / 3 + 1 / 4)))  # 0.006
    # the bar is the threshold of the best unit: rejected alone exactly when p_min <= bar
    for method in ("bh", "by"):
        bar = fdr_correction(np.array([0.5, 0.5, 0.5, 0.5]), 0.05, method).bar
        assert fdr_correction(np.array([bar, 0.5, 0.5, 0.5]), 0.05, method).reject[0]
        assert not fdr_correction(np.array([bar * 1.01, 0.5, 0.5, 0.5]), 0.05, method).reject.any()


def test_fdr_rejects_bad_input():
    with pytest.raises(CircuitgateError, match="bh, by"):
        fdr_correction(np.array([0.1]), 0.05, "bonferroni")
    with pytest.raises(CircuitgateError, match="NaN"):
        fdr_correction(np.array([0.1, np.nan]), 0.05)
    with pytest.raises(CircuitgateError, match="at least one"):
        fdr_correction(np.array([]), 0.05)
    with pytest.raises(CircuitgateError, match=r"\[0, 1\]"):
        fdr_correction(np.array([0.1, 1.5]), 0.05)


# --- pair splits ---------------------------------------------------------------------------------------------

def test_pair_splits_properties():
    for n in (4, 5, 31):
        splits = pair_splits(n, 6, seed=3)
        assert len(splits) == 6
        for select, confirm in splits:
            assert len(select) == n // 2 and len(confirm) == n - n // 2
            assert (np.diff(select) > 0).all() and (np.diff(confirm) > 0).all()
            assert np.intersect1d(select, confirm).size == 0
            np.testing.assert_array_equal(np.union1d(select, confirm), np.arange(n))
    a, b = pair_splits(31, 6, seed=3), pair_splits(31, 6, seed=3)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, b))
    assert len({tuple(s) for s, _ in a}) > 1  # repeated splits differ
    assert not np.array_equal(a[0][0], pair_splits(31, 1, seed=4)[0][0])
    with pytest.raises(CircuitgateError, match="at least 4 pairs"):
        pair_splits(3, 2, seed=0)


# --- properties ----------------------------------------------------------------------------------------------

small_ints = st.integers(-3, 3).map(float)  # zeros and ties
reals = st.floats(-50, 50, allow_nan=False, allow_infinity=False, allow_subnormal=False)


def _diffs(max_pairs: int, units: int = 3):
    return st.integers(1, max_pairs).flatmap(
        lambda m: arrays(float, (m, units), elements=st.one_of(small_ints, reals)))


@settings(max_examples=60, deadline=None)
@given(_diffs(60))
def test_negation_swaps_one_sided_p(d):
    a, b = wilcoxon_signed_rank(d), wilcoxon_signed_rank(-d)
    np.testing.assert_allclose(b.p_greater, a.p_less, rtol=1e-12)
    np.testing.assert_allclose(b.p_less, a.p_greater, rtol=1e-12)
    np.testing.assert_allclose(b.p, a.p, rtol=1e-12)
    np.testing.assert_array_equal(b.statistic, a.n * (a.n + 1) / 2 - a.statistic)
    np.testing.assert_array_equal(b.n, a.n)


@settings(max_examples=60, deadline=None)
@given(_diffs(60), st.randoms(use_true_random=False))
def test_permuting_pairs_changes_nothing(d, random):
    order = list(range(d.shape[0]))
    random.shuffle(order)
    a, b = wilcoxon_signed_rank(d), wilcoxon_signed_rank(d[order])
    for field in a._fields:
        np.testing.assert_allclose(getattr(b, field), getattr(a, field), rtol=1e-12)


def _untied_nonzero(x: np.ndarray) -> bool:
    a = np.abs(x)
    return bool((a > 0).all()) and all(len(np.unique(a[:, j])) == a.shape[0] for j in range(a.shape[1]))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60).flatmap(lambda m: arrays(int, (m, 2), elements=st.integers(-1000, 1000), unique=True)),
       st.sampled_from([1e-3, 0.125, 0.5, 1.0, 3.0]), st.sampled_from([1.0, 2.0, 8.0, 1024.0]))
def test_shift_up_never_raises_p_greater_and_scale_changes_nothing(k, shift, scale):
    # distinct k + 0.3 are never zero and never tie in |d|, before or after these shifts
    # (|k + 0.3 + s| = |k' + 0.3 + s| would need k + k' = -0.6 - 2s, not an integer)
    d = k + 0.3
    s = wilcoxon_signed_rank(d * scale)  # powers of two scale exactly: same ranks, same signs
    a = wilcoxon_signed_rank(d)
    for field in a._fields:
        np.testing.assert_array_equal(getattr(s, field), getattr(a, field))
    # Monotone where the shift keeps the rank structure (no zero, no tie before or after): W+ counts
    # the positive Walsh averages (d_i + d_j) / 2, which a shift only adds to. With zeros or ties it
    # is not (scipy's conditional null changes with them): [0, -1, -2, -2, 3] + 0.5 raises p_greater
    # from 0.625 to 0.65625 (test_shift_can_raise_p_greater_when_ties_change).
    assume(_untied_nonzero(d) and _untied_nonzero(d + shift))
    b = wilcoxon_signed_rank(d + shift)
    assert (b.p_greater <= a.p_greater * (1 + 1e-12)).all()
    assert (b.statistic >= a.statistic).all()


def test_shift_can_raise_p_greater_when_ties_change():
    d = np.array([0.0, -1.0, -2.0, -2.0, 3.0])
    assert wilcoxon_signed_rank(d).p_greater == 0.625 == _scipy(d, "greater").pvalue
    assert wilcoxon_signed_rank(d + 0.5).p_greater == 0.65625 == _scipy(d + 0.5, "greater").pvalue


@settings(max_examples=40, deadline=None)
@given(st.one_of(st.integers(1, 7), st.integers(14, 60)).flatmap(
    lambda m: arrays(float, (m, 2), elements=st.one_of(small_ints, reals))))
def test_agrees_with_scipy_on_generated_arrays(d):
    # 8..13 pairs with ties would run scipy's 2**n sign-flip enumeration (seconds); covered above
    assume(((d != 0).sum(axis=0) > 0).all())  # an all-zero unit with > 13 pairs: scipy NaN, here 1
    _assert_matches_scipy(d, rtol=1e-11, atol=1e-14)


@settings(max_examples=60, deadline=None)
@given(arrays(float, st.tuples(st.integers(1, 4), st.integers(1, 6)), elements=st.floats(0, 1)),
       st.floats(0.001, 0.5), st.floats(0.001, 0.5), st.sampled_from(["bh", "by"]))
def test_fdr_reject_sets_nested_in_alpha(p, a1, a2, method):
    lo, hi = sorted((a1, a2))
    small, large = fdr_correction(p, lo, method), fdr_correction(p, hi, method)
    assert not (small.reject & ~large.reject).any()
    assert small.bar <= large.bar
