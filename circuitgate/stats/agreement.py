"""Agreement of a screen with exact effects over the same targets: does a cheap estimate (the attribution
screen) put the targets that matter where exact confirmation will look?

Three views, as the screen is used: recall of the exact top-k within the screen's top-k and top-2k
(what confirming the screen's top-2k exactly would find), AUROC of the screen score for "the exact
effect reaches tau" (ranking quality over every target), and Spearman's rho over the targets whose
exact |effect| reaches tau only (most exact effects are ~0, so a rho over all targets mostly ranks
noise). Effects follow H5's sign: larger is a larger drop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from circuitgate import CircuitgateError
from circuitgate.stats.depth import spearman_rows
from circuitgate.stats.inputs import _check_count


@dataclass(frozen=True)
class ScreenAgreement:
    """How well a screen's scores recover exact effects over one set of targets."""

    n: int  # targets compared
    k: int  # size of the exact top set
    recall_k: float  # share of the exact top-k within the screen's top-k
    recall_2k: float  # share of the exact top-k within the screen's top-2k
    auroc: float  # P(screen score of a positive > that of a negative), ties half; NaN without both classes
    n_positive: int  # targets whose exact effect >= tau
    spearman: float  # over targets with exact |effect| >= tau; NaN with fewer than 3 or a constant side
    n_spearman: int
    tau: float


def _pair(estimate: np.ndarray, exact: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    est, ex = np.asarray(estimate, dtype=float), np.asarray(exact, dtype=float)
    if est.ndim != 1 or est.shape != ex.shape:
        raise CircuitgateError(f"estimate and exact effects must be 1-D of one length, got {est.shape} and {ex.shape}")
    if not (np.isfinite(est).all() and np.isfinite(ex).all()):
        raise CircuitgateError("estimate and exact effects must be finite")
    return est, ex


def average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of a 1-D array, tied values sharing their average rank (scipy's rankdata 'average')."""
    _, inverse, counts = np.unique(np.asarray(x, dtype=float), return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2.0)[inverse]


def top_k_recall(estimate: np.ndarray, exact: np.ndarray, k: int, m: int | None = None) -> float:
    """Share of the k targets with the largest exact effects that are among the screen's m (default k)
    largest estimates.

    Ties count against the screen: a target is within the top m only if at most m targets have an
    estimate at least as large as its own, however ties are broken. The exact top k is taken by exact
    effect, ties broken by target order (callers pick k where the exact effects separate: a threshold).
    """
    est, ex = _pair(estimate, exact)
    k = _check_count(k, "k", 1)
    m = k if m is None else _check_count(m, "m", 1)
    if k > len(ex):
        raise CircuitgateError(f"k ({k}) exceeds the number of targets ({len(ex)})")
    top = np.argsort(-ex, kind="stable")[:k]
    ordered = np.sort(est)
    at_least = len(est) - np.searchsorted(ordered, est[top], side="left")  # estimates >= each top target's
    return float((at_least <= m).mean())


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for the boolean labels ``positive``: the Mann-Whitney U of
    the positives over their count times the negatives', from average ranks (ties count half). NaN when
    either class is empty."""
    score = np.asarray(score, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    if score.ndim != 1 or score.shape != positive.shape:
        raise CircuitgateError(f"score and labels must be 1-D of one length, got {score.shape} and {positive.shape}")
    n_pos = int(positive.sum())
    n_neg = len(score) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    u = average_ranks(score)[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def screen_agreement(estimate: np.ndarray, exact: np.ndarray, *, tau: float, k: int | None = None) -> ScreenAgreement:
    """Agreement of screen estimates with exact effects over the same targets (1-D, one per target).

    Positives (AUROC) are the targets with exact effect >= tau; Spearman runs over those with exact
    |effect| >= tau. ``k`` defaults to the number of positives (at least 1: with none, the single
    largest exact effect is the top set).
    """
    est, ex = _pair(estimate, exact)
    if len(ex) == 0:
        raise CircuitgateError("no targets to compare")
    tau = float(tau)
    if not tau > 0:
        raise CircuitgateError(f"tau must be > 0, got {tau}")
    positive = ex >= tau
    k = max(1, int(positive.sum())) if k is None else _check_count(k, "k", 1)
    sizable = np.abs(ex) >= tau
    rho = float(spearman_rows(est[sizable], ex[sizable])) if sizable.sum() >= 3 else float("nan")
    return ScreenAgreement(
        n=len(ex), k=k, recall_k=top_k_recall(est, ex, k), recall_2k=top_k_recall(est, ex, k, min(2 * k, len(ex))),
        auroc=auroc(est, positive), n_positive=int(positive.sum()), spearman=rho, n_spearman=int(sizable.sum()),
        tau=tau,
    )
