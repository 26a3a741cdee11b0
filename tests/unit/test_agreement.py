"""A screen's agreement with exact effects (circuitgate.stats.agreement) against scipy and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from circuitgate import CircuitgateError
from circuitgate.stats import ScreenAgreement, auroc, average_ranks, screen_agreement, top_k_recall


@pytest.mark.parametrize("seed", range(5))
def test_average_ranks_match_scipy(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, size=40).astype(float)  # many ties
    np.testing.assert_array_equal(average_ranks(x), scipy.stats.rankdata(x, method="average"))


@pytest.mark.parametrize("seed", range(6))
def test_auroc_is_mann_whitney_u_over_the_pairs(seed):
    rng = np.random.default_rng(seed)
    score = np.round(rng.normal(size=60), 1)  # rounded: ties across the classes
    positive = rng.random(60) < 0.3
    u = scipy.stats.mannwhitneyu(score[positive], score[~positive]).statistic
    assert auroc(score, positive) == pytest.approx(u / (positive.sum() * (~positive).sum()))
    # and by its definition: P(positive > negative) + half the ties
    diff = score[positive][:, None] - score[~positive][None, :]
    assert auroc(score, positive) == pytest.approx(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_auroc_edges():
    assert auroc(np.array([3.0, 2.0, 1.0]), np.array([True, True, False])) == 1.0
    assert auroc(np.array([1.0, 2.0, 3.0]), np.array([True, True, False])) == 0.0
    assert np.isnan(auroc(np.array([1.0, 2.0]), np.array([False, False])))


def test_top_k_recall():
    exact = np.array([5.0, 4.0, 3.0, 0.0, 0.0, 0.0])
    assert top_k_recall(exact, exact, 3) == 1.0
    est = np.array([5.0, 0.1, 3.0, 4.0, 0.0, 0.0])  # target 1 is 4th by the screen
    assert top_k_recall(est, exact, 3) == pytest.approx(2 / 3)
    assert top_k_recall(est, exact, 3, 4) == 1.0
    # ties count against the screen: target 1 ties the 3rd place, so it is not surely in the top 3
    tied = np.array([5.0, 3.0, 3.0, 3.0, 0.0, 0.0])
    assert top_k_recall(tied, exact, 3) == pytest.approx(1 / 3)
    assert top_k_recall(tied, exact, 3, 4) == 1.0
    with pytest.raises(CircuitgateError, match="exceeds"):
        top_k_recall(exact, exact, 7)


def test_screen_agreement_against_scipy():
    rng = np.random.default_rng(0)
    exact = np.concatenate([rng.uniform(0.2, 1.0, 8), rng.normal(0, 0.02, 92)])
    est = exact + rng.normal(0, 0.1, 100)
    res = screen_agreement(est, exact, tau=0.1)
    assert isinstance(res, ScreenAgreement)
    assert (res.n, res.k, res.n_positive) == (100, 8, 8)
    big = np.abs(exact) >= 0.1
    assert res.n_spearman == int(big.sum())
    assert res.spearman == pytest.approx(scipy.stats.spearmanr(est[big], exact[big]).statistic)
    u = scipy.stats.mannwhitneyu(est[exact >= 0.1], est[exact < 0.1]).statistic
    assert res.auroc == pytest.approx(u / (8 * 92))
    order = np.argsort(-est)
    top8 = set(np.argsort(-exact)[:8])
    assert res.recall_k == len(top8 & set(order[:8])) / 8
    assert res.recall_2k == len(top8 & set(order[:16])) / 8
    fixed = screen_agreement(est, exact, tau=0.1, k=20)
    assert fixed.k == 20 and fixed.recall_2k == len(set(np.argsort(-exact)[:20]) & set(order[:40])) / 20


def test_screen_agreement_without_positives():
    exact = np.array([0.01, 0.0, -0.02, 0.05])
    res = screen_agreement(exact, exact, tau=0.1)
    assert res.k == 1 and res.n_positive == 0 and np.isnan(res.auroc) and np.isnan(res.spearman)
    assert res.recall_k == 1.0


@pytest.mark.parametrize("args, kwargs, message", [
    ((np.zeros(3), np.zeros(4)), {"tau": 0.1}, "1-D of one length"),
    ((np.zeros((2, 2)), np.zeros((2, 2))), {"tau": 0.1}, "1-D of one length"),
    ((np.array([np.nan]), np.zeros(1)), {"tau": 0.1}, "finite"),
    ((np.zeros(0), np.zeros(0)), {"tau": 0.1}, "no targets"),
    ((np.zeros(3), np.zeros(3)), {"tau": 0.0}, "tau must be > 0"),
    ((np.zeros(3), np.zeros(3)), {"tau": 0.1, "k": 0}, "k must be"),
])
def test_bad_input(args, kwargs, message):
    with pytest.raises(CircuitgateError, match=message):
        screen_agreement(*args, **kwargs)
