"""A deliberately broken checkpoint: a model directory copied with components zeroed in its weights.

A release gate is only trusted once it has been seen to fail: zeroing a planted component of the
organism changes its circuitry in a known place, and ``--baseline`` / ``circuitgate compare`` must name
it. The copy is a plain local model: it carries no organism.json, whose ground truth the edit
invalidates (``circuitgate organism accuracy`` measures a copy's truth anew).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from circuitgate import CircuitgateError
from circuitgate.ids import TargetId, parse_target
from circuitgate.models.adapters import Shape, adapter_for

NOTE_FILE = "perturbed.json"  # what was zeroed, from which weights


def parse_targets(targets: Sequence[str]) -> list[TargetId]:
    """The targets' spelling, checked before anything is built or loaded: a layer's attention or MLP,
    a head, a neuron block or one neuron (H3's neuron sets are a run's, not the weights')."""
    parsed = []
    for t in targets:
        try:
            target = parse_target(t)
        except CircuitgateError:
            target = None
        if target is None or target.skill is not None:
            raise CircuitgateError(f"cannot zero {t!r}: targets are mlp-L<i>, attn-L<i>, head-L<i>H<h>, "
                                   f"neurons-L<i>-B<k> or neuron-L<i>N<j>")
        parsed.append(target)
    return parsed


def _edits(targets: Sequence[str], model_type: str, shape: Shape,
           block_size: int | None) -> list[tuple[str, tuple[slice, ...] | None, bool]]:
    """(parameter name, index of the entries to zero or None for all, whether the checkpoint must have
    it) per target, validated against the shape. ``block_size``: neurons per block (from the source
    organism's plan; None: no blocks known).

    A module zeroed whole loses its bias too, if it has one (GPT-2's c_proj): it then writes exactly 0,
    as a zero ablation of its output does. Zeroing some inputs of a module leaves its bias, as a zero
    ablation of those inputs does."""
    adapter = adapter_for(model_type)
    edits: list[tuple[str, tuple[slice, ...] | None, bool]] = []

    def whole(layer: int, path: str) -> None:
        edits.append((adapter.weight_name(layer, path), None, True))
        edits.append((adapter.weight_name(layer, path, "bias"), None, False))

    for t, target in zip(targets, parse_targets(targets)):
        layer = target.layer
        if layer >= shape.n_layers:
            raise CircuitgateError(f"cannot zero {t}: the model has {shape.n_layers} layers")
        if target.kind == "neuron":  # one neuron writes through its down_proj input
            if target.neuron >= shape.ffn:
                raise CircuitgateError(f"cannot zero {t}: layer {layer} has {shape.ffn} neurons")
            edits.append((adapter.weight_name(layer, adapter.down_path),
                          adapter.weight_inputs(slice(target.neuron, target.neuron + 1)), True))
        elif target.kind == "neurons":  # a block's neurons write through their down_proj inputs
            if block_size is None:
                raise CircuitgateError(f"cannot zero {t}: the source is not an organism, it has no neuron blocks")
            block = target.block
            if (block + 1) * block_size > shape.ffn:
                raise CircuitgateError(f"cannot zero {t}: layer {layer} has {shape.ffn // block_size} blocks")
            edits.append((adapter.weight_name(layer, adapter.down_path),
                          adapter.weight_inputs(slice(block * block_size, (block + 1) * block_size)), True))
        elif target.kind == "mlp":  # down_proj writes the MLP's whole output
            whole(layer, adapter.down_path)
        elif target.kind == "attn":  # o_proj writes the attention block's whole output
            whole(layer, adapter.o_proj_path)
        else:
            head = target.head
            if head >= shape.n_heads:
                raise CircuitgateError(f"cannot zero {t}: layer {layer} has {shape.n_heads} heads")
            cols = slice(head * shape.head_dim, (head + 1) * shape.head_dim)  # the head's o_proj input slice
            edits.append((adapter.weight_name(layer, adapter.o_proj_path), adapter.weight_inputs(cols), True))
    return edits


def perturb(source: Path, out: Path, zero: Sequence[str], force: bool = False, progress: bool = True) -> Path:
    """Copy the model directory ``source`` to ``out`` with the ``zero`` targets' weights set to 0."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoConfig

    from circuitgate.models.loading import weights_sha256

    out = Path(out)
    if out.exists() and not force:
        raise CircuitgateError(f"{out} exists; pass --force to replace it")
    files = sorted(source.glob("*.safetensors"))
    if not files:
        raise CircuitgateError(f"no *.safetensors weights in {source}")
    config = AutoConfig.from_pretrained(source)
    from circuitgate.truth import is_organism_dir, read_info

    block_size = read_info(source)["plan"]["block_size"] if is_organism_dir(source) else None
    edits = _edits(zero, config.model_type, Shape.from_config(config), block_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: an interrupted run leaves no half-edited model.
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        for f in source.iterdir():
            if f.is_file() and f.suffix != ".safetensors" and f.name != "organism.json":
                shutil.copy2(f, tmp / f.name)
        done = set()
        for f in files:
            tensors = load_file(f)
            for name, index, _ in edits:
                if name in tensors:
                    w = tensors[name]
                    if index is None:
                        tensors[name] = torch.zeros_like(w)
                    else:
                        w = w.clone()
                        w[index] = 0
                        tensors[name] = w
                    done.add(name)
            save_file(tensors, tmp / f.name, metadata={"format": "pt"})
        missing = sorted({n for n, _, required in edits if required} - done)
        if missing:
            raise CircuitgateError(f"{source} has no weights named {', '.join(missing)}")
        (tmp / NOTE_FILE).write_text(json.dumps(
            {"source": str(source), "source_sha256": weights_sha256(source, progress), "zeroed": list(zero)},
            indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
