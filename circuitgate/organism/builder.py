"""Building an organism of the family into its cache directory, lazily and atomically.

The family (docs/organism.md): ``organism`` (Qwen2, planted circuits), ``organism-llama`` (Llama,
planted at the same depths: H4's truth is that they agree) and ``organism-null`` (Qwen2, the same
data, size and training length, every live unit shared: nothing selective).

Layout: ``<root>/organism/<arch>-<plan>-<hash12>/`` with the HF model (safetensors), the tokenizer and
``organism.json``, where root is ``$CIRCUITGATE_CACHE`` or ``~/.cache/circuitgate`` and hash12 is the
start of the recipe's hash. A build trains into a hidden temp dir beside the target and renames it into
place only when complete, so an interrupted build leaves nothing a later run trusts; a per-target file
lock keeps two processes from training the same organism twice. A build whose measured ground truth
is not its plan fails, with the table of what differs, and leaves nothing behind.

A build is bit-identical when rebuilt on the same machine. A portable build (``portable=True``,
``circuitgate organism build --portable``) runs in a process of its own started with ``PINNED_ENV``, so
the same recipe gives the same weights on any x86-64 CPU, at about four times the build time; it is
cached apart, under ``...-portable`` (docs/organism.md, "Reproducible builds").
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from circuitgate import CircuitgateError
from circuitgate.cache import cache_root
from circuitgate.models.adapters import Shape
from circuitgate.models.loading import transformers_bars
from circuitgate.organism import groundtruth, train
from circuitgate.organism.plan import PLANS
from circuitgate.organism.recipe import Recipe, recipe_of
from circuitgate.organism.tokenizer import build_tokenizer
from circuitgate.organism.world import organism_prompt_set, world_for
from circuitgate.truth import INFO_FILE, SCHEMA, is_organism_dir
from circuitgate.vocabulary import CONTROL_SIDES, SKILLS

try:
    import fcntl
except ImportError:  # no flock (Windows): concurrent builders still end safely through the rename race
    fcntl = None

log = logging.getLogger(__name__)

# One numeric code path on every x86-64 CPU: MKL's conditional-numerical-reproducibility branch
# COMPATIBLE (SSE2 without approximate reciprocals, the one branch MKL keeps equal on Intel and
# non-Intel CPUs) and ATen's default kernels (no AVX2/AVX-512 variants, whose vector widths sum in
# another order). Without them the AVX2 and AVX-512 paths of one machine gave different weights within
# 60 training steps; with them, the same hash (docs/organism.md, "Reproducible builds"). Torch reads
# both once per process, before its first computation, so a portable build gets a process of its own.
PINNED_ENV = {"MKL_CBWR": "COMPATIBLE", "ATEN_CPU_CAPABILITY": "default"}


def pinned() -> bool:
    """Whether this process was started with ``PINNED_ENV`` (a portable build's own process is)."""
    return all(os.environ.get(k) == v for k, v in PINNED_ENV.items())

def organism_dir(recipe: Recipe, root: Path | None = None, portable: bool = False) -> Path:
    suffix = "-portable" if portable else ""
    return cache_root(root) / "organism" / f"{recipe.arch}-{recipe.plan}-{recipe.hash()[:12]}{suffix}"


@contextmanager
def _lock(target: Path) -> Iterator[None]:
    if fcntl is None:
        yield
        return
    with open(target.parent / f".{target.name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def _items(sides: list[dict]) -> list[train.ItemPair]:
    return [(s["prompt"], s["answer"]) for s in sides]


def _accuracy(model, tokenizer, sides: list[dict]) -> float:
    return train.correct(model, tokenizer, _items(sides)).float().mean().item()


def _table(name: str, problems: list[str]) -> str:
    return (f"organism {name}: the measured ground truth is not the plan ({len(problems)} difference(s)):\n  "
            + "\n  ".join(problems))


def build_into(out: Path, name: str, recipe: Recipe, progress: bool, portable: bool = False) -> None:
    """Train ``recipe`` and write the organism into ``out``: here, unless ``portable`` and this process
    is not pinned; then in a pinned child process (``circuitgate.organism.pinned``), whose output and
    progress show as they come and whose one-line error, if any, is raised here."""
    if not portable or pinned():
        _build_into(out, name, recipe, progress, portable)
        return
    error = out / ".build-error"
    cmd = [sys.executable, "-m", "circuitgate.organism.pinned", name, json.dumps(recipe.to_dict()), str(out), str(error)]
    done = subprocess.run(cmd + ([] if progress else ["--quiet"]), env={**os.environ, **PINNED_ENV})
    if error.is_file():
        raise CircuitgateError(error.read_text())
    if done.returncode:
        raise CircuitgateError(f"organism {name}: its build process failed (exit {done.returncode}); its output is above")


def _build_into(out: Path, name: str, recipe: Recipe, progress: bool, portable: bool) -> None:
    started = time.perf_counter()
    plan = PLANS[recipe.plan]
    world = world_for(recipe)
    tokenizer = build_tokenizer(world)
    model, seconds = train.train_model(recipe, world, tokenizer, progress=progress)
    prompt_set = organism_prompt_set(world)
    pairs = prompt_set["pairs"]
    recall = _items([p["recall"] for p in pairs])
    reasoning = _items([p["reasoning"] for p in pairs])
    shape = Shape.from_config(model.config)
    targets = groundtruth.targets_of(shape, recipe.block_size, plan.block_layers())
    truth = groundtruth.measure_causal(model, tokenizer, recall, reasoning, targets)
    activation = groundtruth.measure_activation(model, tokenizer, recall, reasoning, plan, recipe.block_size)
    clean = truth["clean"]
    # Both sides of the null controls must be answered too, or a control compares a skill with noise.
    controls = {
        task: {side: _accuracy(model, tokenizer, [c[side] for c in prompt_set["controls"] if c["task"] == task])
               for side in CONTROL_SIDES}
        for task in SKILLS
    }
    floors = {"recall": recipe.min_recall, "reasoning": recipe.min_reasoning}
    low = [f"{task} {acc:.2f}" for task, acc in clean.items() if acc < floors[task]]
    low += [f"{task} control {side} {acc:.2f}" for task, sides in controls.items() for side, acc in sides.items()
            if acc < floors[task]]
    if low:
        raise CircuitgateError(
            f"organism {name} trained below its accuracy floor (recall {recipe.min_recall}, held-out "
            f"reasoning {recipe.min_reasoning}): {', '.join(low)}"
        )
    planned = plan.classes(shape.n_layers, shape.n_heads, recipe.block_size, shape.ffn)
    problems = groundtruth.check(truth, activation, plan, planned, shape.n_layers)
    if problems:
        raise CircuitgateError(_table(name, problems))
    with transformers_bars(progress):
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "schema": SCHEMA,
        "name": name,
        "arch": recipe.arch,
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.hash(),
        "portable": portable,
        "plan": {"name": plan.name, "units": [{"id": u.id, "role": u.role} for u in plan.units],
                 "classes": planned, "activation": {h: dict(u) for h, u in plan.activation.items()},
                 "blocks": {b.id: [b.index * recipe.block_size, (b.index + 1) * recipe.block_size]
                            for b in plan.blocks},
                 "block_size": recipe.block_size},
        "accuracy": {**clean, "controls": controls, "train_steps": recipe.steps, "train_seconds": round(seconds, 2),
                     "build_seconds": round(time.perf_counter() - started, 2)},
        "ground_truth": {**truth, "attention_layers": groundtruth.attention_layers(truth, shape.n_layers)},
        "activation_truth": activation,
    }
    # Written last: its presence marks the dir complete.
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def build(name: str = "organism", cache_root: Path | None = None, force: bool = False, progress: bool = True,
          portable: bool = False) -> Path:
    """Build the organism ``name`` of the family (unless already built and not ``force``); its dir.
    ``portable``: the weights any x86-64 CPU builds (``PINNED_ENV``), in a directory of their own."""
    recipe = recipe_of(name)
    target = organism_dir(recipe, cache_root, portable)
    if not force and is_organism_dir(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        # Another process may have finished it while we waited for the lock.
        if not force and is_organism_dir(target):
            return target
        # Under the lock no one else builds this target: leftovers of killed builds can go.
        for stale in target.parent.glob(_tmp_prefix(target) + "*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(target), dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the installed organism is an ordinary shared dir
        try:
            log.info("building organism %s into %s", name, target)
            build_into(tmp, name, recipe, progress, portable)
            _install(tmp, target, force)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _install(tmp: Path, target: Path, force: bool) -> None:
    if target.exists():
        if is_organism_dir(target) and not force:
            return  # a concurrent builder (no flock) finished first: keep theirs; the caller discards ours
        # Replacing (force, or an untrusted dir): move it aside under a temp name a later build cleans up.
        aside = target.with_name(tmp.name + "-old")
        os.replace(target, aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(tmp, target)
    except OSError:
        if not is_organism_dir(target):  # lost a rename race to a complete build: fine
            raise


def ensure_built(name: str = "organism", cache_root: Path | None = None, progress: bool = True) -> Path:
    """The built organism's dir, building it first if it is missing."""
    return build(name, cache_root=cache_root, force=False, progress=progress)
