"""Load a model through nnsight, with one-line errors for what users get wrong.

The HF model is loaded with transformers (so missing weights are reported by us, not by a traceback
from deep inside the hub client) and wrapped in nnsight's ``TransformersModel``, as docs/nnsight.md
prescribes: ``task="text-generation"`` (required offline), an explicit tokenizer, eager attention
(attention probabilities exist only there).
"""

from __future__ import annotations

import dataclasses
import hashlib
from contextlib import contextmanager
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from circuitgate.progress import progress_bar

from circuitgate import CircuitgateError
from circuitgate.models.adapters import Adapter, Shape, adapter_for
from circuitgate.models.registry import ModelSpec

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    model: Any  # nnsight TransformersModel
    hf: Any  # the transformers module it wraps (plain forward, torch hooks)
    tokenizer: Any
    adapter: Adapter
    shape: Shape
    device: str
    dtype: str
    model_id: str  # hub id or local path
    sha256: str  # of the weight files: keys activation caches and the manifest


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CircuitgateError("--device cuda was asked for, but torch sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise CircuitgateError(f"unknown device {device!r} (use auto, cpu or cuda)")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        # bf16 halves memory on a GPU; on a CPU float32 is both faster and exact.
        return "bfloat16" if device == "cuda" else "float32"
    if dtype not in DTYPES:
        raise CircuitgateError(f"unknown dtype {dtype!r} (use auto, {', '.join(DTYPES)})")
    return dtype


def weights_sha256(directory: Path, progress: bool = True) -> str:
    """sha256 over the weight files of a directory (names and bytes, in name order).

    A 7B model is ~15 GB to read, minutes with no other output: ``progress`` shows a bar in bytes.
    """
    files = sorted(p for p in directory.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES) and p.is_file())
    if not files:
        raise CircuitgateError(f"no weight files (*.safetensors, *.bin) in {directory}")
    h = hashlib.sha256()
    total = sum(f.stat().st_size for f in files)
    with progress_bar(total=total, desc="hashing weights", unit="B", unit_scale=True, unit_divisor=1024,
                      enabled=progress, leave=False) as bar:
        for f in files:
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 24), b""):
                    h.update(chunk)
                    bar.update(len(chunk))
    return h.hexdigest()


def _hub_snapshot(spec: ModelSpec) -> Path:
    """The local snapshot of a hub model: from the HF cache, or downloaded when the hub is reachable."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken"]
    try:
        return Path(snapshot_download(spec.hub, local_files_only=True, allow_patterns=patterns))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "").lower() not in ("", "0", "false"):
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            return Path(snapshot_download(spec.hub, allow_patterns=patterns))
        except Exception as e:  # the hub client raises many types; all mean "no weights here"
            reason = f"the hub is unreachable ({type(e).__name__})"
    raise CircuitgateError(
        f"model {spec.name!r} ({spec.hub}): weights not in the Hugging Face cache and {reason}; "
        f"supply a local directory with --model PATH, or fill the cache (HF_HOME) with "
        f"`huggingface-cli download {spec.hub}` on a connected machine"
    )


def model_directory(spec: ModelSpec) -> Path:
    """Where a spec's weights are: its path, or its hub id's snapshot in the HF cache. A built-in
    organism's is its build's, which the caller makes (``organism.ensure_built``) and passes on."""
    if spec.builtin:
        raise CircuitgateError(f"{spec.name} is built in: build it (`circuitgate organism build`) and load its directory")
    if spec.hub:
        return _hub_snapshot(spec)
    assert spec.path is not None
    return spec.path


_GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _saved_tokenizer_class(directory: Path) -> str | None:
    try:
        return json.loads((directory / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError):
        return None


def _tokenizer(directory: Path) -> Any:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    # A directory that saved a generic fast tokenizer (the organisms' word-level one among them) gets
    # that one back: AutoTokenizer picks the family's class from config.json, and transformers 5 swaps
    # in Qwen2Tokenizer for model_type qwen2, mapping every word to nothing (docs/nnsight.md, Loading).
    cls = PreTrainedTokenizerFast if _saved_tokenizer_class(directory) in _GENERIC_TOKENIZERS else AutoTokenizer
    try:
        tok = cls.from_pretrained(directory)
    except Exception as e:
        raise CircuitgateError(f"cannot load a tokenizer from {directory}: {type(e).__name__}: {e}") from None
    # Batches are left-padded so the last prompt token sits at position -1 of every row.
    tok.padding_side = "left"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


@contextmanager
def transformers_bars(progress: bool) -> Iterator[None]:
    """transformers draws bars of its own (loading weights, writing shards); without progress, none."""
    from transformers.utils import logging as hf_logging

    shown = hf_logging.is_progress_bar_enabled()
    if not progress:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def load_model(spec: ModelSpec, device: str = "auto", dtype: str = "auto", progress: bool = True,
               directory: Path | None = None) -> LoadedModel:
    """The spec's model, wrapped for nnsight; ``directory``: where its weights are, when the caller
    knows (a built-in organism's build), else ``model_directory(spec)``."""
    from nnsight.modeling.transformers import TransformersModel
    from transformers import AutoConfig, AutoModelForCausalLM

    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    directory = directory or model_directory(spec)
    if not (directory / "config.json").is_file():
        raise CircuitgateError(f"{directory} is not a Hugging Face model directory (no config.json)")
    try:
        config = AutoConfig.from_pretrained(directory)
    except Exception as e:
        raise CircuitgateError(f"cannot read the model config in {directory}: {e}") from None
    adapter = adapter_for(config.model_type)
    tokenizer = _tokenizer(directory)
    sha = weights_sha256(directory, progress)
    kwargs: dict[str, Any] = {"attn_implementation": "eager", "dtype": DTYPES[dtype]}
    if device == "cuda" and torch.cuda.device_count() > 1:
        kwargs["device_map"] = "auto"  # several GPUs: accelerate places the layers (docs/design.md, Scale)
    try:
        with transformers_bars(progress):
            hf = AutoModelForCausalLM.from_pretrained(directory, **kwargs)
    except Exception as e:
        raise CircuitgateError(f"cannot load weights from {directory}: {type(e).__name__}: {e}") from None
    if "device_map" not in kwargs:
        hf = hf.to(device)
    hf.eval()
    model = TransformersModel(hf, task="text-generation", tokenizer=tokenizer, dispatch=True)
    return LoadedModel(
        spec=spec,
        model=model,
        hf=hf,
        tokenizer=tokenizer,
        adapter=adapter,
        shape=Shape.from_config(config),
        device=device,
        dtype=dtype,
        model_id=spec.hub or str(directory),
        sha256=sha,
    )


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """The model part of verdicts.json and manifest.json."""
    return {
        "name": loaded.spec.name,
        "id": loaded.model_id,
        "sha256": loaded.sha256,
        "family": loaded.adapter.family,
        "shape": dataclasses.asdict(loaded.shape),
    }
