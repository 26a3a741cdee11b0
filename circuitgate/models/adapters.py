"""The one place that knows module paths: an adapter per layout, one per transformers ``model_type``.

Every other module asks an adapter for "residual after layer i", "attention probabilities of layer i",
"MLP neurons of layer i" or "input of o_proj" and gets the nnsight envoy to read or edit. Inside one
trace these must be touched in execution order (docs/nnsight.md): within a layer, o_proj input ->
attention output -> gate_proj output -> down_proj input -> MLP output -> layer output.

Two layouts cover the supported families (docs/design.md, Model access):

- the Llama layout (``model.layers[i].self_attn.o_proj``, ``.mlp.gate_proj`` / ``.mlp.down_proj``):
  llama, qwen2, qwen3, mistral, gemma, gemma2, gemma3_text, olmo, olmo2, and phi3, whose MLP fuses gate
  and up into one ``gate_up_proj`` (the gate is the first half of its output);
- the GPT-2 layout (``transformer.h[i].attn.c_proj``, ``.mlp.c_fc`` / ``.mlp.c_proj``), whose ``Conv1D``
  weights are stored [in, out], transposed against ``nn.Linear``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from circuitgate import CircuitgateError


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Adapter:
    """Module paths of a decoder-only layout, relative to the loaded model (nnsight envoy or HF module)."""

    family: str  # the transformers model_type
    layers_path: str
    attention_path: str
    o_proj_path: str  # its input is the heads' outputs, concatenated
    mlp_path: str
    gate_path: str  # its output is the gate pre-activation (or holds it, see fused_gate)
    down_path: str  # its input is the MLP neurons
    fused_gate: bool = False  # gate_path's output is [gate | up]: the gate is its first half
    weight_input_axis: int = 1  # the axis of a layer weight that runs over its module's input

    def weight_name(self, i: int, module_path: str, param: str = "weight") -> str:
        """The state-dict key of a layer module's parameter (``self.down_path`` of layer 2 ->
        ``model.layers.2.mlp.down_proj.weight``): for editing a checkpoint without loading it."""
        return f"{self.layers_path}.{i}.{module_path}.{param}"

    def weight_inputs(self, inputs: slice) -> tuple[slice, ...]:
        """The index of a weight's entries that read the module inputs ``inputs``: columns of an
        ``nn.Linear`` weight [out, in], rows of a GPT-2 ``Conv1D`` weight [in, out]."""
        return (slice(None),) * self.weight_input_axis + (inputs,)

    def layers(self, model: Any) -> Any:
        """The decoder layers' ModuleList: a layer can be swapped for a stand-in."""
        return _get(model, self.layers_path)

    def layer(self, model: Any, i: int) -> Any:
        return self.layers(model)[i]

    def n_layers(self, model: Any) -> int:
        return len(self.layers(model))

    # Modules (HF modules, or nnsight envoys of them): torch hooks and traces both start here.
    def attention_module(self, model: Any, i: int) -> Any:
        return _get(self.layer(model, i), self.attention_path)

    def o_proj_module(self, model: Any, i: int) -> Any:
        return _get(self.layer(model, i), self.o_proj_path)

    def mlp_module(self, model: Any, i: int) -> Any:
        return _get(self.layer(model, i), self.mlp_path)

    def gate_module(self, model: Any, i: int) -> Any:
        """The module whose output holds the pre-activation the original method read (``gate_of``)."""
        return _get(self.layer(model, i), self.gate_path)

    def down_proj_module(self, model: Any, i: int) -> Any:
        """down_proj: its input is the MLP neurons (a pre-hook here reads or edits them)."""
        return _get(self.layer(model, i), self.down_path)

    def gate_of(self, output: Any) -> Any:
        """The gate pre-activation [B, T, F] in the output of ``gate_module``."""
        return output[..., :output.shape[-1] // 2] if self.fused_gate else output

    # Values inside an nnsight trace.
    def residual(self, model: Any, i: int) -> Any:
        """Output of decoder layer i, [B, T, D]: a plain tensor in transformers 5 in every supported
        family, not a tuple (measured, tests/unit/test_families.py)."""
        return self.layer(model, i).output

    def attention(self, model: Any, i: int) -> Any:
        """The attention module's output: ``(attn_out [B, T, D], attn_probs [B, H, T, T])``.

        ``attn_out`` is what the module adds to the residual stream, except in gemma2, gemma3_text and
        olmo2, where the layer norms it first (post_attention_layernorm): zeroing it still removes the
        block (the norm of 0 is 0), a mean is normed like any value. The probabilities exist only under
        eager attention and come after repeat_kv: one row per query head.
        """
        return self.attention_module(model, i).output

    def head_input(self, model: Any, i: int) -> Any:
        """Input of o_proj, [B, T, H * head_dim]: head h is the slice h*hd:(h+1)*hd."""
        return self.o_proj_module(model, i).input

    def gate_pre(self, model: Any, i: int) -> Any:
        """The gate pre-activation the original method read (docs/method.md), [B, T, F]; GPT-2 has no
        gate: there it is c_fc's output, the input of the activation."""
        return self.gate_of(self.gate_module(model, i).output)

    def neurons(self, model: Any, i: int) -> Any:
        """True neuron activations (act(gate) * up; act(c_fc) in GPT-2): the input of down_proj, [B, T, F]."""
        return self.down_proj_module(model, i).input

    def mlp_output(self, model: Any, i: int) -> Any:
        """The MLP's output; gemma2, gemma3_text and olmo2 norm it before the residual add
        (post_feedforward_layernorm), as ``attention`` says of the attention output."""
        return self.mlp_module(model, i).output

    def logits(self, model: Any) -> Any:
        """The model's output logits: after lm_head, gemma2 (and gemma3_text when configured) soft-cap
        them, so lm_head's own output is not what the model predicts."""
        return model.output.logits


_LLAMA = Adapter(
    family="llama", layers_path="model.layers", attention_path="self_attn", o_proj_path="self_attn.o_proj",
    mlp_path="mlp", gate_path="mlp.gate_proj", down_path="mlp.down_proj",
)
_GPT2 = Adapter(
    family="gpt2", layers_path="transformer.h", attention_path="attn", o_proj_path="attn.c_proj", mlp_path="mlp",
    gate_path="mlp.c_fc", down_path="mlp.c_proj", weight_input_axis=0,
)

FAMILIES: dict[str, Adapter] = {
    **{t: replace(_LLAMA, family=t)
       for t in ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text", "olmo", "olmo2")},
    "phi3": replace(_LLAMA, family="phi3", gate_path="mlp.gate_up_proj", fused_gate=True),
    "gpt2": _GPT2,
}


def adapter_for(model_type: str) -> Adapter:
    try:
        return FAMILIES[model_type]
    except KeyError:
        raise CircuitgateError(
            f"unsupported architecture {model_type!r}; supported model types: {', '.join(sorted(FAMILIES))}"
        ) from None


def _config_value(cfg: Any, *names: str) -> Any:
    """The first of ``names`` the config sets (GPT-2's configs name the same sizes differently)."""
    return next((v for v in (getattr(cfg, n, None) for n in names) if v is not None), None)


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
        heads = _config_value(cfg, "num_attention_heads", "n_head")
        hidden = _config_value(cfg, "hidden_size", "n_embd")
        return cls(
            n_layers=_config_value(cfg, "num_hidden_layers", "n_layer"),
            n_heads=heads,
            n_kv_heads=getattr(cfg, "num_key_value_heads", None) or heads,
            # Explicit where the family sets it (gemma: 256 at a hidden size of 3072 and 16 heads).
            head_dim=getattr(cfg, "head_dim", None) or hidden // heads,
            hidden=hidden,
            # GPT-2's n_inner None means 4 * n_embd.
            ffn=_config_value(cfg, "intermediate_size", "n_inner") or 4 * hidden,
        )
