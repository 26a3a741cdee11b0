"""Multiple-testing corrections via statsmodels ``multipletests``: Benjamini-Hochberg per family for
the original method (docs/method.md "H1", "H2"), and one BH or BY family over every test for the
paired method (docs/method.md flaw 5)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from statsmodels.stats.multitest import multipletests

from circuitgate import CircuitgateError

_STATSMODELS_METHODS = {"bh": "fdr_bh", "by": "fdr_by"}


class BHResult(NamedTuple):
    reject: np.ndarray
    p_adj: np.ndarray


class FDRResult(NamedTuple):
    """One false-discovery-rate family over a whole array of p-values (``fdr_correction``)."""

    reject: np.ndarray
    p_adj: np.ndarray
    bar: float     # the smallest rejection threshold of the procedure: alpha/m for BH, alpha/(m * sum_{i<=m} 1/i) for BY
    method: str    # "bh" or "by"


def _fdr_rows(families: np.ndarray, alpha: float, method: str) -> tuple[np.ndarray, np.ndarray]:
    """Rejections and adjusted p-values of ``method`` ("bh" or "by") applied to each row of a 2-D
    array, one family per row."""
    reject = np.empty(families.shape, bool)
    p_adj = np.empty(families.shape)
    for i, row in enumerate(families):  # one call per family (feature/metric), never per unit
        reject[i], p_adj[i] = multipletests(row, alpha=alpha, method=_STATSMODELS_METHODS[method])[:2]
    return reject, p_adj


def benjamini_hochberg(p: np.ndarray, alpha: float) -> BHResult:
    """Benjamini-Hochberg FDR (statsmodels ``multipletests(method="fdr_bh")``), one family per row:
    the last axis holds the family's units (e.g. the layers of one feature), leading axes index
    families (one per feature or metric)."""
    p = np.asarray(p, dtype=float)
    if p.ndim == 0 or p.shape[-1] == 0:
        raise CircuitgateError("benjamini_hochberg needs at least one p-value per family")
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise CircuitgateError("benjamini_hochberg: p-values must be finite and in [0, 1]")
    reject, p_adj = _fdr_rows(p.reshape(-1, p.shape[-1]), alpha, "bh")
    return BHResult(reject.reshape(p.shape), p_adj.reshape(p.shape))


def fdr_correction(p: np.ndarray, alpha: float, method: str = "bh") -> FDRResult:
    """False discovery rate control over ONE family: every p-value in ``p`` (all features x all
    units, flattened), via statsmodels ``multipletests`` "fdr_bh" (Benjamini-Hochberg) or "fdr_by"
    (Benjamini-Yekutieli, valid under any dependence between the tests, e.g. features computed from the
    same activations: docs/method.md flaw 5). Correcting per feature or per layer instead would let the
    family size, and so the error rate, grow with the number of families.

    ``reject`` and ``p_adj`` keep p's shape. ``bar`` is the procedure's smallest rejection threshold
    (the bar the best unit must pass): alpha/m for BH, alpha/(m sum_{i<=m} 1/i) for BY; compare it with
    ``min_attainable_p`` to see whether a rejection is possible at all. NaN p-values are an error:
    dropping them would silently shrink the family.
    """
    if method not in _STATSMODELS_METHODS:
        raise CircuitgateError(f"unknown FDR method {method!r}: use one of bh, by")
    p = np.asarray(p, dtype=float)
    if p.size == 0:
        raise CircuitgateError("fdr_correction needs at least one p-value")
    if np.isnan(p).any():
        raise CircuitgateError("fdr_correction: NaN p-values are not allowed (every test in the family must have a p)")
    if np.any((p < 0) | (p > 1)):
        raise CircuitgateError("fdr_correction: p-values must lie in [0, 1]")
    if not 0.0 < alpha < 1.0:
        raise CircuitgateError(f"fdr_correction: alpha must lie in (0, 1), got {alpha}")
    m = p.size
    reject, p_adj = _fdr_rows(p.reshape(1, m), alpha, method)
    harmonic = 1.0 if method == "bh" else float(np.sum(1.0 / np.arange(1, m + 1)))
    return FDRResult(reject.reshape(p.shape), p_adj.reshape(p.shape), alpha / (m * harmonic), method)
