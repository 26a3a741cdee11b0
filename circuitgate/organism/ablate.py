"""Per-row ablation of the organism's components with plain torch hooks, for training and for the
ground truth.

Deliberately independent of nnsight and of circuitgate's intervention code: the organism's truth is
the reference those are checked against. One forward pass can ablate a different set of components in
every row (training puts every condition in one batch); ``zero`` sets a component's activation to 0,
``mean`` to its mean over the real positions of the reference rows, ``resample`` to a donor row's
value at the same right-aligned position (the mean where the donor has no such position). Left
padding puts every prompt's last token at position -1, so positions align from the right.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from transformers import PreTrainedModel

from circuitgate.ids import attn_target, block_target, head_target, mlp_target
from circuitgate.models.adapters import adapter_for

# Where each kind of component lives: (module, hooked before or after it).
SITES = {"head": ("o_proj", "pre"), "neurons": ("down_proj", "pre"), "mlp": ("mlp", "post"), "attn": ("attn", "post")}


@dataclass(frozen=True)
class Component:
    """An ablation target: ``attn-L1``, ``mlp-L0``, ``head-L2H1``, ``neurons-L1-B0``."""

    id: str
    kind: str  # head | neurons | mlp | attn
    layer: int
    lo: int | None = None  # slice of the site's last dimension (None: all of it)
    hi: int | None = None

    @property
    def part(self) -> slice:
        return slice(self.lo, self.hi)


def components(n_layers: int, n_heads: int, head_dim: int, block_size: int, block_layers: Sequence[int],
               ffn: int) -> list[Component]:
    """Every target the ground truth measures, by layer: attention, MLP, heads, neuron blocks."""
    out: list[Component] = []
    for layer in range(n_layers):
        out.append(Component(attn_target(layer), "attn", layer))
        out.append(Component(mlp_target(layer), "mlp", layer))
        out += [Component(head_target(layer, h), "head", layer, h * head_dim, (h + 1) * head_dim) for h in range(n_heads)]
        if layer in block_layers:
            out += [Component(block_target(layer, k), "neurons", layer, k * block_size, (k + 1) * block_size)
                    for k in range(ffn // block_size)]
    return out


@dataclass
class RowEdit:
    """Ablate ``component`` in the rows where ``rows`` is true, the way ``kind`` says."""

    component: Component
    rows: torch.Tensor  # [B] bool
    kind: str


def _apply(x: torch.Tensor, edits: list[RowEdit], real: torch.Tensor, reference: torch.Tensor,
           donor: torch.Tensor | None) -> torch.Tensor:
    """x [B, T, F] with every edit applied (on a copy); the mean is over real positions of the
    reference rows of the unedited activation, and is not differentiated through."""
    if not any(bool(e.rows.any()) for e in edits):
        return x
    x = x.clone()
    clean = x.detach()
    weight = (real & reference[:, None]).to(x.dtype)[..., None]  # [B, T, 1]
    for e in edits:
        part = e.component.part
        rows = e.rows.to(x.device)
        if not bool(rows.any()):
            continue
        if e.kind == "zero":
            x[rows, :, part] = 0
            continue
        mean = (clean[..., part] * weight).sum((0, 1)) / weight.sum().clamp(min=1)
        if e.kind == "mean":
            x[rows, :, part] = mean
        else:
            assert donor is not None, "resample needs donors"
            src = clean[donor][..., part]
            ok = real[donor][..., None]
            x[rows, :, part] = torch.where(ok, src, mean)[rows]
    return x


@contextmanager
def ablating(model: PreTrainedModel, edits: Sequence[RowEdit], real: torch.Tensor, reference: torch.Tensor | None = None,
             donor: torch.Tensor | None = None) -> Iterator[None]:
    """Hooks that apply ``edits`` during the forward passes inside the block.

    real: [B, T] the rows' real positions; reference: [B] rows whose mean a mean ablation uses
    (default: all); donor: [B] the row each row's resample reads from (same task, never itself).
    """
    ad = adapter_for(model.config.model_type)
    reference = torch.ones(real.shape[0], dtype=torch.bool) if reference is None else reference
    by_site: dict[tuple[str, int], list[RowEdit]] = {}
    for e in edits:
        by_site.setdefault((e.component.kind, e.component.layer), []).append(e)
    modules = {
        "head": ad.o_proj_module, "neurons": ad.down_proj_module, "mlp": ad.mlp_module, "attn": ad.attention_module,
    }
    handles = []
    for (kind, layer), group in by_site.items():
        module = modules[kind](model, layer)
        if SITES[kind][1] == "pre":
            def pre(mod, args, group=group):
                return (_apply(args[0], group, real, reference, donor), *args[1:])

            handles.append(module.register_forward_pre_hook(pre))
        else:
            def post(mod, args, output, group=group):
                # self_attn returns (attn_output, attn_weights); the MLP returns a tensor
                if isinstance(output, tuple):
                    return (_apply(output[0], group, real, reference, donor), *output[1:])
                return _apply(output, group, real, reference, donor)

            handles.append(module.register_forward_hook(post))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def recording(model: PreTrainedModel, layers: Sequence[int], head_layers: Sequence[int] = (),
              resid_layers: Sequence[int] = ()) -> Iterator[dict[str, torch.Tensor]]:
    """Record the MLP gate pre-activations and neuron activations (``gate{l}``, ``act{l}``, [B, T, F]) of
    ``layers``, the heads' outputs (``heads{l}``, the o_proj input [B, T, H * head_dim]) of
    ``head_layers`` and the decoder layers' outputs (``resid{l}``, [B, T, D]) of ``resid_layers``, during
    the forward passes inside the block (before any ablation of them).

    A layer's output is read from the layer itself: transformers' ``hidden_states`` hands back the last
    layer's output after the final norm, not the residual circuitgate's extraction reads (measured: a
    residual-norm difference planted on the normed one came out reversed in the raw one)."""
    ad = adapter_for(model.config.model_type)
    store: dict[str, torch.Tensor] = {}
    handles = []
    for layer in resid_layers:
        handles.append(ad.layer(model, layer).register_forward_hook(
            lambda m, a, o, layer=layer: store.__setitem__(f"resid{layer}", o[0] if isinstance(o, tuple) else o)))
    for layer in head_layers:
        handles.append(ad.o_proj_module(model, layer).register_forward_pre_hook(
            lambda m, a, layer=layer: store.__setitem__(f"heads{layer}", a[0]), prepend=True))
    for layer in layers:
        handles.append(ad.gate_module(model, layer).register_forward_hook(
            lambda m, a, o, layer=layer: store.__setitem__(f"gate{layer}", ad.gate_of(o))))
        handles.append(ad.down_proj_module(model, layer).register_forward_pre_hook(
            lambda m, a, layer=layer: store.__setitem__(f"act{layer}", a[0]), prepend=True))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()
