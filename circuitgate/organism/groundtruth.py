"""The organism's ground truth, measured when it is built: causal by exhaustive ablation, and the
activation differences of its planted units.

Causal truth: every attention and MLP sublayer, every head and every neuron block is ablated in turn
-- zeroed, mean-ablated (the mean over the real positions of all pair prompts of both tasks, as H5's
mean ablation) and resampled (another prompt of the same task: the next pair's) -- with plain torch
hooks (``circuitgate.organism.ablate``), independent of nnsight and of circuitgate's intervention
code: it is the reference those are checked against. What is stored is the measurement itself: for
every ablation and target, which items stay correct (one bit per item, item i of each task being pair
i, so drops pair up). Classes come from those bits by H5's rule (``causal.classify_targets``: a drop
of at least tau hurts a skill; a target is specific to one skill only when the paired task x target
interaction's bootstrap interval excludes zero), so the organism's truth and H5's verdicts are judged
by one rule, measured by two codes.

Activation truth: for each unit the plan builds to differ between the tasks (``Plan.activation``),
the features H1-H3 read (``circuitgate.features``, oriented as the paired method orients them), per
pair, reasoning minus recall; a feature votes for a class when its paired effect size |d_z| reaches
the paired method's ``d_min``. The unit's measured class is what its votes combine to.

``check`` compares both with the plan and says what differs, as a table: the build refuses an
organism whose truth is not its plan.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from circuitgate.activations import Activations
from circuitgate.causal import classify_targets
from circuitgate.config import H5Config, PairedConfig
from circuitgate.features import h1_layer_features, h2_head_metrics
from circuitgate.ids import attn_target, parse_component
from circuitgate.models.adapters import Shape, adapter_for
from circuitgate.organism.ablate import Component, RowEdit, ablating, components, recording
from circuitgate.organism.plan import Plan
from circuitgate.organism.train import ItemPair, encode
from circuitgate.results import combine_classes
from circuitgate.stats import d_z
from circuitgate.vocabulary import ABLATIONS, SKILLS

# The classification rule's defaults are H5's (one source): tau = 0.1 accuracy drop, 95% intervals.
RULE = H5Config()
# A feature votes when its paired effect size reaches the paired method's d_min (one source too).
VOTE = PairedConfig().d_min
# Reasoning must need attention in at least this many layers (no one-layer shortcut).
MIN_ATTENTION_LAYERS = 2


def bits(correct_items: torch.Tensor) -> str:
    """Per-item correctness as a compact string of 0/1 (one character per probe item)."""
    return "".join("1" if c else "0" for c in correct_items.tolist())


def _unbits(text: str) -> np.ndarray:
    return np.array([c == "1" for c in text], dtype=float)


def targets_of(shape: Shape, block_size: int, block_layers: Sequence[int]) -> list[Component]:
    return components(shape.n_layers, shape.n_heads, shape.head_dim, block_size, block_layers, shape.ffn)


# -- causal ---------------------------------------------------------------------------------------
class _Replay(torch.nn.Module):
    """A decoder layer below the ablated one: it returns its output in the clean run of the same batch
    instead of computing it again (an ablation changes nothing below its layer, so that output is the
    very tensor the layer would compute)."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.output


@contextmanager
def _replaying(model: PreTrainedModel, outputs: Sequence[torch.Tensor]) -> Iterator[None]:
    """The first ``len(outputs)`` decoder layers replaced by ``_Replay`` of their clean outputs: a
    target's ablation computes only its own layer and those above, with the same numbers (12 organisms'
    and damaged copies' truths: identical, 80 s -> 52 s)."""
    layers = adapter_for(model.config.model_type).layers(model)
    originals = [layers[i] for i in range(len(outputs))]
    for i, output in enumerate(outputs):
        layers[i] = _Replay(output)
    try:
        yield
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer


@torch.no_grad()
def _correct(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, items: Sequence[ItemPair], n_recall: int,
             component: Component | None = None, kind: str = "zero") -> torch.Tensor:
    """Per item, correct or not, with ``component`` ablated in every row by ``kind``. All items run in
    one batch: a mean is over every item's real positions (both tasks), a resample reads the next item
    of the same task (cyclically)."""
    enc = encode(tokenizer, [p for p, _ in items])
    real = enc["attention_mask"].bool()
    n = len(items)
    recall_idx, reasoning_idx = torch.arange(n_recall), torch.arange(n_recall, n)
    donor = torch.cat([recall_idx.roll(-1), reasoning_idx.roll(-1)])
    edits = [] if component is None else [RowEdit(component, torch.ones(n, dtype=torch.bool), kind)]
    with ablating(model, edits, real, donor=donor):
        logits = model(**enc, logits_to_keep=1).logits[:, -1]
    answers = torch.tensor(tokenizer.convert_tokens_to_ids([a for _, a in items]))
    return logits.argmax(-1) == answers


def measure_causal(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, recall: Sequence[ItemPair],
                   reasoning: Sequence[ItemPair], targets: Sequence[Component]) -> dict:
    """The ``ground_truth`` section of organism.json, on the given items (item i of each list is pair i)."""
    torch.set_num_threads(1)
    model.eval()
    items, n = [*recall, *reasoning], len(recall)
    layers = range(adapter_for(model.config.model_type).n_layers(model))
    with recording(model, [], resid_layers=layers) as store:
        clean = _correct(model, tokenizer, items, n)
    outputs = [store[f"resid{layer}"] for layer in layers]
    clean_r, clean_s = clean[:n], clean[n:]
    ablations: dict[str, dict[str, dict]] = {}
    for kind in ABLATIONS:
        rows = {}
        for target in targets:
            with _replaying(model, outputs[:target.layer]):
                abl = _correct(model, tokenizer, items, n, target, kind)
            abl_r, abl_s = abl[:n], abl[n:]
            rows[target.id] = {
                "recall": abl_r.float().mean().item(),
                "reasoning": abl_s.float().mean().item(),
                "recall_drop": (clean_r.float().mean() - abl_r.float().mean()).item(),
                "reasoning_drop": (clean_s.float().mean() - abl_s.float().mean()).item(),
                "recall_correct": bits(abl_r),
                "reasoning_correct": bits(abl_s),
            }
        ablations[kind] = rows
    truth = {
        "metric": "accuracy",
        "rule": {"tau": RULE.min_drop, "level": RULE.level, "n_boot": RULE.n_boot, "seed": RULE.seed},
        "clean": {"recall": clean_r.float().mean().item(), "reasoning": clean_s.float().mean().item()},
        "clean_correct": {"recall": bits(clean_r), "reasoning": bits(clean_s)},
        "targets": [t.id for t in targets],
        "ablations": ablations,
    }
    for kind in ABLATIONS:
        for target, cls in classes(truth, ablation=kind).items():
            ablations[kind][target]["class"] = cls
    return truth


def pair_drops(truth: Mapping[str, Any], ids: Sequence[str] | None = None,
               ablation: str = "zero") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(target ids, recall drops [P, T], reasoning drops [P, T]): per pair, clean minus ablated correctness."""
    ids = list(truth["targets"]) if ids is None else list(ids)
    clean_r, clean_s = (_unbits(truth["clean_correct"][side]) for side in SKILLS)
    rows = [truth["ablations"][ablation][t] for t in ids]
    recall = np.stack([clean_r - _unbits(row["recall_correct"]) for row in rows], axis=1)
    reasoning = np.stack([clean_s - _unbits(row["reasoning_correct"]) for row in rows], axis=1)
    return ids, recall, reasoning


def classes(truth: Mapping[str, Any], rule: H5Config = RULE, ids: Sequence[str] | None = None,
            ablation: str = "zero") -> dict[str, str]:
    """Target id -> class by H5's rule with ``rule``'s tau, level, resamples and seed."""
    ids, recall, reasoning = pair_drops(truth, ids, ablation)
    stats = classify_targets(recall, reasoning, tau=rule.min_drop, level=rule.level, n_boot=rule.n_boot, seed=rule.seed,
                             alpha=rule.alpha, correction=rule.correction)
    return dict(zip(ids, (str(c) for c in stats.cls)))


def attention_layers(truth: Mapping[str, Any], n_layers: int, ablation: str = "zero") -> list[int]:
    """The layers whose attention, ablated, costs reasoning at least tau: where reasoning needs attention."""
    rows = truth["ablations"][ablation]
    return [layer for layer in range(n_layers) if rows[attn_target(layer)]["reasoning_drop"] >= RULE.min_drop - 1e-9]


# -- activation -----------------------------------------------------------------------------------
@torch.no_grad()
def activations(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> Activations:
    """Last-token activations as circuitgate's extraction reads them, from a plain HF forward."""
    enc = encode(tokenizer, prompts)
    n_layers = model.config.num_hidden_layers
    with recording(model, range(n_layers), resid_layers=range(n_layers)) as store:
        out = model(**enc, output_attentions=True)
    lengths = enc["attention_mask"].sum(-1)
    return Activations(
        resid=torch.stack([store[f"resid{l}"][:, -1] for l in range(n_layers)], 1).double().numpy(),
        attn=torch.stack([a[:, :, -1] for a in out.attentions], 1).double().numpy(),
        lengths=lengths.numpy(),
        neurons=torch.stack([store[f"act{l}"][:, -1] for l in range(n_layers)], 1).double().numpy(),
        gate=torch.stack([store[f"gate{l}"][:, -1] for l in range(n_layers)], 1).double().numpy(),
    )


def _votes(dz: Mapping[str, float]) -> str:
    """A unit's class from its features' oriented paired effect sizes: reasoning when the features that
    reach ``VOTE`` are all larger on reasoning, recall when all on recall, mixed when both."""
    kinds = ["reasoning" if v > 0 else "recall" for v in dz.values() if abs(v) >= VOTE]
    return combine_classes(kinds)


def _oriented_dz(recall: Mapping[str, np.ndarray], reasoning: Mapping[str, np.ndarray],
                 orientation: Mapping[str, float]) -> dict[str, np.ndarray]:
    return {f: d_z(np.nan_to_num((reasoning[f] - recall[f]) * sign, nan=0.0)) for f, sign in orientation.items()}


def measure_activation(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, recall: Sequence[ItemPair],
                       reasoning: Sequence[ItemPair], plan: Plan, block_size: int) -> dict:
    """Per planted activation unit: each feature's oriented paired d_z and the class they vote for."""
    from circuitgate.methods.paired import H1_ORIENTATION, H2_ORIENTATION

    a_r = activations(model, tokenizer, [p for p, _ in recall])
    a_s = activations(model, tokenizer, [p for p, _ in reasoning])
    out: dict[str, dict] = {}
    if "H1" in plan.activation:
        dz = _oriented_dz(h1_layer_features(a_r), h1_layer_features(a_s), H1_ORIENTATION)
        out["H1"] = {lid: {"features": {f: float(v[parse_component(lid).layer]) for f, v in dz.items()}}
                     for lid in plan.activation["H1"]}
    if "H2" in plan.activation:
        dz = _oriented_dz(h2_head_metrics(a_r), h2_head_metrics(a_s), H2_ORIENTATION)
        heads = {hid: parse_component(hid) for hid in plan.activation["H2"]}
        out["H2"] = {hid: {"features": {f: float(v[h.layer, h.head]) for f, v in dz.items()}}
                     for hid, h in heads.items()}
    if "H3" in plan.activation:
        neuron_dz = d_z(a_s.neurons - a_r.neurons)  # [L, F]: larger on reasoning is "reasoning"
        out["H3"] = {}
        for lid in plan.activation["H3"]:
            layer = parse_component(lid).layer
            row = neuron_dz[layer]
            blocks = [b for b in plan.blocks if b.layer == layer]
            planted = np.concatenate([np.arange(b.index * block_size, (b.index + 1) * block_size) for b in blocks])
            out["H3"][lid] = {"n_recall": int((row <= -VOTE).sum()), "n_reasoning": int((row >= VOTE).sum()),
                              "n_neurons": int(row.size), "planted": int(planted.size),
                              "planted_in_direction": int(((row[planted] >= VOTE) if plan.activation["H3"][lid]
                                                           == "reasoning" else (row[planted] <= -VOTE)).sum())}
    for h, units in out.items():
        for uid, entry in units.items():
            if h == "H3":
                n_r, n_s = entry["n_recall"], entry["n_reasoning"]
                entry["class"] = "reasoning" if n_s > n_r else "recall" if n_r > n_s else "none"
            else:
                entry["class"] = _votes(entry["features"])
    return out


# -- the plan, measured -----------------------------------------------------------------------------
def check(truth: Mapping[str, Any], activation: Mapping[str, Any], plan: Plan,
          planned: Mapping[str, str], n_layers: int) -> list[str]:
    """Where the measured truth differs from the plan, one line each (empty: the organism is its plan)."""
    problems = []
    for kind in ABLATIONS:
        rows = truth["ablations"][kind]
        for target, want in planned.items():
            got = rows[target]["class"]
            if got != want:
                problems.append(f"{kind:<8} {target:<16} planned {want:<9} measured {got:<9} "
                                f"(drops recall {rows[target]['recall_drop']:+.2f}, "
                                f"reasoning {rows[target]['reasoning_drop']:+.2f})")
    for h, units in plan.activation.items():
        for uid, want in units.items():
            got = activation[h][uid]["class"]
            if got != want:
                problems.append(f"activation {h} {uid:<8} planned {want:<9} measured {got:<9} "
                                f"({_describe(activation[h][uid])})")
    layers = attention_layers(truth, n_layers)
    if len(layers) < MIN_ATTENTION_LAYERS:
        problems.append(f"reasoning needs attention in {len(layers)} layer(s) ({layers}), "
                        f"at least {MIN_ATTENTION_LAYERS} are required (a shortcut)")
    return problems


def _describe(entry: Mapping[str, Any]) -> str:
    if "features" in entry:
        return ", ".join(f"{f} {v:+.2f}" for f, v in entry["features"].items())
    return ", ".join(f"{k} {v}" for k, v in entry.items() if k != "class")
