"""Activations through nnsight agree with a plain HF forward, for every batching and padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from circuitgate import CircuitgateError
from circuitgate.extract import cache_key, cached_extract, extract
from circuitgate.models import load_model, resolve

PROMPTS = ["w5 w7 w9", "w3 w4", "w10 w11 w12 w13 w14 w15", "w20", "w8 w9 w10 w11", "w30 w31 w32"]


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(resolve(str(tiny_model_dir)), device="cpu", dtype="float32")


def _reference(loaded, text):
    """Last-token activations of one unpadded prompt from a plain HF forward and torch hooks."""
    hf = loaded.hf
    ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
    captured = {"gate": [], "neurons": [], "resid": []}
    hooks = []
    for layer in hf.model.layers:
        # A hook, not hidden_states: HF applies the final norm to the last entry of hidden_states.
        hooks.append(layer.register_forward_hook(lambda m, i, o: captured["resid"].append(o[0, -1])))
        hooks.append(layer.mlp.gate_proj.register_forward_hook(lambda m, i, o: captured["gate"].append(o[0, -1])))
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(lambda m, i: captured["neurons"].append(i[0][0, -1])))
    try:
        with torch.no_grad():
            out = hf(input_ids=ids, output_hidden_states=True, output_attentions=True)
        # hidden_states[0] is the embedding; [i + 1] the output of decoder layer i (but the last).
        for i, h in enumerate(out.hidden_states[1:-1]):
            torch.testing.assert_close(h[0, -1], captured["resid"][i], atol=0, rtol=0)
    finally:
        for h in hooks:
            h.remove()
    return {
        "resid": torch.stack(captured["resid"]).numpy(),
        "attn": torch.stack([a[0, :, -1, :] for a in out.attentions]).numpy(),
        "gate": torch.stack(captured["gate"]).numpy(),
        "neurons": torch.stack(captured["neurons"]).numpy(),
    }


@pytest.mark.parametrize("batch_size", [1, 4, 16])
def test_matches_plain_forward(loaded, batch_size):
    acts = extract(loaded, PROMPTS, batch_size=batch_size, progress=False)
    assert acts.resid.shape == (len(PROMPTS), 2, 32)
    assert acts.attn.shape == (len(PROMPTS), 2, 4, 6)
    assert acts.neurons.shape == acts.gate.shape == (len(PROMPTS), 2, 64)
    for p, text in enumerate(PROMPTS):
        ref = _reference(loaded, text)
        n = acts.lengths[p]
        # 1e-5 absolute and relative: activations of this random model reach |x| ~ 15, where batched
        # float32 matmuls (another reduction order than one unpadded prompt) differ by ~1e-6 relative.
        for site in ("resid", "gate", "neurons"):
            np.testing.assert_allclose(getattr(acts, site)[p], ref[site], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(acts.attn[p][..., -n:], ref["attn"], atol=1e-5, rtol=0)
        # Positions before the prompt start are exactly zero, never pad garbage.
        assert (acts.attn[p][..., : acts.attn.shape[-1] - n] == 0).all()


def test_attention_rows_are_distributions(loaded):
    acts = extract(loaded, PROMPTS, batch_size=4, progress=False)
    np.testing.assert_allclose(acts.attn.sum(-1), 1.0, atol=1e-5)


def test_cache_roundtrip_and_atomic(loaded, tmp_path):
    a = cached_extract(loaded, PROMPTS, batch_size=4, progress=False, root=tmp_path)
    files = list((tmp_path / "activations").iterdir())
    assert [f.suffix for f in files] == [".npz"]  # no temporary left behind
    b = cached_extract(loaded, PROMPTS, batch_size=2, progress=False, root=tmp_path)
    np.testing.assert_array_equal(a.resid, b.resid)
    # A truncated cache file (an interrupted writer from an older version) is recomputed, not trusted.
    files[0].write_bytes(files[0].read_bytes()[:100])
    c = cached_extract(loaded, PROMPTS, batch_size=4, progress=False, root=tmp_path)
    np.testing.assert_array_equal(a.attn, c.attn)


def test_cache_key_depends_on_prompts_and_weights(loaded):
    k = cache_key(loaded, PROMPTS)
    assert k != cache_key(loaded, PROMPTS[:-1])
    assert k == cache_key(loaded, list(PROMPTS))


def test_empty_prompts_rejected(loaded):
    with pytest.raises(CircuitgateError, match="no prompts"):
        extract(loaded, [], progress=False)


def test_non_finite_activations_rejected(loaded):
    weight = loaded.hf.model.layers[1].mlp.up_proj.weight
    original = weight[0, 0].item()
    with torch.no_grad():
        weight[0, 0] = float("nan")
    try:
        with pytest.raises(CircuitgateError, match="non-finite .* layer 1"):
            extract(loaded, PROMPTS[:2], progress=False)
    finally:
        with torch.no_grad():
            weight[0, 0] = original
