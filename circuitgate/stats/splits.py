"""Index splits of the samples: the original method's k folds (docs/method.md "H1") and the paired
method's random half splits of pairs (docs/method.md flaw 3)."""

from __future__ import annotations

import numpy as np

from circuitgate import CircuitgateError


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


def stratified_subsample(strata: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` of the samples, drawn without replacement so that every stratum keeps
    (to within one) its share: a stratum's samples in a random order from ``default_rng(seed)``, then
    the strata taken in turn by how far each falls short of its share. All samples when n covers them."""
    strata = np.asarray(strata)
    if n < 1:
        raise CircuitgateError(f"a subsample needs n >= 1, got {n}")
    if n >= len(strata):
        return np.arange(len(strata))
    rng = np.random.default_rng(seed)
    labels, inverse = np.unique(strata, return_inverse=True)
    queues = [list(rng.permutation(np.flatnonzero(inverse == k))) for k in range(len(labels))]
    share = np.array([len(q) for q in queues], dtype=float) / len(strata)
    taken = np.zeros(len(labels))
    chosen = []
    for _ in range(n):  # n draws of a handful of strata, not a loop over units
        shortfall = np.where([bool(q) for q in queues], share * (len(chosen) + 1) - taken, -np.inf)
        k = int(np.argmax(shortfall))
        chosen.append(queues[k].pop(0))
        taken[k] += 1
    return np.sort(np.array(chosen, dtype=np.int64))


def resample_rows(n_pairs: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_pairs]: the pairs each bootstrap resample draws (with replacement), from
    ``default_rng(seed)``. Two runs with the same seed over the same pairs draw the same resamples, so
    what they recompute on them pairs up (docs/design.md, "Gating")."""
    if n_pairs < 1 or resamples < 1:
        raise CircuitgateError(f"resample_rows needs n_pairs >= 1 and resamples >= 1, got {n_pairs} and {resamples}")
    return np.random.default_rng(seed).integers(0, n_pairs, size=(resamples, n_pairs))
