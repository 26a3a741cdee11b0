"""circuitgate.stats as a package: one tie-group pass for every rank test, one FDR implementation, one
normal approximation of the signed-rank statistic, and the public names re-exported."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

import circuitgate.stats
from circuitgate.stats import benjamini_hochberg, fdr_correction, min_attainable_p, wilcoxon_signed_rank
from circuitgate.stats.ranks import ACCUMULATE_MAX_COLS, _tie_groups, _tie_groups_torch, tie_groups_columns


def _reference(row: np.ndarray) -> tuple[np.ndarray, float]:
    """2 x scipy's average ranks of the non-NaN values (NaN last, as sorted) and sum(t^3 - t)."""
    valid = row[~np.isnan(row)]
    _, t = np.unique(valid, return_counts=True)
    rank2 = 2.0 * scipy.stats.rankdata(valid, method="average")
    return rank2, float((t.astype(float) ** 3 - t).sum())


@pytest.mark.parametrize("tie_groups", [_tie_groups, _tie_groups_torch], ids=["cpu", "torch"])
@pytest.mark.parametrize("nan_share", [0.0, 0.3])
def test_tie_groups_match_scipy_average_ranks(nan_share, tie_groups):
    """Both paths: the CPU's position-major numpy scans and the torch scans a GPU runs."""
    rng = np.random.default_rng(11)
    z = rng.integers(-3, 4, size=(50, 17)).astype(float)  # many ties
    z[rng.random(z.shape) < nan_share] = np.nan
    s = np.sort(z, axis=1)  # NaN last
    valid = ~np.isnan(s)
    rank2, tie_term = tie_groups(torch.from_numpy(s[:, 1:] != s[:, :-1]), torch.from_numpy(valid))
    assert rank2.dtype == torch.int64 and tie_term.dtype == torch.float64
    for i, row in enumerate(s):
        ref_rank2, ref_tie = _reference(row)
        np.testing.assert_array_equal(rank2[i, : valid[i].sum()].numpy(), ref_rank2)
        assert tie_term[i].item() == ref_tie


@pytest.mark.parametrize("tie_groups", [_tie_groups, _tie_groups_torch], ids=["cpu", "torch"])
def test_tie_groups_count_all_entries_by_default(tie_groups):
    s = torch.tensor([[1.0, 1.0, 2.0, 3.0, 3.0, 3.0], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]])
    rank2, tie_term = tie_groups(s[:, 1:] != s[:, :-1])
    assert rank2.tolist() == [[3, 3, 6, 10, 10, 10], [2, 4, 6, 8, 10, 12]]
    assert tie_term.tolist() == [(8 - 2) + (27 - 3), 0.0]


def test_tie_groups_of_narrow_and_wide_families_are_the_same_integers():
    """tie_groups_columns scans a few columns with numpy's accumulate and many with a loop over the
    positions: the wide family's result is its narrow slices' results side by side."""
    rng = np.random.default_rng(13)
    for m in (2, 13, 32, 65):
        z = np.sort(rng.integers(-3, 4, size=(m, 3 * ACCUMULATE_MAX_COLS + 7)), axis=0)
        differs, counted = z[1:] != z[:-1], rng.random(z.shape) < 0.7
        for c in (None, counted):
            wide = tie_groups_columns(differs, c)
            cuts = range(0, z.shape[1], ACCUMULATE_MAX_COLS)
            narrow = [tie_groups_columns(differs[:, i: i + ACCUMULATE_MAX_COLS],
                                         None if c is None else c[:, i: i + ACCUMULATE_MAX_COLS]) for i in cuts]
            assert wide[0].dtype == narrow[0][0].dtype == np.int32
            np.testing.assert_array_equal(wide[0], np.concatenate([n[0] for n in narrow], axis=1))
            np.testing.assert_array_equal(wide[1], np.concatenate([n[1] for n in narrow]))


def test_bh_per_family_is_fdr_correction_of_each_family():
    # One implementation behind both: each row of benjamini_hochberg is fdr_correction(row, "bh").
    rng = np.random.default_rng(12)
    p = rng.random((5, 23)) ** 3
    per_row = benjamini_hochberg(p, 0.05)
    for i in range(p.shape[0]):
        one = fdr_correction(p[i], 0.05, "bh")
        np.testing.assert_array_equal(per_row.reject[i], one.reject)
        assert per_row.p_adj[i].tobytes() == one.p_adj.tobytes()


@pytest.mark.parametrize("n", [51, 60, 200])
def test_min_attainable_p_is_the_normal_path_of_the_test(n):
    # Past the exact path both use the same normal approximation of W+: all positive, untied.
    res = wilcoxon_signed_rank(np.arange(1.0, n + 1.0))
    assert not res.exact and res.p.item() == min_attainable_p(n)


def test_every_exported_name_resolves():
    for name in circuitgate.stats.__all__:
        assert getattr(circuitgate.stats, name) is not None
    # "@py_builtins" and "@pytest_ar": pytest's assertion rewriting, which it applies to an installed
    # plugin's whole distribution (circuitgate registers through pytest11), not names of ours.
    public = {n for n in dir(circuitgate.stats) if not n.startswith(("_", "@"))} - {
        "agreement", "bootstrap", "change", "depth", "effects", "inputs", "mann_whitney", "multiple", "ranks", "splits",
        "wilcoxon"}
    assert public <= set(circuitgate.stats.__all__)


@pytest.mark.parametrize("n", [1, 7, 20, 59])
def test_stratified_subsample_keeps_each_stratum_share(n):
    from circuitgate.stats import stratified_subsample

    strata = np.array(["a"] * 30 + ["b"] * 20 + ["c"] * 10)
    got = stratified_subsample(strata, n, seed=3)
    assert len(got) == n == len(set(got.tolist())) and list(got) == sorted(got)
    counts = {k: int((strata[got] == k).sum()) for k in "abc"}
    for k, total in (("a", 30), ("b", 20), ("c", 10)):
        assert abs(counts[k] - n * total / 60) <= 1, counts
    np.testing.assert_array_equal(got, stratified_subsample(strata, n, seed=3))
    np.testing.assert_array_equal(stratified_subsample(strata, 60, seed=3), np.arange(60))
