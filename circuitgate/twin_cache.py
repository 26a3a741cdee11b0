"""H4's second model, measured once: its results kept on disk between runs.

H4 compares the model with a twin of another family, and the twin's H1, H2 and H5 are most of H4's
cost: on one CPU thread gemma3-270m's take about 5 minutes, as long as smollm2's own suite
(docs/validation.md, "Speed"). The twin does not change between the checkpoints a gate compares, so a
run keeps its results under ``<cache root>/twin-results`` and the next run that would measure the same
thing reads them instead. The key is everything those results are a function of: circuitgate's own
source and the numeric libraries' versions, the twin's weights and the files beside them (config,
tokenizer), the device and dtype, the config, the prompts as the twin's tokenizer matched them, and the
methods and hypotheses. The batch size is not in it: it moves a result by float rounding at most,
which a gate counts as harmless (docs/gating.md, "The candidate benchmark": another batch size regresses
no unit), and the twin is only compared with, never gated.

Files are written to a temporary name and renamed into place, so an interrupted run never leaves one
a later run would trust; an unreadable file is measured again.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from circuitgate.cache import atomic_write, cache_root

if TYPE_CHECKING:
    from circuitgate.analyses.base import Twin
    from circuitgate.prompts import PromptSet


@dataclass(frozen=True)
class KeptTwin:
    """What H4 and the documents read of the twin: H4's input (name, shape, results by method and
    hypothesis) and the model info verdicts.json records (name, id, weights hash), so that a kept twin
    is never loaded."""

    twin: "Twin"
    model_info: Mapping[str, Any]


@lru_cache(maxsize=1)
def source_sha256() -> str:
    """sha256 of circuitgate's package source (every .py and .yaml file, by path and bytes) and of the
    versions of the libraries that compute its numbers: another version of either is another result."""
    import numpy
    import scipy
    import torch
    import transformers

    package = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in sorted(p for p in package.rglob("*") if p.suffix in (".py", ".yaml") and p.is_file()):
        h.update(str(f.relative_to(package)).encode())
        h.update(f.read_bytes())
    for module in (torch, transformers, numpy, scipy):
        h.update(f"{module.__name__}={module.__version__}".encode())
    return h.hexdigest()


def directory_sha256(directory: Path, weights_sha256: str) -> str:
    """The weights' hash together with every other file beside them (config, tokenizer): a changed
    config or tokenizer is another model even when the weights are the same bytes."""
    h = hashlib.sha256(weights_sha256.encode())
    for f in sorted(p for p in directory.iterdir() if p.is_file() and p.stat().st_size < (64 << 20)):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def twin_key(model: str, device: str, dtype: str, config: str, prompts: "PromptSet",
             methods: Sequence[str], hypotheses: Sequence[str]) -> str:
    """The kept results' key: ``model`` is ``directory_sha256`` of the twin, ``prompts`` the prompt set
    as matched to its tokenizer (every pair and control: wordings, answers, ids), ``config`` the
    config's hash as verdicts.json records it (``documents.config_sha256``)."""
    blob = json.dumps({
        "source": source_sha256(), "model": model, "device": device, "dtype": dtype, "config": config,
        "prompts": hashlib.sha256(repr((prompts.pairs, prompts.controls)).encode()).hexdigest(),
        "methods": list(methods), "hypotheses": sorted(hypotheses),
    }, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(key: str, root: Path | None) -> Path:
    return cache_root(root) / "twin-results" / f"{key}.pickle"


def load(key: str, root: Path | None = None) -> KeptTwin | None:
    """The kept twin under ``key``, or None when there is none or it cannot be read."""
    path = _path(key, root)
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            kept = pickle.load(fh)
    except Exception:  # truncated, or written by code that no longer unpickles: measure again
        return None
    return kept if isinstance(kept, KeptTwin) else None


def store(key: str, kept: KeptTwin, root: Path | None = None) -> None:
    """Keep ``kept`` under ``key``, atomically."""
    with atomic_write(_path(key, root)) as fh:
        pickle.dump(kept, fh, protocol=pickle.HIGHEST_PROTOCOL)
