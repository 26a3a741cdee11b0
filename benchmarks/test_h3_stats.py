"""H3's statistics at the paper's scale: Qwen2.5-7B has 28 layers x 18,944 MLP neurons =
530,432 neurons; the original method tests all of them on 30 recall + 30 reasoning prompts.

Synthetic gate pre-activations of that shape go through ``analyse_h3`` (moments, the rank test of
every neuron, Bonferroni, ranking, the top-50 sign check). Goal: <= 3 s on the 2-core CI CPU, <= 0.5 s
on a GPU. Peak memory is recorded in ``extra_info`` (resident set on the CPU, allocator peak on a GPU).

    python -m pytest benchmarks --benchmark-columns=min,mean,max
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from circuitgate.activations import Activations
from circuitgate.config import H3Config
from circuitgate.methods.original import analyse_h3

N_PAIRS, N_LAYERS, N_NEURONS = 30, 28, 18_944  # Qwen2.5-7B (docs/method.md)


def _side(rng: np.random.Generator, shift: float) -> Activations:
    gate = rng.standard_normal((N_PAIRS, N_LAYERS, N_NEURONS), dtype=np.float32)
    gate[:, 4, :2_000] += shift  # some task-specific neurons, so ranking and sign check have work
    tiny = np.zeros((N_PAIRS, N_LAYERS, 1), np.float32)
    return Activations(tiny, np.ones((N_PAIRS, N_LAYERS, 1, 1), np.float32), np.ones(N_PAIRS, int), tiny, gate)


@pytest.fixture(scope="module")
def sides() -> tuple[Activations, Activations]:
    rng = np.random.default_rng(0)
    return _side(rng, 0.0), _side(rng, 3.0)


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    raise RuntimeError(field)


def _peak_cpu_mib(fn) -> float:
    """Peak resident memory added by ``fn``: writing 5 to clear_refs resets the high-water mark."""
    Path("/proc/self/clear_refs").write_text("5")
    before = _rss_kib("VmRSS:")
    fn()
    return (_rss_kib("VmHWM:") - before) / 1024


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU on this machine"))])
def test_h3_statistics_7b_scale(benchmark, sides, device):
    recall, reasoning = sides
    cfg = H3Config()

    def run():
        result = analyse_h3(recall, reasoning, cfg, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    result = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert result.summary["n_neurons"] == N_LAYERS * N_NEURONS
    assert result.summary["most_specialised_layer"]["layer"] == 4
    benchmark.extra_info["shape"] = f"{2 * N_PAIRS} prompts x {N_LAYERS * N_NEURONS} neurons"
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        run()
        benchmark.extra_info["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        benchmark.extra_info["peak_rss_mib"] = round(_peak_cpu_mib(run), 1)
