"""Candidate checkpoints to judge a gate by (docs/design.md, "Gating"): a light fine-tune of a model
directory, the harmless change a release most often is, and one that teaches wrong answers, which
breaks a skill. (Zeroing components in the weights is ``organism.perturb``.)

A gate is judged by both of its errors: ``benchmarks/gate_candidates.py`` and the organism's slow test
run a baseline against copies made here and by ``perturb`` and check that the harmless ones pass and
the harmful ones fail, naming what broke.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Sequence

from circuitgate import CircuitgateError

NOTE_FILE = "fine_tuned.json"  # what the copy was trained on, from which weights


def fine_tune(source: Path, out: Path, texts: Sequence[str], *, steps: int, lr: float, seed: int = 0,
              force: bool = False) -> Path:
    """Copy the model directory ``source`` to ``out`` after ``steps`` AdamW steps (float32, on the
    CPU) of next-token loss over every token of ``texts``, one batch of all of them per step.
    Written beside ``out`` and renamed into place: an interrupted run leaves no half-trained model."""
    import torch
    from transformers import AutoModelForCausalLM

    from circuitgate.models.loading import _tokenizer, weights_sha256

    out = Path(out)
    if out.exists() and not force:
        raise CircuitgateError(f"{out} exists; pass force=True to replace it")
    if not texts or steps < 1 or not lr > 0:
        raise CircuitgateError("a fine-tune needs texts, steps >= 1 and lr > 0")
    torch.manual_seed(seed)
    tok = _tokenizer(Path(source))  # as the suite loads it (the organisms' word-level one included)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    model.train()
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    labels = ids.masked_fill(mask == 0, -100)  # right-padded: padding is never a target
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):  # a handful of optimiser steps
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        model.eval()
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / NOTE_FILE).write_text(json.dumps(
            {"source": str(source), "source_sha256": weights_sha256(source, False), "steps": steps, "lr": lr,
             "seed": seed, "n_texts": len(texts), "loss_first": losses[0], "loss_last": losses[-1]}, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
