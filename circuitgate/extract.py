"""Activations of a prompt set, read at the last prompt token, batched, and cached on disk.

Batches are left-padded, so position -1 of every row is the last prompt token and pad positions are
never read: each head's last query row is right-aligned by construction, and the pad keys it holds
are exactly 0 (masked). Only last-token rows leave the trace, not full [B, T, ...] tensors (docs/design.md,
Scale).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import nnsight
import numpy as np
import torch
from circuitgate.progress import progress_bar

from circuitgate import CircuitgateError
from circuitgate.activations import Activations
from circuitgate.cache import atomic_write, cache_root
from circuitgate.models.loading import LoadedModel

# Bump when what is extracted changes, so stale caches are not trusted.
EXTRACT_VERSION = 1
SITES = ("resid", "attn", "neurons", "gate")


def batch_size_for(requested: str | int, device: str) -> int:
    if requested == "auto":
        return 32 if device == "cuda" else 16
    n = int(requested)
    if n < 1:
        raise CircuitgateError(f"--batch-size must be >= 1 or auto, got {requested}")
    return n


def tokenize(loaded: LoadedModel, texts: Sequence[str]) -> list[list[int]]:
    # The tokenizer's own special tokens (a BOS for Llama 3 and the organism), as the original
    # research tokenised its raw strings.
    ids = loaded.tokenizer(list(texts))["input_ids"]
    for text, row in zip(texts, ids):
        if not row:
            raise CircuitgateError(f"prompt tokenises to nothing: {text!r}")
    return ids


def left_pad(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of token rows padded on the left: position -1 is every row's last token."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r):] = torch.tensor(r)
        mask[i, width - len(r):] = 1
    return ids, mask


@torch.no_grad()
def _trace_batch(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, np.ndarray]:
    m, ad, n_layers = loaded.model, loaded.adapter, loaded.shape.n_layers
    inputs = {"input_ids": ids.to(loaded.device), "attention_mask": mask.to(loaded.device)}
    # Written for a remote trace too (docs/nnsight.md, Remote execution): only the block's saved
    # variables leave it, by name, so the dict is made and saved inside, not filled from outside; each
    # row is a copy, as a view would carry its whole [B, T, ...] storage. Rows may come back requiring
    # grad (the server's grad mode, not this no_grad): they are stacked under this no_grad.
    with loaded.trace(inputs):
        saved = nnsight.save({s: [] for s in SITES})
        # Execution order within a layer: attention, gate_proj, down_proj input, layer output.
        for i in range(n_layers):
            saved["attn"].append(ad.attention(m, i)[1][:, :, -1, :].clone())
            saved["gate"].append(ad.gate_pre(m, i)[:, -1, :].clone())
            saved["neurons"].append(ad.neurons(m, i)[:, -1, :].clone())
            saved["resid"].append(ad.residual(m, i)[:, -1, :].clone())
    return {s: torch.stack(v, dim=1).float().cpu().numpy() for s, v in saved.items()}


def extract(
    loaded: LoadedModel, texts: Sequence[str], batch_size: int = 16, progress: bool = True, desc: str = "extract"
) -> Activations:
    """Last-token activations of ``texts`` (one row each, in order)."""
    if not texts:
        raise CircuitgateError("no prompts to extract activations for")
    rows = tokenize(loaded, texts)
    lengths = np.array([len(r) for r in rows])
    width = int(lengths.max())
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SITES}
    pad = loaded.tokenizer.pad_token_id
    starts = range(0, len(rows), batch_size)
    for start in progress_bar(starts, desc=desc, unit="batch", enabled=progress, leave=False):
        ids, mask = left_pad(rows[start:start + batch_size], pad)
        out = _trace_batch(loaded, ids, mask)
        # Right-align attention rows across batches of different widths: pad keys on the left are 0.
        attn = out["attn"]
        out["attn"] = np.pad(attn, [(0, 0)] * 3 + [(width - attn.shape[-1], 0)])
        for s in SITES:
            parts[s].append(out[s])
    arrays = {s: np.concatenate(parts[s]) for s in SITES}
    _check_finite(arrays, texts)
    return Activations(lengths=lengths, **arrays)


def _check_finite(arrays: dict[str, np.ndarray], texts: Sequence[str]) -> None:
    for site, a in arrays.items():
        bad = ~np.isfinite(a.reshape(a.shape[0], a.shape[1], -1)).all(axis=2)
        if bad.any():
            p, layer = map(int, np.argwhere(bad)[0])
            raise CircuitgateError(
                f"non-finite {site} activations at layer {layer} for prompt {texts[p]!r} "
                f"({int(bad.sum())} prompt-layer cells); try --dtype float32"
            )


def cache_key(loaded: LoadedModel, texts: Sequence[str]) -> str:
    blob = json.dumps({
        "version": EXTRACT_VERSION,
        "weights": loaded.sha256,
        "dtype": loaded.dtype,
        "prompts": hashlib.sha256("\x00".join(texts).encode()).hexdigest(),
        "sites": SITES,
    })
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cached_extract(
    loaded: LoadedModel, texts: Sequence[str], batch_size: int = 16, progress: bool = True,
    desc: str = "extract", root: Path | None = None,
) -> Activations:
    """``extract`` behind an on-disk cache keyed by weights, dtype, prompts and sites.

    Written to a temporary file and renamed into place, so an interrupted run never leaves a file a
    later run would trust; an unreadable cache file is recomputed, not trusted.
    """
    folder = cache_root(root) / "activations"
    path = folder / f"{cache_key(loaded, texts)}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return Activations(**{k: z[k] for k in (*SITES, "lengths")})
        except Exception:  # truncated or foreign file: fall through and recompute
            pass
    acts = extract(loaded, texts, batch_size, progress, desc)
    with atomic_write(path) as fh:
        np.savez(fh, resid=acts.resid, attn=acts.attn, lengths=acts.lengths, neurons=acts.neurons, gate=acts.gate)
    return acts
