"""Ground truth by exhaustive zero-ablation, with plain torch hooks on the HF model.

This is deliberately independent of nnsight and of circuitgate's intervention code: it is the
reference those are checked against. Whatever the ablations show is the ground truth.

What is stored is the measurement itself: for every target, which probe items stay correct (one
bit per item, item i of each task being fact i, so drops pair up). Classes come from those bits by
H5's rule (``circuitgate.causal.classify_targets``: a drop of at least tau hurts a skill; a target is
specific to one skill only when the paired task x target interaction's bootstrap interval excludes
zero), so the organism's truth and H5's verdicts are judged by one rule, measured by two codes.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from circuitgate.causal import classify_targets
from circuitgate.config import H5Config
from circuitgate.models.adapters import adapter_for
from circuitgate.organism.train import Item, correct

# The classification rule's defaults are H5's (one source): tau = 0.1 accuracy drop, 95% intervals.
RULE = H5Config()

Hook = Callable[[PreTrainedModel], list[torch.utils.hooks.RemovableHandle]]


def _zero_output(module, args, output):
    # self_attn returns (attn_output, attn_weights); the MLP returns a tensor.
    if isinstance(output, tuple):
        return (torch.zeros_like(output[0]), *output[1:])
    return torch.zeros_like(output)


def _adapter(model: PreTrainedModel):
    # Module paths come from the one place that knows them (circuitgate.models.adapters).
    return adapter_for(model.config.model_type)


def _attn(layer: int) -> Hook:
    return lambda m: [_adapter(m).attention_module(m, layer).register_forward_hook(_zero_output)]


def _mlp(layer: int) -> Hook:
    return lambda m: [_adapter(m).mlp_module(m, layer).register_forward_hook(_zero_output)]


def _mlp_all() -> Hook:
    def hook(m: PreTrainedModel) -> list[torch.utils.hooks.RemovableHandle]:
        ad = _adapter(m)
        return [ad.mlp_module(m, i).register_forward_hook(_zero_output) for i in range(ad.n_layers(m))]

    return hook


def _head(layer: int, head: int, n_heads: int) -> Hook:
    # o_proj's input is the heads' outputs concatenated: head h is the slice [h*hd:(h+1)*hd].
    def pre(module, args):
        x = args[0].clone()
        hd = x.shape[-1] // n_heads
        x[..., head * hd : (head + 1) * hd] = 0
        return (x, *args[1:])

    return lambda m: [_adapter(m).o_proj_module(m, layer).register_forward_pre_hook(pre)]


def targets(model: PreTrainedModel) -> dict[str, Hook]:
    """Every ablation target, by id: attn-L0.., mlp-L0.., head-L0H0.., mlp-all."""
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    out: dict[str, Hook] = {}
    out.update({f"attn-L{l}": _attn(l) for l in range(n_layers)})
    out.update({f"mlp-L{l}": _mlp(l) for l in range(n_layers)})
    out.update({f"head-L{l}H{h}": _head(l, h, n_heads) for l in range(n_layers) for h in range(n_heads)})
    out["mlp-all"] = _mlp_all()
    return out


@contextmanager
def ablated(model: PreTrainedModel, hook: Hook) -> Iterator[None]:
    handles = hook(model)
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def bits(correct_items: torch.Tensor) -> str:
    """Per-item correctness as a compact string of 0/1 (one character per probe item)."""
    return "".join("1" if c else "0" for c in correct_items.tolist())


def _unbits(text: str) -> np.ndarray:
    return np.array([c == "1" for c in text], dtype=float)


def pair_drops(truth: Mapping[str, Any], ids: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(target ids, recall drops [P, T], reasoning drops [P, T]): per pair, clean minus ablated correctness."""
    ids = list(truth["targets"]) if ids is None else list(ids)
    clean_r, clean_s = (_unbits(truth["clean_correct"][side]) for side in ("recall", "reasoning"))
    rows = [truth["targets"][t] for t in ids]
    recall = np.stack([clean_r - _unbits(row["recall_correct"]) for row in rows], axis=1)
    reasoning = np.stack([clean_s - _unbits(row["reasoning_correct"]) for row in rows], axis=1)
    return ids, recall, reasoning


def classes(truth: Mapping[str, Any], rule: H5Config = RULE, ids: Sequence[str] | None = None) -> dict[str, str]:
    """Target id -> class by H5's rule with ``rule``'s tau, level, resamples and seed."""
    ids, recall, reasoning = pair_drops(truth, ids)
    stats = classify_targets(recall, reasoning, tau=rule.min_drop, level=rule.level, n_boot=rule.n_boot, seed=rule.seed)
    return dict(zip(ids, (str(c) for c in stats.cls)))


def measure(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, recall: Sequence[Item], reasoning: Sequence[Item]
) -> dict:
    """The ``ground_truth`` section of organism.json, on the given recall and reasoning items (item i
    of each list is fact i: the pairs of the organism prompt set)."""
    torch.set_num_threads(1)
    clean_r, clean_s = correct(model, tokenizer, recall), correct(model, tokenizer, reasoning)
    rows = {}
    for target, hook in targets(model).items():
        with ablated(model, hook):
            abl_r, abl_s = correct(model, tokenizer, recall), correct(model, tokenizer, reasoning)
        rows[target] = {
            "recall": abl_r.float().mean().item(),
            "reasoning": abl_s.float().mean().item(),
            "recall_drop": (clean_r.float().mean() - abl_r.float().mean()).item(),
            "reasoning_drop": (clean_s.float().mean() - abl_s.float().mean()).item(),
            "recall_correct": bits(abl_r),
            "reasoning_correct": bits(abl_s),
        }
    truth = {
        "ablation": "zero",
        "metric": "accuracy",
        "rule": {"tau": RULE.min_drop, "level": RULE.level, "n_boot": RULE.n_boot, "seed": RULE.seed},
        "clean": {"recall": clean_r.float().mean().item(), "reasoning": clean_s.float().mean().item()},
        "clean_correct": {"recall": bits(clean_r), "reasoning": bits(clean_s)},
        "targets": rows,
    }
    for target, cls in classes(truth).items():
        rows[target]["class"] = cls
    return truth
