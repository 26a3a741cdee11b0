"""Load a model through nnsight, with one-line errors for what users get wrong.

The HF model is loaded with transformers (so missing weights are reported by us, not by a traceback
from deep inside the hub client) and wrapped in nnsight's ``TransformersModel``, as docs/nnsight.md
prescribes: ``task="text-generation"`` (required offline), an explicit tokenizer, eager attention
(attention probabilities exist only there).

``remote=True`` (``--remote``) runs every trace on NDIF: the model is a hub id, wrapped on the meta
device from its config and tokenizer alone, and no weights are read or downloaded. ``remote="local"``
(``--remote local``) loads the weights as usual and runs every trace through nnsight's local
stand-in for the remote path (docs/nnsight.md, Remote execution).
"""

from __future__ import annotations

import dataclasses
import hashlib
from contextlib import contextmanager
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from circuitgate.progress import progress_bar

from circuitgate import CircuitgateError
from circuitgate.models.adapters import Adapter, Shape, adapter_for
from circuitgate.models.packaged import converted_directory
from circuitgate.models.registry import ModelSpec
from circuitgate.vocabulary import DEVICES, DTYPE_NAMES

DTYPES = {name: getattr(torch, name) for name in DTYPE_NAMES}
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
_CONFIG_PATTERNS = ["*.json", "*.model", "*.txt", "*.tiktoken"]  # config and tokenizer files of a hub repo
NDIF_API_KEY = "NDIF_API_KEY"  # the environment variable nnsight reads its key from (nnsight.CONFIG)
REMOTE_DTYPE = "ndif"  # the dtype recorded under --remote: the NDIF deployment's, not chosen here


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
    sha256: str  # of the weight files (remote: of the hub id and commit): keys activation caches and the manifest
    remote: bool | str = False  # True: traces run on NDIF; "local": through nnsight's local stand-in for that
    revision: str | None = None  # remote: the commit of the config and tokenizer read, when the HF cache says

    def trace(self, inputs: Any, **kwargs: Any) -> Any:
        """A trace of ``inputs`` (``with loaded.trace(inputs): ...``), remote when the model is.

        ``kwargs`` reach the HF forward (``logits_to_keep=1``). The ``with`` belongs in the caller:
        nnsight captures the block of the frame that enters the tracer. A block that runs remotely
        follows the rules of docs/nnsight.md, "Remote execution".
        """
        if self.remote:
            import nnsight

            # The server has no circuitgate: what a block uses of it (the adapter, an edit) is shipped by
            # value; by reference it would not load there (docs/nnsight.md, Remote execution).
            nnsight.register("circuitgate")
            return self.model.trace(inputs, remote=self.remote, **kwargs)
        return self.model.trace(inputs, **kwargs)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CircuitgateError("--device cuda was asked for, but torch sees no CUDA device")
    if device not in DEVICES:
        raise CircuitgateError(f"unknown device {device!r} (use auto, {' or '.join(DEVICES)})")
    return device


def resolve_dtype(dtype: str, device: str) -> str:
    if dtype == "auto":
        # bf16 halves memory on a GPU; on a CPU float32 is both faster and exact.
        return "bfloat16" if device == "cuda" else "float32"
    if dtype not in DTYPES:
        raise CircuitgateError(f"unknown dtype {dtype!r} (use auto, {', '.join(DTYPES)})")
    return dtype


CHEAP_HASH_BYTES = 256 << 20  # weights this small are hashed before they load (a second at most)


def cheap_weights_sha256(spec: ModelSpec) -> str | None:
    """The weights' hash, as loading computes it, when the weights are already on disk and small (a
    local directory, a built organism); else None: a hub model's is hashed when it loads (a 7B model
    is ~15 GB to read) and an organism not built yet is built on first use, not to be hashed."""
    directory = spec.path
    if spec.builtin:
        from circuitgate.organism import is_organism_dir, recipe_of
        from circuitgate.organism.builder import organism_dir

        directory = organism_dir(recipe_of(spec.builtin))
        if not is_organism_dir(directory):
            return None
    if directory is None or not directory.is_dir():
        return None
    try:
        if sum(p.stat().st_size for p in directory.iterdir() if p.is_file()) > CHEAP_HASH_BYTES:
            return None
        return weights_sha256(directory, progress=False)
    except (CircuitgateError, OSError):
        return None


def weights_sha256(directory: Path, progress: bool = True) -> str:
    """sha256 over the weight files of a directory (names and bytes, in name order).

    A 7B model is ~15 GB to read, minutes with no other output: ``progress`` shows a bar in bytes.
    """
    files = sorted(p for p in directory.iterdir() if p.name.endswith(_WEIGHT_SUFFIXES) and p.is_file())
    if not files:
        raise CircuitgateError(f"no weight files (*.safetensors, *.bin) in {directory}")
    # Hashed once per process while the files stay as they were: H4's kept results are keyed by the
    # twin's hash before it loads (``circuitgate.twin_cache``), and loading it would read a gigabyte again.
    signature = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    if signature in _HASHED:
        return _HASHED[signature]
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
    _HASHED[signature] = h.hexdigest()
    return _HASHED[signature]


_HASHED: dict[tuple[tuple[str, int, int], ...], str] = {}


def weights_present(spec: ModelSpec) -> str:
    """Where a registry entry's weights stand on this machine, without fetching, building or converting
    anything: "built" / "not built" (organisms), "installed" / "converted" / "not installed" (packaged),
    "in the HF cache" / "not in the HF cache" (hub)."""
    if spec.builtin:
        from circuitgate.organism import recipe_of
        from circuitgate.organism.builder import organism_dir
        from circuitgate.truth import is_organism_dir

        return "built" if is_organism_dir(organism_dir(recipe_of(spec.builtin))) else "not built"
    if spec.packaged:
        from circuitgate.models.packaged import converted_path, is_converted, present

        if not present(spec.name, spec.packaged):
            return "not installed"
        return "converted" if is_converted(converted_path(spec.name, spec.packaged)) else "installed"
    if spec.hub:
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(spec.hub, local_files_only=True, allow_patterns=_CONFIG_PATTERNS + ["*.safetensors"])
        except Exception:  # the hub client raises many types; all mean "not in the cache"
            return "not in the HF cache"
        return "in the HF cache"
    return "local directory" if spec.path and spec.path.is_dir() else "missing"


def _hub_snapshot(spec: ModelSpec, weights: bool = True) -> Path:
    """The local snapshot of a hub model: from the HF cache, or downloaded when the hub is reachable.
    Without ``weights`` (``--remote``), its config and tokenizer files only."""
    from huggingface_hub import snapshot_download

    patterns = _CONFIG_PATTERNS + (["*.safetensors"] if weights else [])
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
    if not weights:
        raise CircuitgateError(
            f"model {spec.name!r} ({spec.hub}): --remote needs its config and tokenizer (not its weights), and they "
            f"are not in the Hugging Face cache and {reason}; fill the cache (HF_HOME) with `huggingface-cli download "
            f"{spec.hub} --include {' '.join(repr(p) for p in _CONFIG_PATTERNS)}` on a connected machine"
        )
    raise CircuitgateError(
        f"model {spec.name!r} ({spec.hub}): weights not in the Hugging Face cache and {reason}; "
        f"supply a local directory with --model PATH, or fill the cache (HF_HOME) with "
        f"`huggingface-cli download {spec.hub}` on a connected machine"
    )


def model_directory(spec: ModelSpec, progress: bool = True, remote: bool = False) -> Path:
    """Where a spec's weights are: its path, its packaged weights' conversion in the cache, or its hub
    id's snapshot in the HF cache. A built-in organism's is its build's, which the caller makes
    (``organism.ensure_built``) and passes on. ``remote`` (``--remote``): a hub model's config and
    tokenizer, without weights."""
    if remote:
        return _hub_snapshot(_remote_spec(spec), weights=False)
    if spec.builtin:
        raise CircuitgateError(f"{spec.name} is built in: build it (`circuitgate organism build`) and load its directory")
    if spec.packaged:
        return converted_directory(spec.name, spec.packaged, progress)
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


def token_counter(directory: Path) -> Callable[[Sequence[str]], list[int]]:
    """texts -> their token counts under the tokenizer saved in ``directory``, as the model reads them
    (special tokens included: the same on every prompt)."""
    tok = _tokenizer(directory)
    return lambda texts: [len(ids) for ids in tok(list(texts)).input_ids]


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


REMOTE_VALUES = (False, True, "local")


def ndif_api_key() -> str:
    """The NDIF API key ``--remote`` needs: from the environment variable nnsight reads (nnsight.CONFIG),
    and from nowhere else."""
    key = os.environ.get(NDIF_API_KEY, "").strip()
    if not key:
        raise CircuitgateError(f"--remote runs on NDIF and needs an API key in the environment variable {NDIF_API_KEY} "
                               "(one from https://ndif.us); --remote local needs none")
    return key


def _remote_spec(spec: ModelSpec) -> ModelSpec:
    if not spec.hub:
        raise CircuitgateError(f"--remote runs a hub model on NDIF, and {spec.name!r} is none (a hub id owner/name, or "
                               "a registry alias of one); --remote local runs a local model through the same path")
    return spec


def _snapshot_commit(directory: Path) -> str | None:
    """The commit of a HF cache snapshot: the cache names each snapshot directory by it
    (``models--owner--name/snapshots/<commit>/``)."""
    return directory.name if directory.parent.name == "snapshots" else None


def remote_sha256(hub: str, revision: str | None) -> str:
    """What stands for the weight hash under ``--remote``, where no weight file is here to hash: the
    sha256 of ``ndif:<hub id>@<commit>`` (``main`` when the commit is unknown)."""
    return hashlib.sha256(f"ndif:{hub}@{revision or 'main'}".encode()).hexdigest()


def _config(directory: Path) -> Any:
    from transformers import AutoConfig

    if not (directory / "config.json").is_file():
        raise CircuitgateError(f"{directory} is not a Hugging Face model directory (no config.json)")
    try:
        return AutoConfig.from_pretrained(directory)
    except Exception as e:
        raise CircuitgateError(f"cannot read the model config in {directory}: {e}") from None


def load_model(spec: ModelSpec, device: str = "auto", dtype: str = "auto", progress: bool = True,
               directory: Path | None = None, remote: bool | str = False) -> LoadedModel:
    """The spec's model, wrapped for nnsight; ``directory``: where its weights are, when the caller
    knows (a built-in organism's build), else ``model_directory(spec)``. ``remote``: False, True
    (NDIF: ``directory`` holds only config and tokenizer) or "local" (module docstring)."""
    from nnsight.modeling.transformers import TransformersModel
    from transformers import AutoModelForCausalLM

    if remote not in REMOTE_VALUES:
        raise CircuitgateError(f"unknown remote setting {remote!r} (use False, True or 'local')")
    if remote is True:
        return _remote_model(spec, directory or model_directory(spec, progress, remote=True))
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    directory = directory or model_directory(spec, progress)
    config = _config(directory)
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
        model_id=spec.hub or (spec.packaged.id if spec.packaged else str(directory)),
        sha256=sha,
        remote=remote,
    )


def _remote_model(spec: ModelSpec, directory: Path) -> LoadedModel:
    """A hub model wrapped for NDIF: built on the meta device from its config, no weights read. Inputs
    are made on the CPU and shipped; the dtype and devices are the NDIF deployment's."""
    from nnsight import CONFIG
    from nnsight.modeling.transformers import TransformersModel

    spec = _remote_spec(spec)
    # nnsight read the variable when it was imported; set from it again here, so the key is the
    # environment's now and never one from a file.
    CONFIG.API.APIKEY = ndif_api_key()
    config = _config(directory)
    adapter = adapter_for(config.model_type)
    tokenizer = _tokenizer(directory)
    # nnsight sends the attention implementation with every request: the server runs eager attention
    # too, so attention probabilities exist there (docs/nnsight.md, Remote execution).
    model = TransformersModel(spec.hub, task="text-generation", tokenizer=tokenizer, config=config,
                              attn_implementation="eager")
    revision = _snapshot_commit(directory)
    return LoadedModel(
        spec=spec,
        model=model,
        hf=model._module,  # on the meta device: no plain forward, no torch hooks
        tokenizer=tokenizer,
        adapter=adapter,
        shape=Shape.from_config(config),
        device="cpu",
        dtype=REMOTE_DTYPE,
        model_id=spec.hub,
        sha256=remote_sha256(spec.hub, revision),
        remote=True,
        revision=revision,
    )


def model_info(loaded: LoadedModel) -> dict[str, Any]:
    """The model part of verdicts.json and manifest.json."""
    info = {
        "name": loaded.spec.name,
        "id": loaded.model_id,
        "sha256": loaded.sha256,
        "family": loaded.adapter.family,
        "shape": dataclasses.asdict(loaded.shape),
    }
    if loaded.remote is True:  # no weights were hashed: the hub id and commit stand for them
        info.update(remote="ndif", revision=loaded.revision)
    return info
