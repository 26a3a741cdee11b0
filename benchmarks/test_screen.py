"""The attribution screen and the exact confirmation against plain HF passes, measured in one run.

A random Qwen2 of a small real-model shape (8 layers, hidden 256, 1024 MLP neurons per layer) on the
CPU; one batch of 16 prompts of 20 words. Goals (docs/design.md, "H5 at scale"): plain attribution
patching within 1.5x one plain forward and backward; one exactly confirmed target within about one
forward of the batch (its copy of the batch). Ratios are in ``benchmark.extra_info``.

    python -m pytest benchmarks/test_screen.py --benchmark-columns=min,mean,max
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from circuitgate.attribution import attribution_screen
from circuitgate.extract import left_pad, tokenize
from circuitgate.ids import head_target
from circuitgate.interventions import Target, ablation_sweep
from gpu_7b import prompts, random_model

SHAPE = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=8, num_attention_heads=8,
             num_key_value_heads=2, vocab_size=512)
B = 16


@pytest.fixture(scope="module")
def setting():
    loaded = random_model(SHAPE, "cpu", "float32")
    texts, answers = prompts(B, 20, seed=1)
    ids, mask = left_pad(tokenize(loaded, texts), 0)

    def forward() -> None:
        with torch.no_grad():
            loaded.hf(input_ids=ids, attention_mask=mask, logits_to_keep=1)

    def forward_backward() -> None:
        with torch.enable_grad():
            loaded.hf(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1].logsumexp(-1).sum().backward()
        loaded.hf.zero_grad(set_to_none=True)

    return loaded, texts, answers, forward, forward_backward


def _median(fn, repeat: int = 5) -> float:
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def test_screen_against_forward_backward(benchmark, setting):
    loaded, texts, answers, _, forward_backward = setting
    screen = benchmark(lambda: attribution_screen(loaded, texts, answers, steps=1, batch_size=B, progress=False))
    assert screen.neurons.shape == (B, SHAPE["num_hidden_layers"], SHAPE["intermediate_size"])
    if benchmark.disabled:  # --benchmark-disable: run once, no timings to compare
        return
    reference = _median(forward_backward)
    benchmark.extra_info.update(forward_backward_s=reference,
                                screen_per_forward_backward=benchmark.stats.stats.median / reference)


def test_confirmation_per_target_against_forward(benchmark, setting):
    loaded, texts, answers, forward, _ = setting
    targets = [Target(head_target(i, 0), "head", i, head=0) for i in range(SHAPE["num_hidden_layers"])]
    benchmark(lambda: ablation_sweep(loaded, texts, answers, targets, batch_size=B, progress=False))
    if benchmark.disabled:
        return
    clean = _median(lambda: ablation_sweep(loaded, texts, answers, [], batch_size=B, progress=False))
    reference = _median(forward)
    per_target = (benchmark.stats.stats.median - clean) / len(targets)
    benchmark.extra_info.update(forward_s=reference, per_target_s=per_target, per_target_per_forward=per_target / reference)
