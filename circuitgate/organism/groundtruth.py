"""Ground truth by exhaustive zero-ablation, with plain torch hooks on the HF model.

This is deliberately independent of nnsight and of circuitgate's intervention code: it is the
reference those are checked against. Whatever the ablations show is the ground truth.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from circuitgate.models.adapters import adapter_for
from circuitgate.organism.train import Item, correct

TAU = 0.1  # an absolute accuracy drop at or above this counts as "hurts the skill"

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


def classify(recall_drop: float, reasoning_drop: float, tau: float = TAU) -> str:
    # The epsilon keeps a drop of exactly tau (e.g. 1.0 - 0.9 in floats) on the "hurts" side.
    hurts_recall, hurts_reasoning = recall_drop >= tau - 1e-9, reasoning_drop >= tau - 1e-9
    if hurts_recall and hurts_reasoning:
        return "mixed"
    if hurts_recall:
        return "recall"
    if hurts_reasoning:
        return "reasoning"
    return "none"


def _accuracy(model, tokenizer, items: Sequence[Item]) -> float:
    return correct(model, tokenizer, items).float().mean().item()


def measure(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, recall: Sequence[Item], reasoning: Sequence[Item]
) -> dict:
    """The ``ground_truth`` section of organism.json, on the given recall and reasoning items."""
    torch.set_num_threads(1)
    clean = {"recall": _accuracy(model, tokenizer, recall), "reasoning": _accuracy(model, tokenizer, reasoning)}
    rows = {}
    for target, hook in targets(model).items():
        with ablated(model, hook):
            acc_recall, acc_reasoning = _accuracy(model, tokenizer, recall), _accuracy(model, tokenizer, reasoning)
        recall_drop, reasoning_drop = clean["recall"] - acc_recall, clean["reasoning"] - acc_reasoning
        rows[target] = {
            "recall": acc_recall,
            "reasoning": acc_reasoning,
            "recall_drop": recall_drop,
            "reasoning_drop": reasoning_drop,
            "class": classify(recall_drop, reasoning_drop),
        }
    return {"ablation": "zero", "tau": TAU, "clean": clean, "targets": rows}
