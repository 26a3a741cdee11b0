"""Rank machinery shared by the rank tests (Mann-Whitney U, Wilcoxon signed-rank): the working dtype
of a sort, and the one tie-group pass that turns sorted rows into average ranks and the tie term."""

from __future__ import annotations

import numpy as np
import torch


def _sort_dtype(t: torch.Tensor) -> torch.dtype:
    """float64 stays float64; every other dtype is sorted as float32."""
    # float16/bfloat16 widen to float32 exactly (ties kept); numpy cannot sort bfloat16.
    return torch.float64 if t.dtype == torch.float64 else torch.float32


ACCUMULATE_MAX_COLS = 128  # measured crossover: 256 columns of 65 positions, 400 of 32


def tie_groups_columns(differs: np.ndarray, counted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``_tie_groups`` of columns sorted along axis 0, in numpy on the CPU.

    differs [m - 1, cols]: entry j + 1 of a column differs from entry j. Returns rank2 [m, cols] int32
    and the tie term [cols] float64. Laid out by position, each scan step is one vectorised operation
    over all columns, and a loop over the m positions beats a cumulative max along rows: measured for
    46,080 columns of 65, about 40 ms against 190 ms for the torch scans of ``_tie_groups`` (one thread).
    Up to ``ACCUMULATE_MAX_COLS`` columns numpy's own accumulate along the positions is faster than the
    loop's 2m calls (the paired method's split halves: 0.03 against 0.17 ms for 48 columns of 32,
    measured); beyond it, slower (0.95 against 0.28 ms for 1,024). Both give the same integers.
    """
    m, cols = differs.shape[0] + 1, differs.shape[1]
    if m > 2 ** 15:  # positions and doubled ranks must fit int32 (sizes squared: int64 below)
        raise ValueError(f"tie groups of more than {2 ** 15} sorted entries are not supported, got {m}")
    if cols <= ACCUMULATE_MAX_COLS:
        position = np.arange(m, dtype=np.int32)[:, None]
        starts = np.ones((m, cols), dtype=bool)  # a group starts at j where entry j differs from j - 1 ...
        starts[1:] = differs
        ends = np.ones((m, cols), dtype=bool)  # ... and ends at j where entry j + 1 differs from j
        ends[:-1] = differs
        first = np.maximum.accumulate(np.where(starts, position, 0), axis=0)  # int32: position's dtype
        last = np.minimum.accumulate(np.where(ends, position, m - 1)[::-1], axis=0)[::-1]
    else:
        first = np.empty((m, cols), dtype=np.int32)
        last = np.empty((m, cols), dtype=np.int32)
        step = np.empty(cols, dtype=np.int32)
        first[0] = 0
        for j in range(1, m):  # a group starts at j where entry j differs from j - 1
            np.multiply(differs[j - 1], j, out=step)
            np.maximum(first[j - 1], step, out=first[j])
        last[m - 1] = m - 1
        for j in range(m - 2, -1, -1):  # ... and ends at j where entry j + 1 differs from j
            np.multiply(differs[j], j - m, out=step)
            step += m
            np.minimum(last[j + 1], step, out=last[j])
    size = last - first
    size += 1
    # A tie group of size t contributes t elements of (t^2 - 1) each: t^3 - t in total.
    per_entry = size.astype(np.int64) ** 2 - 1
    if counted is not None:
        per_entry *= counted
    first += last
    first += 2
    return first, per_entry.sum(axis=0).astype(np.float64)


def _tie_groups(differs: torch.Tensor, counted: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Doubled average ranks and tie term of rows sorted along dim 1, from where neighbours differ.

    differs [rows, m - 1]: entry j + 1 of a row differs from entry j (NaN != NaN, so a NaN never joins
    a tie group). Tie groups are found from neighbour inequality; every entry gets its group's average
    1-based rank, the mean of the group's first and last position plus 1, doubled so that halves stay
    integral: rank2 [rows, m] int64. The tie term [rows] float64 is sum(t^3 - t) over the tie groups of
    the ``counted`` entries [rows, m] (default: all). On the CPU: ``tie_groups_columns``.
    """
    m = differs.shape[1] + 1
    if differs.device.type == "cpu" and m <= 2 ** 15:
        rank2, tie_term = tie_groups_columns(np.ascontiguousarray(differs.numpy().T),
                                             None if counted is None else np.ascontiguousarray(counted.numpy().T))
        return torch.from_numpy(np.ascontiguousarray(rank2.T)).to(torch.int64), torch.from_numpy(tie_term)
    return _tie_groups_torch(differs, counted)


def _tie_groups_torch(differs: torch.Tensor, counted: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``_tie_groups`` by cumulative max and min along the rows, where the tensors are (a GPU)."""
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
