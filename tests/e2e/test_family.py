"""The organism family built for real (minutes on a CPU): each member to its plan, with its measured
truth, its activation truth read as the suite reads it, its planted blocks near-silent on the other
task, reloadable with its accuracy; rebuilt bit-identically; an interrupted build leaves nothing a
later run trusts."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from circuitgate import CircuitgateError
from circuitgate.organism import (
    VARIANTS,
    build,
    ensure_built,
    is_organism_dir,
    load_tokenizer,
    read_info,
    recipe_of,
)
from circuitgate.organism import groundtruth, train
from circuitgate.organism.builder import PINNED_ENV, organism_dir
from circuitgate.organism.plan import PLANS

from organisms import RECIPE, SHAPE, pair_items

torch.set_num_threads(1)


pytestmark = pytest.mark.slow


def _sha(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_family_builds_to_its_plan(organism_family, name):
    path = organism_family[name]
    recipe = recipe_of(name)
    assert path == organism_dir(recipe) and is_organism_dir(path)
    info = read_info(path)
    assert info["name"] == name and info["recipe"] == recipe.to_dict() and info["recipe_hash"] == recipe.hash()
    acc = info["accuracy"]
    assert acc["recall"] >= recipe.min_recall and acc["reasoning"] >= recipe.min_reasoning
    for task, sides in acc["controls"].items():
        assert set(sides) == {"a", "b"} and min(sides.values()) >= getattr(recipe, f"min_{task}"), task
    truth = info["ground_truth"]
    plan = PLANS[recipe.plan]
    planned = plan.classes(**SHAPE)
    assert info["plan"]["classes"] == planned and sorted(truth["targets"]) == sorted(planned)
    for kind in ("zero", "mean", "resample"):
        assert {t: row["class"] for t, row in truth["ablations"][kind].items()} == planned, kind
        assert groundtruth.classes(truth, ablation=kind) == planned
    # no one-layer shortcut: reasoning needs attention in layers 0 and 2
    assert truth["attention_layers"] == ([0, 2] if recipe.plan == "planted" else truth["attention_layers"])
    assert len(truth["attention_layers"]) >= 2
    for h, units in plan.activation.items():
        assert {u: e["class"] for u, e in info["activation_truth"][h].items()} == dict(units)


def test_the_activation_truth_reads_what_the_suite_reads(organism_family):
    """The build's activation truth (plain HF forward with hooks) and circuitgate's extraction (nnsight)
    give the same last-token activations: the truth is about the numbers H1-H3 test."""
    import numpy as np

    from circuitgate.extract import extract
    from circuitgate.models import load_model, resolve

    path = organism_family["organism"]
    loaded = load_model(resolve(str(path)), "cpu", "float32", progress=False)
    prompts = [p for p, _ in pair_items("recall")[:6]] + [p for p, _ in pair_items("reasoning")[:6]]
    ours = groundtruth.activations(loaded.hf, load_tokenizer(path), prompts)
    theirs = extract(loaded, prompts, batch_size=4, progress=False)
    for name in ("resid", "attn", "neurons", "gate"):
        np.testing.assert_allclose(getattr(ours, name), getattr(theirs, name), atol=1e-5, err_msg=name)
    assert list(ours.lengths) == list(theirs.lengths)


def test_planted_blocks_are_near_silent_on_the_other_task(organism_family):
    """Each planted block's neurons (the down_proj input, what H3 tests) on the other task's prompts are
    at most a twentieth as active as on their own (measured: 1/40-1/45), and the activation truth finds
    nearly all of them in their planted direction and almost none of the layer's neurons the other way.
    The bars come from the spread over builds, not from one: recipe seeds 0-5 (one thread; seed 0 also on
    two, identical) found 114-123 of layer 1's 128 (mean 118, sd 3.4; another machine built seed 0 to
    116), 127-128 of layers 2 and 3, and 0-1 neurons the other way; a bar at 0.8 x 128 = 102.4 sits
    4.6 sd below that mean, and 3 the other way is three times the most seen."""
    path = organism_family["organism"]
    info = read_info(path)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager").eval()
    acts = {task: groundtruth.activations(model, load_tokenizer(path), [p for p, _ in pair_items(task)]).neurons
            for task in ("recall", "reasoning")}
    for block in PLANS["planted"].blocks:
        if block.role == "shared":
            continue
        other = "recall" if block.role == "reasoning" else "reasoning"
        part = slice(block.index * 128, (block.index + 1) * 128)
        own_level = np.abs(acts[block.role][:, block.layer, part]).mean()
        other_level = np.abs(acts[other][:, block.layer, part]).mean()
        assert other_level <= own_level / 20, (block, own_level, other_level)
        h3 = info["activation_truth"]["H3"][f"L{block.layer:02d}"]
        assert h3["class"] == block.role and h3["planted_in_direction"] >= 0.8 * h3["planted"], h3
        assert h3[f"n_{other}"] <= 3, h3


def test_saved_model_reloads_with_its_accuracy(organism_family):
    from transformers import AutoModelForCausalLM

    path = organism_family["organism"]
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    tok = load_tokenizer(path)
    clean = read_info(path)["ground_truth"]["clean"]
    assert train.correct(model, tok, pair_items("recall")).float().mean().item() == clean["recall"]
    assert train.correct(model, tok, pair_items("reasoning")).float().mean().item() == clean["reasoning"]


def test_ensure_built_reuses_and_a_forced_build_replaces_it_whole(organism_family, monkeypatch):
    """A built organism is reused; a forced build trains anew into a temp dir and replaces it. The
    retraining is stood in for by a copy: that training repeats bit for bit is shown, far cheaper, by
    test_training_repeats_bit_for_bit_and_pinned_on_every_instruction_set."""
    import shutil

    import circuitgate.organism.builder as builder

    path = organism_family["organism"]
    before = _sha(path)
    mtime = (path / "organism.json").stat().st_mtime_ns
    assert ensure_built("organism", progress=False) == path
    assert (path / "organism.json").stat().st_mtime_ns == mtime
    monkeypatch.setattr(builder, "build_into", lambda out, *_: shutil.copytree(path, out, dirs_exist_ok=True))
    assert build("organism", force=True, progress=False) == path
    assert _sha(path) == before and is_organism_dir(path)
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name or p.name.endswith("-old")]


def test_interrupted_build_leaves_nothing_trusted(tmp_path, monkeypatch):
    real = train.training_batches

    def interrupted(world, recipe, plan):
        for step, batch in enumerate(real(world, recipe, plan)):
            if step == 3:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(train, "training_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build("organism", cache_root=tmp_path, progress=False)
    target = organism_dir(RECIPE, tmp_path)
    assert not target.exists() and not is_organism_dir(target)
    assert not [p for p in target.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("portable", [False, True])
def test_a_build_whose_truth_is_not_its_plan_fails_with_the_table(monkeypatch, tmp_path, portable):
    """One training step cannot make the plan true: the build names every difference and leaves nothing,
    also when it ran in a portable build's own process (the message crosses back whole)."""
    import circuitgate.organism.builder as builder

    quick = replace(VARIANTS["organism"], steps=1, min_recall=0.0, min_reasoning=0.0)
    monkeypatch.setattr(builder, "recipe_of", lambda name: quick)
    with pytest.raises(CircuitgateError) as err:
        build("organism", cache_root=tmp_path, progress=False, portable=portable)
    msg = str(err.value)
    assert msg.startswith("organism organism: the measured ground truth is not the plan (")
    assert re.search(r"\n  zero +head-L1H0 +planned recall +measured \w+", msg)
    assert "reasoning needs attention in" in msg
    target = organism_dir(quick, tmp_path, portable)
    assert not target.exists() and not [p for p in target.parent.iterdir() if ".tmp-" in p.name]


_TRAIN = """
import hashlib, sys
from dataclasses import replace
from circuitgate.organism import train
from circuitgate.organism.recipe import VARIANTS
from circuitgate.organism.tokenizer import build_tokenizer
from circuitgate.organism.world import world_for
recipe = replace(VARIANTS["organism"], steps=10)
world = world_for(recipe)
model, _ = train.train_model(recipe, world, build_tokenizer(world), progress=False)
print(hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters())).hexdigest())
"""


def test_training_repeats_bit_for_bit_and_pinned_on_every_instruction_set():
    """Training repeats bit for bit on one machine, and a portable build's environment (PINNED_ENV) makes
    it independent of the CPU's vector instructions: 10 steps trained with MKL held to its AVX2 or SSE4.2
    code paths give the weights this CPU's own path gives. (Unpinned, ATen's AVX2 and AVX-512 kernels
    gave other weights within 5 steps: docs/organism.md, "Reproducible builds".)"""
    import os
    import subprocess
    import sys

    def trained(env: dict[str, str]) -> str:
        done = subprocess.run([sys.executable, "-c", _TRAIN], env={**os.environ, **env}, capture_output=True,
                              text=True, check=True)
        return done.stdout.strip()

    native = trained({})
    assert len(native) == 64 and trained({}) == native
    pinned = trained(PINNED_ENV)
    assert trained({**PINNED_ENV, "MKL_ENABLE_INSTRUCTIONS": "AVX2"}) == pinned
    assert trained({**PINNED_ENV, "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}) == pinned
