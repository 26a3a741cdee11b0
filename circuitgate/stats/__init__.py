"""Vectorised statistics: effect sizes, rank tests, multiple-testing corrections, bootstrap, folds.

Every function works along axis 0 (samples) over any number of trailing unit axes (layers, heads,
neurons) in one pass; NaN marks a missing sample (H2 skips prompts per head, docs/method.md "H2"),
so each unit may have its own sample size. Nothing here loops over units.

One module per topic: ``effects`` (moments, Cohen's d, d_z), ``mann_whitney`` and ``wilcoxon`` (the
rank tests, sharing ``ranks``' tie-group pass), ``multiple`` (FDR corrections), ``bootstrap``
(percentile intervals), ``change`` (a unit's change between two runs against a margin, and a run's
noise floor), ``depth`` (depth profiles and their rank agreement, H4), ``splits`` (folds and half splits), ``inputs`` (input checks).
"""

from circuitgate.stats.agreement import ScreenAgreement, auroc, average_ranks, screen_agreement, top_k_recall
from circuitgate.stats.change import (Change, NoiseFloor, change_of_dz, change_of_intervals, change_of_means,
                                      change_of_replicates, noise_floor)
from circuitgate.stats.bootstrap import (BootstrapCI, Interval, PairedCI, _percentile_with_inf, bootstrap_d_ci,
                                         paired_bootstrap_dz, paired_bootstrap_means)
from circuitgate.stats.depth import Agreement, depth_bins, depth_profile, profile_agreement, spearman_rows
from circuitgate.stats.effects import Moments, cohens_d, d_z, nan_moments
from circuitgate.stats.mann_whitney import MannWhitneyResult, mann_whitney_u, mann_whitney_u_dense
from circuitgate.stats.multiple import BHResult, FDRResult, benjamini_hochberg, fdr_correction
from circuitgate.stats.splits import kfold_indices, pair_splits, resample_rows, stratified_subsample
from circuitgate.stats.wilcoxon import (EXACT_MAX_N, WilcoxonResult, _doubled_ranks, _signed_rank_sort,
                                        _signed_rank_sort_torch, min_attainable_p, wilcoxon_signed_rank)

__all__ = [
    "Agreement", "BHResult", "BootstrapCI", "EXACT_MAX_N", "FDRResult", "Interval", "MannWhitneyResult",
    "Moments", "PairedCI", "WilcoxonResult", "benjamini_hochberg", "bootstrap_d_ci", "cohens_d", "d_z",
    "depth_bins", "depth_profile", "fdr_correction", "kfold_indices", "mann_whitney_u",
    "mann_whitney_u_dense", "min_attainable_p", "nan_moments", "pair_splits", "paired_bootstrap_dz", "stratified_subsample",
    "paired_bootstrap_means", "profile_agreement", "spearman_rows", "wilcoxon_signed_rank",
    "ScreenAgreement", "auroc", "average_ranks", "screen_agreement", "top_k_recall",
    "Change", "NoiseFloor", "change_of_dz", "change_of_intervals", "change_of_means", "change_of_replicates",
    "noise_floor", "resample_rows",
    # private helpers that tests/unit/test_paired_stats.py checks on their own (sort paths agree, the
    # tie-group ranks, percentiles next to infinities)
    "_doubled_ranks", "_percentile_with_inf", "_signed_rank_sort", "_signed_rank_sort_torch",
]
