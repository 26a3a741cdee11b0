"""What the wheel holds and how pytest finds the plugin (pyproject.toml), checked without building it."""

from __future__ import annotations

import tomllib
from pathlib import Path

import torch

from circuitgate.models.loading import DTYPES
from circuitgate.vocabulary import DTYPE_NAMES

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_of_circuitgate_is_in_the_wheel():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "circuitgate").rglob("__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"


def test_the_checkout_folders_map_into_circuitgate():
    mapped = PYPROJECT["tool"]["setuptools"]["package-dir"]
    assert mapped == {"circuitgate.plugin": "plugins", "circuitgate.fixtures": "fixtures",
                      "circuitgate.hypotheses": "hypotheses"}
    for folder in mapped.values():
        assert (REPO / folder / "__init__.py").is_file()
    assert PYPROJECT["project"]["entry-points"]["pytest11"] == {"circuitgate": "circuitgate.plugin"}


def test_the_dtype_names_the_entry_point_offers_are_torch_dtypes():
    # said in circuitgate.vocabulary without importing torch; loading maps each to torch's
    assert tuple(DTYPES) == DTYPE_NAMES and all(isinstance(DTYPES[name], torch.dtype) for name in DTYPE_NAMES)
