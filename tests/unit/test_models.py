"""Model registry, adapters, device/dtype resolution, weight hashing and loading (tiny checkpoints)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from circuitgate import CircuitgateError
from circuitgate.models import Shape, adapter_for, aliases, load_model, model_info, resolve
from circuitgate.models.loading import resolve_device, resolve_dtype, weights_sha256
from circuitgate.models.registry import ModelSpec, default_alias

# -- registry ------------------------------------------------------------------------------------


def test_aliases_in_file_order_with_their_targets():
    known = aliases()
    assert list(known)[:6] == ["organism", "organism-llama", "organism-null", "smollm2", "gemma3-270m", "qwen7b"]
    assert {"qwen0.5b", "qwen1.5b", "llama8b"} <= set(known)
    assert known["organism"].builtin == "organism" and known["organism"].hub is None
    assert known["organism-llama"].builtin == "organism-llama" and known["organism-null"].builtin == "organism-null"
    assert {known[n].expectations for n in ("organism", "organism-llama", "organism-null")} == {"organism"}
    assert known["organism-null"].twin == "organism-llama"
    q = known["qwen7b"]
    assert q.hub == "Qwen/Qwen2.5-7B-Instruct" and q.builtin is None and q.path is None
    assert q.expectations == "qwen7b-paper.yaml" and q.prompts is None  # the method picks the set
    assert known["llama8b"].hub == "meta-llama/Llama-3.1-8B-Instruct"
    for name, spec in known.items():
        assert spec.name == name
        assert sum(x is not None for x in (spec.builtin, spec.hub, spec.path, spec.packaged)) == 1


def test_default_is_the_organism():
    assert default_alias() == "organism"
    assert resolve(None) == aliases()["organism"]
    assert resolve("") == aliases()["organism"]


def test_resolve_alias():
    assert resolve("qwen7b") == aliases()["qwen7b"]


def test_resolve_hub_id():
    spec = resolve("nobody/nothing")
    assert spec == ModelSpec(name="nobody/nothing", hub="nobody/nothing")


def test_resolve_local_directory(tmp_path):
    d = tmp_path / "my-model"
    d.mkdir()
    spec = resolve(str(d))
    assert spec.path == d.resolve() and spec.hub is None and spec.builtin is None
    assert spec.name == "my-model"
    assert spec.expectations is None  # not an organism build


def test_local_directory_wins_over_hub_id(tmp_path, monkeypatch):
    (tmp_path / "owner" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    spec = resolve("owner/name")
    assert spec.path == (tmp_path / "owner" / "name").resolve() and spec.hub is None


@pytest.mark.parametrize("name", ["qwen7", "a/b/c", "/no/such/dir", "./nothing", "owner/", "/x"])
def test_unknown_model_lists_the_aliases(name):
    with pytest.raises(CircuitgateError) as e:
        resolve(name)
    msg = str(e.value)
    assert f"unknown model {name!r}" in msg
    for alias in aliases():
        assert alias in msg
    assert "\n" not in msg


@pytest.mark.parametrize("name, slug", [
    ("qwen7b", "qwen7b"),
    ("Qwen/Qwen2.5-7B-Instruct", "Qwen-Qwen2.5-7B-Instruct"),
    ("my model (v2)", "my-model--v2"),
    ("..", "model"),
    ("/", "model"),
    ("-.x.-", "x"),
])
def test_slug(name, slug):
    assert ModelSpec(name=name).slug == slug


# -- device and dtype ----------------------------------------------------------------------------


def test_resolve_device_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(CircuitgateError, match="--device cuda was asked for"):
        resolve_device("cuda")


def test_resolve_device_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_unknown_device():
    with pytest.raises(CircuitgateError, match="unknown device 'tpu'"):
        resolve_device("tpu")


def test_resolve_dtype():
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_dtype("auto", "cuda") == "bfloat16"
    for d in ("float32", "bfloat16", "float16"):
        assert resolve_dtype(d, "cpu") == d
    with pytest.raises(CircuitgateError) as e:
        resolve_dtype("int8", "cpu")
    assert "unknown dtype 'int8'" in str(e.value) and "float32, bfloat16, float16" in str(e.value)


# -- weights hash --------------------------------------------------------------------------------


def test_weights_sha256_hashes_names_and_bytes_in_name_order(tmp_path):
    (tmp_path / "b.bin").write_bytes(b"second")
    (tmp_path / "a.safetensors").write_bytes(b"first")
    (tmp_path / "config.json").write_text("{}")  # not a weight file
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / "sub.bin").mkdir()  # a directory named like a weight file is not one
    expected = hashlib.sha256(b"a.safetensors" + b"first" + b"b.bin" + b"second").hexdigest()
    assert weights_sha256(tmp_path) == expected
    (tmp_path / "config.json").write_text('{"changed": true}')
    assert weights_sha256(tmp_path) == expected
    (tmp_path / "b.bin").write_bytes(b"Second")
    assert weights_sha256(tmp_path) != expected


def test_weights_sha256_depends_on_file_names(tmp_path):
    (tmp_path / "a.safetensors").write_bytes(b"x")
    h1 = weights_sha256(tmp_path)
    (tmp_path / "a.safetensors").rename(tmp_path / "b.safetensors")
    assert weights_sha256(tmp_path) != h1


def test_weights_sha256_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CircuitgateError, match="no weight files") as e:
        weights_sha256(tmp_path)
    assert str(tmp_path) in str(e.value)


# -- adapters and shapes -------------------------------------------------------------------------


def test_adapter_for_supported_families():
    assert adapter_for("qwen2").family == "qwen2"
    assert adapter_for("llama").family == "llama"
    a = adapter_for("llama")
    assert (a.layers_path, a.o_proj_path, a.down_path) == ("model.layers", "self_attn.o_proj", "mlp.down_proj")


def test_adapter_for_unsupported_family_lists_the_supported():
    with pytest.raises(CircuitgateError) as e:
        adapter_for("mamba")
    msg = str(e.value)
    assert "unsupported architecture 'mamba'" in msg and "qwen2" in msg and "llama" in msg


def test_shape_from_config_defaults_kv_heads_and_head_dim():
    cfg = SimpleNamespace(num_attention_heads=4, num_hidden_layers=3, hidden_size=32, intermediate_size=80,
                          num_key_value_heads=None)
    assert Shape.from_config(cfg) == Shape(n_layers=3, n_heads=4, n_kv_heads=4, head_dim=8, hidden=32, ffn=80)
    cfg2 = SimpleNamespace(num_attention_heads=4, num_hidden_layers=3, hidden_size=32, intermediate_size=80)
    assert Shape.from_config(cfg2).n_kv_heads == 4 and Shape.from_config(cfg2).head_dim == 8


def test_shape_from_config_with_explicit_head_dim_and_gqa():
    cfg = SimpleNamespace(num_attention_heads=28, num_hidden_layers=28, hidden_size=3584, intermediate_size=18944,
                          num_key_value_heads=4, head_dim=128)
    s = Shape.from_config(cfg)
    assert (s.n_layers, s.n_heads, s.n_kv_heads, s.head_dim, s.hidden, s.ffn) == (28, 28, 4, 128, 3584, 18944)


def test_shape_from_a_real_transformers_config():
    from transformers import Qwen2Config

    cfg = Qwen2Config(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, num_hidden_layers=5,
                      intermediate_size=96)
    assert Shape.from_config(cfg) == Shape(5, 8, 2, 8, 64, 96)


# -- loading the tiny checkpoints ----------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(resolve(str(tiny_model_dir)), device="cpu")


def test_load_tiny_model(loaded, tiny_model_dir):
    arch = "llama" if "llama" in tiny_model_dir.name else "qwen2"
    assert loaded.adapter.family == arch
    assert loaded.shape == Shape(n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, hidden=32, ffn=64)
    assert loaded.device == "cpu" and loaded.dtype == "float32"
    assert loaded.model_id == str(tiny_model_dir.resolve())
    assert loaded.sha256 == weights_sha256(tiny_model_dir)
    assert next(loaded.hf.parameters()).dtype == torch.float32
    assert not loaded.hf.training
    assert loaded.adapter.n_layers(loaded.hf) == 2
    assert loaded.adapter.layer(loaded.hf, 1) is loaded.hf.model.layers[1]


def test_tokenizer_is_the_saved_word_level_one(loaded):
    tok = loaded.tokenizer
    assert tok("w5 w7", add_special_tokens=False)["input_ids"] == [8, 10]
    assert tok("w0 w60")["input_ids"][-2:] == [3, 63]
    assert tok.padding_side == "left"
    assert tok.pad_token == "<pad>"
    batch = tok(["w1", "w1 w2 w3"], padding=True, return_tensors="pt")
    assert batch["input_ids"][0].tolist()[-1] == 4 and batch["input_ids"][0].tolist()[0] == 0  # left-padded


def test_sha256_is_stable_across_loads(loaded, tiny_model_dir):
    again = load_model(resolve(str(tiny_model_dir)), device="cpu", dtype="float32")
    assert again.sha256 == loaded.sha256


def test_hash_is_of_content_not_location(tiny_model_dir, tiny_qwen_dir):
    """tiny_qwen_dir and the qwen2 tiny_model_dir are the same seed and family in two directories."""
    same = "llama" not in tiny_model_dir.name
    assert tiny_model_dir != tiny_qwen_dir
    assert (weights_sha256(tiny_model_dir) == weights_sha256(tiny_qwen_dir)) is same


def test_model_info(loaded):
    info = model_info(loaded)
    assert info["id"] == loaded.model_id and info["sha256"] == loaded.sha256
    assert info["family"] == loaded.adapter.family
    assert info["shape"] == {"n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "head_dim": 8, "hidden": 32, "ffn": 64}


def test_load_in_bfloat16(tiny_qwen_dir):
    m = load_model(resolve(str(tiny_qwen_dir)), device="cpu", dtype="bfloat16")
    assert m.dtype == "bfloat16" and next(m.hf.parameters()).dtype == torch.bfloat16


# -- loading errors ------------------------------------------------------------------------------


@pytest.fixture
def offline_empty_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    # huggingface_hub reads these at import: point its constants at the empty cache too.
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(home / "hub"), raising=False)
    return home


@pytest.mark.parametrize("name, hub", [("nobody/nothing", "nobody/nothing"), ("qwen7b", "Qwen/Qwen2.5-7B-Instruct")])
def test_missing_hub_weights_is_one_line_naming_the_model_and_the_remedy(offline_empty_cache, name, hub):
    with pytest.raises(CircuitgateError) as e:
        load_model(resolve(name), device="cpu")
    msg = str(e.value)
    assert "\n" not in msg
    assert f"model {name!r}" in msg and hub in msg
    assert "HF_HUB_OFFLINE is set" in msg
    assert "--model PATH" in msg and f"huggingface-cli download {hub}" in msg and "HF_HOME" in msg


def test_unsupported_architecture_lists_supported_families(tmp_path):
    from transformers import BertConfig

    d = tmp_path / "bert-tiny"
    BertConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2).save_pretrained(d)
    with pytest.raises(CircuitgateError) as e:
        load_model(resolve(str(d)), device="cpu")
    msg = str(e.value)
    assert "unsupported architecture 'bert'" in msg and "supported model types: " in msg and "qwen2" in msg


def test_directory_without_config_json(tmp_path):
    d = tmp_path / "no-config"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"")
    with pytest.raises(CircuitgateError) as e:
        load_model(resolve(str(d)), device="cpu")
    msg = str(e.value)
    assert str(d.resolve()) in msg and "no config.json" in msg


def test_directory_with_unreadable_config(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "config.json").write_text("{not json")
    with pytest.raises(CircuitgateError, match="cannot read the model config"):
        load_model(resolve(str(d)), device="cpu")


def test_directory_with_config_but_no_weights(tmp_path, tiny_qwen_dir):
    import shutil

    d = tmp_path / "weightless"
    d.mkdir()
    for f in Path(tiny_qwen_dir).iterdir():
        if not f.name.endswith((".safetensors", ".bin")):
            shutil.copy(f, d / f.name)
    with pytest.raises(CircuitgateError, match="no weight files") as e:
        load_model(resolve(str(d)), device="cpu")
    assert str(d.resolve()) in str(e.value)


def test_cuda_without_cuda_fails_before_loading(monkeypatch, tiny_qwen_dir):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CircuitgateError, match="--device cuda"):
        load_model(resolve(str(tiny_qwen_dir)), device="cuda")


# -- progress while hashing ----------------------------------------------------------------------


def test_hashing_progress_bar_shows_bytes_and_leaves_the_hash_unchanged(tmp_path, capfd):
    (tmp_path / "a.safetensors").write_bytes(b"first")
    (tmp_path / "b.bin").write_bytes(b"second")
    expected = hashlib.sha256(b"a.safetensors" + b"first" + b"b.bin" + b"second").hexdigest()
    assert weights_sha256(tmp_path, progress=True) == expected
    assert "hashing weights" in capfd.readouterr().err
    assert weights_sha256(tmp_path, progress=False) == expected
    assert capfd.readouterr().err == ""


def test_load_model_without_progress_prints_nothing(tiny_qwen_dir, capfd):
    loaded = load_model(resolve(str(tiny_qwen_dir)), device="cpu", dtype="float32", progress=False)
    assert loaded.sha256 == weights_sha256(tiny_qwen_dir, progress=False)
    assert "hashing weights" not in capfd.readouterr().err
