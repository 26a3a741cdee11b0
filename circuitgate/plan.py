"""H5's plan: what its passes will take on this machine, decided before the first of them runs.

From the model's shape, the prompts' token counts, the batch size and H5's settings, ``plan_h5`` counts
the targets measured exactly and the rows every pass holds, chooses the rows per pass so that the
largest pass fits the memory available, and estimates the time (from a forward's cost measured on
this machine) and the peak memory. A run whose smallest pass (one copy of one batch) cannot fit stops
before it starts, in one line naming the setting to change (docs/design.md, "Runs sized to the machine").

The memory of a pass is a model calibrated on smollm2 (below). It is needed because a pass's memory grows
with its rows: with the old fixed 2,048 rows per pass on a CPU, one pass of the grouped
integrated-gradients screen on smollm2 (2,032 rows x 25 tokens x 30 layers, every activation kept for
the backward) would need about 120 GB; the process grew 180 MB a second until it was killed at 20 GB,
with nothing printed.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from circuitgate import CircuitgateError
from circuitgate.config import H5Config
from circuitgate.models.adapters import Shape

# Rows of one forward at most, whatever the memory (the batch repeated once per target, docs/nnsight.md).
MAX_ROWS = {"cpu": 2048, "cuda": 512}

# Resident memory of one pass per row, calibrated on smollm2 (30 layers, 9 heads of 64, hidden 576,
# ffn 1,536, a 49,152-token vocabulary; float32 on one CPU thread): the peak resident memory of a
# process that loads the model and runs one pass (ru_maxrss), less the same before the pass, at 8-64
# rows and 16-128 tokens (the command is in docs/design.md). W = hidden + heads x head_dim + ffn
# (2,688 on smollm2) values of the model's dtype per token and layer.
#
# A screen row (forward and backward, every activation kept for the backward; the edited units' drop
# directions and products besides) measured 73-78 KB per token and layer at 16-25 tokens (the
# built-in prompts' lengths: 7 W + 3.4 attention scores per head and token), 55-59 KB at 64-128
# tokens: the model is within 5% at the prompts' lengths and 35-50% over at longer ones. Integrated
# gradients' rows each edit one site and measured 0-50% less; they are counted as attribution
# patching's (the grouped screen of 16 prompts, 32 rows a pass: 2,841 MB peak, 2,890 MB planned).
SCREEN_WIDTHS = 7.0
SCREEN_SCORES = 3.4
# A sweep row (a forward without gradients: one layer's activations alive at a time) measured 4.8-9.1 W
# per token at 512-1,024 rows: 7 W, plus 4 attention scores per head and token.
SWEEP_WIDTHS = 7.0
SWEEP_SCORES = 4.0
# Each logit position a row keeps costs this many float32 vectors of the vocabulary (the logits and
# answer_metrics' copies of them): a second answer token added 0.78 MB a row = 4 x 49,152 x 4 bytes.
LOGIT_COPIES = 4
# What a pass holds besides its rows (the fit's intercept: 150-450 MB), and the share of the memory
# available that the run may fill: the rest is left to the machine's other work.
PASS_SLACK = 512 << 20
FIT = 0.8
# What a row costs in rows of the timed forward (one copy of a batch, ``clean.measure_clean``),
# measured on smollm2 on one CPU thread: a screen row (forward and backward) of plain attribution
# patching 2.5x (docs/validation.md, "Real pretrained weights without a hub"); a sweep row in a pass of many copies
# 0.51x, each copy computed from its target's layer on (``benchmarks/test_screen.py``: one confirmed
# target against one plain forward of its batch, targets spread over the layers).
SCREEN_COST = 2.5
SWEEP_COST = 0.5


@dataclass(frozen=True)
class Prompts:
    """One task's prompts as H5 runs them: each prompt's tokens and its answer's tokens (a sweep feeds
    the prompt and its answer but the answer's last token, and keeps a logit row per answer token)."""

    prompt: tuple[int, ...]
    answer: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.prompt) != len(self.answer):
            raise CircuitgateError(f"{len(self.prompt)} prompts but {len(self.answer)} answers to plan")

    @property
    def fed(self) -> list[int]:
        return [p + a - 1 for p, a in zip(self.prompt, self.answer)]


@dataclass(frozen=True)
class Plan:
    """What H5 will take. ``targets``: measured exactly, per task (``at_most``: the screen picks them,
    so their number is a bound); rows: forward rows of the exact sweeps (patching included) and
    forward-and-backward rows of the screen, both tasks; ``screen_max_rows``/``sweep_max_rows``: the
    rows per pass the screen and the sweeps are given, ``*_pass_rows`` the rows of their fullest pass
    (fewer where a batch has fewer copies to run); ``seconds`` and ``peak_bytes``: the estimates
    (``held_bytes``, resident when planned, the weights' ``weights_bytes`` among them, plus the largest
    pass, ``pass_bytes``); ``available_bytes``: what the machine had beyond what was held (None: not
    measured, as under --remote)."""

    path: str
    device: str
    batch_size: int
    pairs: int
    screen_pairs: int
    targets: int
    at_most: bool
    sweep_rows: int
    screen_rows: int
    sweep_max_rows: int
    screen_max_rows: int
    sweep_pass_rows: int
    screen_pass_rows: int
    seconds: float | None
    pass_bytes: int
    peak_bytes: int
    held_bytes: int
    weights_bytes: int
    available_bytes: int | None
    seconds_per_token: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The plan in one line, as the terminal and report.html show it."""
        return describe(self.to_dict())


def describe(plan: Mapping[str, Any]) -> str:
    """A plan (``Plan.to_dict``, as verdicts.json holds it) in one line."""
    targets = f"{'at most ' if plan['at_most'] else ''}{plan['targets']:,} targets"
    screen = ""
    if plan["path"] == "attribution":
        screen = (f"attribution screen on {plan['screen_pairs']} pairs ({plan['screen_rows']:,} forward-and-backward "
                  f"rows, {plan['screen_pass_rows']:,} a pass), then ")
    time = "time not estimated" if plan["seconds"] is None else f"estimated {duration(plan['seconds'])}"
    room = "" if plan["available_bytes"] is None else f" ({gigabytes(plan['available_bytes'])} more available)"
    return (f"{screen}{targets} measured exactly on {plan['pairs']} pairs ({plan['sweep_rows']:,} forward rows, "
            f"{plan['sweep_pass_rows']:,} a pass); {time}, peak memory {gigabytes(plan['peak_bytes'])}{room}, "
            f"weights {gigabytes(plan['weights_bytes'])}")


def plan_outcome(plan: Mapping[str, Any]) -> str:
    """A plan (as verdicts.json holds it) beside what H5 took since it was made (its ``measured``), in
    one line: the terminal summary's."""
    targets = f"{'at most ' if plan['at_most'] else ''}{plan['targets']:,} targets on {plan['pairs']} pairs"
    passes = f"{plan['sweep_pass_rows']:,} sweep rows a pass"
    if plan["path"] == "attribution":
        passes = f"{plan['screen_pass_rows']:,} screen and {passes}"
    time = "time not estimated" if plan["seconds"] is None else duration(plan["seconds"])
    out = f"{targets}, {passes}; estimated {time}, {gigabytes(plan['peak_bytes'])} peak"
    measured = plan.get("measured")
    if measured:
        out += f"; took {duration(measured['seconds'])}, {gigabytes(measured['peak_bytes'])} peak"
    return out


def gigabytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def screened_count(n: int, top_k: int, fraction: float) -> int:
    """At most how many of ``n`` candidates the screen sends to exact measurement: the 2 * top_k per
    skill with the largest estimates (at most 4 * top_k over the two skills) and ``fraction`` of the
    rest (``analyses.h5.screened``)."""
    top = min(n, 4 * top_k)
    return top + min(n - top, math.ceil(fraction * (n - top)))


def measured_targets(path: str, cfg: H5Config, components: int, neurons: int, sets: int) -> tuple[int, int]:
    """(targets of the fixed sweep, targets of the neuron-set sweep) measured exactly, at most, of
    ``components`` attention, MLP, head and fixed neuron-set targets, ``neurons`` single neurons (only
    the screen measures them) and ``sets`` H3 neuron sets (each ablated with its random control)."""
    if path == "exact":
        return components, 2 * sets
    return (screened_count(components, cfg.top_k, cfg.random_fraction)
            + screened_count(neurons, cfg.top_k, cfg.neuron_random_fraction),
            2 * screened_count(sets, cfg.top_k, cfg.random_fraction))


def _copies(steps: int, groups: int) -> int:
    """Copies of a prompt the screen runs (``attribution._copies``)."""
    from circuitgate.attribution import _copies as copies  # torch, as in ``_batches``

    return len(copies(steps, groups))


def _chunk_sizes(b: int, max_rows: int, items: int) -> list[int]:
    """Copies in each of a batch's passes (``interventions._chunks``: as many as fit in max_rows beside
    the clean copy, at least one)."""
    from circuitgate.interventions import _chunks

    return [len(c) for c in _chunks(range(items), b, max_rows)]


def _per_pass(b: int, max_rows: int, items: int, clean: bool) -> int:
    """Rows of a batch's fullest pass (a sweep adds a clean copy to every pass, the screen's is one of
    its copies)."""
    return (max(_chunk_sizes(b, max_rows, items)) + clean) * b


def _total(b: int, max_rows: int, items: int, clean: bool) -> int:
    """Rows of all of a batch's passes."""
    return (items + clean * len(_chunk_sizes(b, max_rows, items))) * b


def row_width(shape: Shape) -> int:
    """The activations of one layer and token that a pass's row holds, in vectors of the model's
    widths: the residual, the heads' outputs and the MLP neurons."""
    return shape.hidden + shape.n_heads * shape.head_dim + shape.ffn


def _sweep_row_bytes(shape: Shape, vocab: int, dtype_bytes: int, tokens: int, kept: int) -> float:
    width = row_width(shape)
    return (tokens * (SWEEP_WIDTHS * width + SWEEP_SCORES * shape.n_heads * tokens) * dtype_bytes
            + kept * LOGIT_COPIES * vocab * 4)


def _screen_row_bytes(shape: Shape, vocab: int, dtype_bytes: int, tokens: int) -> float:
    width = row_width(shape)
    return (shape.n_layers * tokens * (SCREEN_WIDTHS * width + SCREEN_SCORES * shape.n_heads * tokens) * dtype_bytes
            + LOGIT_COPIES * vocab * 4)


@dataclass(frozen=True)
class _Batch:
    size: int
    tokens: int  # the longest prompt's, as padded
    kept: int  # logit positions (the longest answer's tokens)


def padded_tokens(lengths: Sequence[int], batch_size: int) -> int:
    """Tokens a forward of every prompt runs, padded as batched (``interventions.plan_batches``): what
    a measured forward's seconds are divided by."""
    return sum(x.size * x.tokens for x in _batches(lengths, lengths, batch_size))


def _batches(lengths: Sequence[int], kept: Sequence[int], batch_size: int) -> list[_Batch]:
    # Imported here: interventions brings torch and nnsight, which showing a plan (report.html) needs not.
    from circuitgate.interventions import plan_batches

    return [_Batch(len(ix), max(lengths[i] for i in ix), max(kept[i] for i in ix))
            for ix in plan_batches(lengths, batch_size)] if len(lengths) else []


def plan_h5(shape: Shape, *, vocab: int, dtype_bytes: int, weights_bytes: int, swept: Sequence[Prompts],
            screened: Sequence[Sequence[int]], batch_size: int, device: str, path: str, cfg: H5Config,
            sweeps: Sequence[int], seconds_per_token: float | None, held_bytes: int,
            available_bytes: int | None, at_most: bool = False) -> Plan:
    """H5's plan on this machine (module docstring).

    ``swept``: each task's swept prompts; ``screened``: each task's screen prompts' token counts (none
    on the exact path); ``sweeps``: the targets of each exact sweep (per task; the residual patching,
    one layer per copy, is added here); ``seconds_per_token``: a forward's measured seconds per row and
    token; ``held_bytes``: resident now; ``available_bytes``: what the machine has beyond it (None: do
    not fit, every pass at ``MAX_ROWS``). Raises CircuitgateError, one line naming the setting to
    change, when not even one copy of one batch fits.
    """
    cap = MAX_ROWS.get(device, MAX_ROWS["cuda"])
    copies = _copies(cfg.screen_steps, cfg.screen_groups) if path == "attribution" else 0
    items = [n for n in sweeps if n] + [shape.n_layers]  # a sweep of no target is not run

    def layout(b: int) -> tuple[list[_Batch], list[_Batch]]:
        sweep = [x for task in swept for x in _batches(task.fed, task.answer, b)]
        screen = [x for task in screened for x in _batches(list(task), [1] * len(task), b)]
        return sweep, screen

    def sweep_peak(batches: list[_Batch], max_rows: int) -> float:
        return max((_per_pass(x.size, max_rows, max(items), True)
                    * _sweep_row_bytes(shape, vocab, dtype_bytes, x.tokens, x.kept) for x in batches), default=0.0)

    def screen_peak(batches: list[_Batch], max_rows: int) -> float:
        return max((_per_pass(x.size, max_rows, copies, False)
                    * _screen_row_bytes(shape, vocab, dtype_bytes, x.tokens) for x in batches), default=0.0)

    def largest_fitting(peak: Any, batches: list[_Batch], budget: float) -> int | None:
        """The most rows per pass (up to the cap) whose fullest pass fits ``budget``; None: not even the
        smallest pass (one copy of a batch) does."""
        if peak(batches, 0) > budget:
            return None
        low, high = 0, cap
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if peak(batches, mid) <= budget else (low, mid - 1)
        return max(low, 1)

    sweep, screen = layout(batch_size)
    if available_bytes is None:
        sweep_max, screen_max = cap, cap
    else:
        budget = FIT * available_bytes - PASS_SLACK
        fitted = largest_fitting(sweep_peak, sweep, budget), largest_fitting(screen_peak, screen, budget)
        if None in fitted:
            what = "exact sweep" if fitted[0] is None else "attribution screen"
            worst = sweep if fitted[0] is None else screen
            need = (sweep_peak if fitted[0] is None else screen_peak)(worst, 0)
            longest = max(x.tokens for x in worst)
            raise CircuitgateError(
                f"H5 does not fit in memory: one {what} pass of {min(batch_size, max(x.size for x in worst))} prompts "
                f"x {longest} tokens needs {gigabytes(need + PASS_SLACK)} beside the {gigabytes(held_bytes)} this run "
                f"holds, and {gigabytes(available_bytes)} more is available (a run fills at most {FIT:.0%} of it); "
                + _smaller(batch_size, dtype_bytes, lambda b: all(
                    largest_fitting(peak, part, budget) is not None
                    for peak, part in zip((sweep_peak, screen_peak), layout(b))))
            )
        sweep_max, screen_max = fitted
    sweep_rows = sum(_total(x.size, sweep_max, n, True) for x in sweep for n in items)
    screen_rows = sum(_total(x.size, screen_max, copies, False) for x in screen)
    # The patching runs each batch once less its last token, then one token a row (``patch_residual``).
    patching = sum(x.size * (x.tokens - 1) + _total(x.size, sweep_max, shape.n_layers, True) for x in sweep)
    work = (SWEEP_COST * sum(_total(x.size, sweep_max, n, True) * x.tokens for x in sweep for n in items[:-1])
            + patching + SCREEN_COST * sum(_total(x.size, screen_max, copies, False) * x.tokens for x in screen))
    largest = max(sweep_peak(sweep, sweep_max), screen_peak(screen, screen_max))
    return Plan(
        path=path, device=device, batch_size=batch_size, pairs=max((len(t.prompt) for t in swept), default=0),
        screen_pairs=max((len(t) for t in screened), default=0), targets=int(sum(sweeps)), at_most=at_most,
        sweep_rows=int(sweep_rows), screen_rows=int(screen_rows), sweep_max_rows=int(sweep_max),
        screen_max_rows=int(screen_max),
        sweep_pass_rows=max((_per_pass(x.size, sweep_max, max(items), True) for x in sweep), default=0),
        screen_pass_rows=max((_per_pass(x.size, screen_max, copies, False) for x in screen), default=0),
        seconds=None if seconds_per_token is None else float(work * seconds_per_token),
        pass_bytes=int(largest), peak_bytes=int(held_bytes + PASS_SLACK + largest), held_bytes=int(held_bytes),
        weights_bytes=int(weights_bytes), available_bytes=None if available_bytes is None else int(available_bytes),
        seconds_per_token=seconds_per_token,
    )


def _smaller(batch_size: int, dtype_bytes: int, fits: Any) -> str:
    """The setting that makes it fit: the largest smaller batch that does, else a narrower dtype."""
    b = next((b for b in range(batch_size - 1, 0, -1) if fits(b)), None)
    if b is not None:
        return f"set --batch-size {b}"
    if dtype_bytes > 2:
        return "set --dtype bfloat16"
    return "run it where more memory is free (--device cuda)"


# -- the machine --------------------------------------------------------------------------------------
def memory_now(device: str) -> tuple[int, int]:
    """(bytes held, bytes more available) on ``device``: on the CPU this process's resident memory and
    the machine's available memory (psutil), less where a cgroup limit leaves less; on CUDA torch's
    allocation and the first GPU's free memory."""
    if device == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info()
        return int(torch.cuda.memory_allocated()), int(free)
    import psutil

    held = psutil.Process().memory_info().rss
    available = psutil.virtual_memory().available
    limit = _cgroup_room()
    return int(held), int(available if limit is None else min(available, limit))


def peak_bytes(device: str) -> int:
    """This process's peak resident memory (on CUDA: torch's peak allocation), in bytes."""
    if device == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated())
    import resource

    # ru_maxrss is in KiB on Linux, bytes on macOS.
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2, else v1); None without a limit."""
    if not sys.platform.startswith("linux"):
        return None
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            cap = Path("/sys/fs/cgroup", limit).read_text().strip()
            used = int(Path("/sys/fs/cgroup", usage).read_text())
        except (OSError, ValueError):
            continue
        if cap.isdigit() and int(cap) < 1 << 60:  # "max" or a huge number: no limit
            return max(0, int(cap) - used)
        return None
    return None
