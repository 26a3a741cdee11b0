"""Rank machinery shared by the rank tests (Mann-Whitney U, Wilcoxon signed-rank): the working dtype
of a sort, and the one tie-group pass that turns sorted rows into average ranks and the tie term."""

from __future__ import annotations

import torch


def _sort_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype is sorted as float32."""
    # float16/bfloat16 widen to float32 exactly (ties kept); numpy cannot sort bfloat16.
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _tie_groups(differs: torch.Tensor, counted: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Doubled average ranks and tie term of rows sorted along dim 1, from where neighbours differ.

    differs [rows, m - 1]: entry j + 1 of a row differs from entry j (NaN != NaN, so a NaN never joins
    a tie group). Tie groups are found from neighbour inequality; every entry gets its group's average
    1-based rank, the mean of the group's first and last position plus 1, doubled so that halves stay
    integral: rank2 [rows, m] int64. The tie term [rows] float64 is sum(t^3 - t) over the tie groups of
    the ``counted`` entries [rows, m] (default: all).
    """
    rows, m = differs.shape[0], differs.shape[1] + 1
    edge = torch.ones((rows, 1), dtype=torch.bool, device=differs.device)
    starts, ends = torch.cat([edge, differs], dim=1), torch.cat([differs, edge], dim=1)
    idx = torch.arange(m, device=differs.device).expand(rows, m)
    first = torch.cummax(torch.where(starts, idx, 0), dim=1).values
    last = torch.flip(torch.cummin(torch.flip(torch.where(ends, idx, m), [1]), dim=1).values, [1])
    size = (last - first + 1).to(torch.float64)
    # A tie group of size t contributes t elements of (t^2 - 1) each: t^3 - t in total.
    per_entry = size * size - 1.0
    if counted is not None:
        per_entry = torch.where(counted, per_entry, 0.0)
    return first + last + 2, per_entry.sum(dim=1)
