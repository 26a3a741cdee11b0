"""`circuitgate organism perturb`: a copy of a model with components zeroed, for trying a gate."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from circuitgate import CircuitgateError
from circuitgate.cli import main
from circuitgate.models.adapters import FAMILIES
from circuitgate.organism.perturb import NOTE_FILE, perturb


def _weights(directory):
    return {k: v for f in sorted(directory.glob("*.safetensors")) for k, v in load_file(f).items()}


def test_zeroes_exactly_the_named_components(tiny_model_dir, tmp_path):
    out = perturb(tiny_model_dir, tmp_path / "broken", ["mlp-L1", "head-L0H2"])
    before, after = _weights(tiny_model_dir), _weights(out)
    arch = json.loads((tiny_model_dir / "config.json").read_text())["model_type"]
    a = FAMILIES[arch]
    down, o_proj = a.weight_name(1, a.down_path), a.weight_name(0, a.o_proj_path)
    assert not after[down].any() and before[down].any()
    head_dim = before[o_proj].shape[1] // 4  # the tiny models have 4 heads
    cols = slice(2 * head_dim, 3 * head_dim)
    assert not after[o_proj][:, cols].any()
    keep = torch.ones(before[o_proj].shape[1], dtype=torch.bool)
    keep[cols] = False
    assert torch.equal(after[o_proj][:, keep], before[o_proj][:, keep])
    assert all(torch.equal(before[k], after[k]) for k in before if k not in (down, o_proj))
    note = json.loads((out / NOTE_FILE).read_text())
    assert note["zeroed"] == ["mlp-L1", "head-L0H2"] and len(note["source_sha256"]) == 64
    assert (out / "tokenizer.json").is_file() and not (out / "organism.json").exists()


def test_zeroes_an_organisms_neuron_block(tiny_model_dir, tmp_path):
    """An organism's plan says how many neurons a block holds; a block's down_proj columns are zeroed."""
    import shutil

    from circuitgate.truth import INFO_FILE, SCHEMA

    source = tmp_path / "organism"
    shutil.copytree(tiny_model_dir, source)
    info = {k: {} for k in ("recipe", "accuracy", "ground_truth", "activation_truth")}
    (source / INFO_FILE).write_text(json.dumps({**info, "schema": SCHEMA, "name": "tiny", "arch": "qwen2",
                                                 "recipe_hash": "x", "plan": {"block_size": 16}}))
    out = perturb(source, tmp_path / "broken", ["neurons-L1-B1"])
    before, after = _weights(source), _weights(out)
    arch = json.loads((tiny_model_dir / "config.json").read_text())["model_type"]
    down = FAMILIES[arch].weight_name(1, FAMILIES[arch].down_path)
    assert not after[down][:, 16:32].any() and before[down][:, 16:32].any()
    assert torch.equal(after[down][:, :16], before[down][:, :16]) and torch.equal(after[down][:, 32:], before[down][:, 32:])
    with pytest.raises(CircuitgateError, match="layer 1 has 4 blocks"):
        perturb(source, tmp_path / "broken2", ["neurons-L1-B4"])


def test_zeroes_one_neuron(tiny_model_dir, tmp_path):
    """A single neuron (what the attribution screen confirms) is its one down_proj input column."""
    out = perturb(tiny_model_dir, tmp_path / "broken", ["neuron-L1N5"])
    before, after = _weights(tiny_model_dir), _weights(out)
    arch = json.loads((tiny_model_dir / "config.json").read_text())["model_type"]
    down = FAMILIES[arch].weight_name(1, FAMILIES[arch].down_path)
    assert not after[down][:, 5].any() and before[down][:, 5].any()
    keep = torch.ones(before[down].shape[1], dtype=torch.bool)
    keep[5] = False
    assert torch.equal(after[down][:, keep], before[down][:, keep])
    assert all(torch.equal(before[k], after[k]) for k in before if k != down)


@pytest.mark.parametrize("target, message", [
    ("mlp-L9", "the model has 2 layers"), ("head-L0H7", "layer 0 has 4 heads"), ("mlp2", "targets are"),
    ("neuron-L0N999", "layer 0 has 64 neurons"),
    ("neurons-L0-B0", "the source is not an organism, it has no neuron blocks"),
])
def test_bad_targets_are_refused_and_leave_nothing(tiny_qwen_dir, tmp_path, target, message):
    with pytest.raises(CircuitgateError, match=message):
        perturb(tiny_qwen_dir, tmp_path / "broken", [target])
    assert list(tmp_path.iterdir()) == []


def test_an_existing_output_needs_force(tiny_qwen_dir, tmp_path):
    out = tmp_path / "broken"
    perturb(tiny_qwen_dir, out, ["attn-L0"])
    with pytest.raises(CircuitgateError, match="exists; pass --force"):
        perturb(tiny_qwen_dir, out, ["attn-L1"])
    perturb(tiny_qwen_dir, out, ["attn-L1"], force=True)
    assert json.loads((out / NOTE_FILE).read_text())["zeroed"] == ["attn-L1"]
    assert [p.name for p in tmp_path.iterdir()] == ["broken"]  # no temporary directory left behind


def test_cli_bad_target_is_one_line(capsys, tmp_path, monkeypatch):
    # A bad target is refused before anything is built: the organism cache is never touched.
    import circuitgate.organism as organism

    monkeypatch.setattr(organism, "ensure_built", lambda *a, **k: pytest.fail("built the organism"))
    assert main(["organism", "perturb", "--zero", "bogus", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "cannot zero 'bogus'" in err and err.count("\n") == 1
