"""The one place that knows module paths: an adapter per architecture family.

Every other module asks an adapter for "residual after layer i", "attention probabilities of layer i",
"MLP neurons of layer i" or "input of o_proj" and gets the nnsight envoy to read or edit. Inside one
trace these must be touched in execution order (docs/nnsight.md): within a layer, o_proj input ->
attention output -> gate_proj output -> down_proj input -> MLP output -> layer output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from circuitgate import CircuitgateError


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Adapter:
    """Module paths of a decoder-only family, relative to the loaded model (nnsight envoy or HF module).

    Defaults are the Llama layout, which Qwen2 shares; a family with other names overrides fields.
    """

    family: str
    layers_path: str = "model.layers"
    attention_path: str = "self_attn"
    o_proj_path: str = "self_attn.o_proj"
    mlp_path: str = "mlp"
    gate_path: str = "mlp.gate_proj"
    down_path: str = "mlp.down_proj"
    lm_head_path: str = "lm_head"

    def weight_name(self, i: int, module_path: str) -> str:
        """The state-dict key of a layer module's weight (``self.down_path`` of layer 2 ->
        ``model.layers.2.mlp.down_proj.weight``): for editing a checkpoint without loading it."""
        return f"{self.layers_path}.{i}.{module_path}.weight"

    def layer(self, model: Any, i: int) -> Any:
        return _get(model, self.layers_path)[i]

    def n_layers(self, model: Any) -> int:
        return len(_get(model, self.layers_path))

    # Modules (HF modules, or nnsight envoys of them): torch hooks and traces both start here.
    def attention_module(self, model: Any, i: int) -> Any:
        return _get(self.layer(model, i), self.attention_path)

    def o_proj_module(self, model: Any, i: int) -> Any:
        return _get(self.layer(model, i), self.o_proj_path)

    def mlp_module(self, model: Any, i: int) -> Any:
        return _get(self.layer(model, i), self.mlp_path)

    def gate_module(self, model: Any, i: int) -> Any:
        """gate_proj: its output is the pre-activation the original method read."""
        return _get(self.layer(model, i), self.gate_path)

    def down_proj_module(self, model: Any, i: int) -> Any:
        """down_proj: its input is the MLP neurons (a pre-hook here reads or edits them)."""
        return _get(self.layer(model, i), self.down_path)

    # Values inside an nnsight trace.
    def residual(self, model: Any, i: int) -> Any:
        """Output of decoder layer i, [B, T, D] (a plain tensor in transformers 5, not a tuple)."""
        return self.layer(model, i).output

    def attention(self, model: Any, i: int) -> Any:
        """The attention module's output: ``(attn_out [B, T, D], attn_probs [B, H, T, T])``.

        The probabilities exist only under eager attention and come after repeat_kv: one row per
        query head.
        """
        return self.attention_module(model, i).output

    def head_input(self, model: Any, i: int) -> Any:
        """Input of o_proj, [B, T, H * head_dim]: head h is the slice h*hd:(h+1)*hd."""
        return self.o_proj_module(model, i).input

    def gate_pre(self, model: Any, i: int) -> Any:
        """gate_proj output before the activation: what the original method read (docs/method.md)."""
        return _get(self.layer(model, i), self.gate_path).output

    def neurons(self, model: Any, i: int) -> Any:
        """True neuron activations act(gate) * up: the input of down_proj, [B, T, F]."""
        return _get(self.layer(model, i), self.down_path).input

    def mlp_output(self, model: Any, i: int) -> Any:
        return self.mlp_module(model, i).output

    def logits(self, model: Any) -> Any:
        return _get(model, self.lm_head_path).output


FAMILIES: dict[str, Adapter] = {
    "qwen2": Adapter("qwen2"),
    "llama": Adapter("llama"),
}


def adapter_for(model_type: str) -> Adapter:
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise CircuitgateError(
            f"unsupported architecture {model_type!r}; supported families: {', '.join(FAMILIES)}"
        ) from None


@dataclass(frozen=True)
class Shape:
    """What the analyses need to know of an architecture, read from its HF config."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    hidden: int
    ffn: int

    @classmethod
    def from_config(cls, cfg: Any) -> "Shape":
        heads = cfg.num_attention_heads
        return cls(
            n_layers=cfg.num_hidden_layers,
            n_heads=heads,
            n_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
            head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
            hidden=cfg.hidden_size,
            ffn=cfg.intermediate_size,
        )
