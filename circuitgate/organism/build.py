"""Building the organism into its cache directory, lazily and atomically.

Layout: ``<root>/organism/<arch>-<hash12>/`` with the HF model (safetensors), the tokenizer and
``organism.json``, where root is ``$CIRCUITGATE_CACHE`` or ``~/.cache/circuitgate`` and hash12 is the
start of the recipe's hash. A build trains into a hidden temp dir beside the target and renames it into
place only when complete, so an interrupted build leaves nothing a later run trusts; a per-target file
lock keeps two processes from training the same organism twice.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from circuitgate import CircuitgateError
from circuitgate.cache import cache_root
from circuitgate.organism import groundtruth, train
from circuitgate.organism.recipe import Recipe
from circuitgate.organism.tokenizer import build_tokenizer
from circuitgate.organism.world import organism_prompt_set, world_for

try:
    import fcntl
except ImportError:  # no flock (Windows): concurrent builders still end safely through the rename race
    fcntl = None

log = logging.getLogger(__name__)

SCHEMA = 2  # 2: per-item correctness in the ground truth, classes by the H5 rule
INFO_FILE = "organism.json"
_REQUIRED_KEYS = ("schema", "arch", "recipe", "recipe_hash", "accuracy", "ground_truth")


def organism_dir(recipe: Recipe, root: Path | None = None) -> Path:
    return cache_root(root) / "organism" / f"{recipe.arch}-{recipe.hash()[:12]}"


def is_organism_dir(path: str | Path) -> bool:
    """True only for a dir holding a complete organism.json (written last, so the build finished)."""
    try:
        info = json.loads((Path(path) / INFO_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("schema") == SCHEMA and all(k in info for k in _REQUIRED_KEYS)


def read_info(path: str | Path) -> dict:
    if not is_organism_dir(path):
        raise CircuitgateError(f"{path} is not a built organism (no complete {INFO_FILE}); run `circuitgate organism build`")
    return json.loads((Path(path) / INFO_FILE).read_text())


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


def _items(sides: list[dict]) -> list[train.Item]:
    return [(s["prompt"], s["answer"]) for s in sides]


def _accuracy(model, tokenizer, sides: list[dict]) -> float:
    return train.correct(model, tokenizer, _items(sides)).float().mean().item()


def _build_into(out: Path, recipe: Recipe, progress: bool) -> None:
    world = world_for(recipe)
    tokenizer = build_tokenizer(world)
    model, seconds = train.train_model(recipe, world, tokenizer, progress=progress)
    prompt_set = organism_prompt_set(world)
    pairs = prompt_set["pairs"]
    recall = _items([p["recall"] for p in pairs])
    reasoning = _items([p["reasoning"] for p in pairs])
    truth = groundtruth.measure(model, tokenizer, recall, reasoning)
    clean = truth["clean"]
    # Both sides of the null controls must be answered too, or a control compares a skill with noise.
    controls = {
        task: {side: _accuracy(model, tokenizer, [c[side] for c in prompt_set["controls"] if c["task"] == task])
               for side in ("a", "b")}
        for task in ("recall", "reasoning")
    }
    floors = {"recall": recipe.min_recall, "reasoning": recipe.min_reasoning}
    low = [f"{task} {acc:.2f}" for task, acc in clean.items() if acc < floors[task]]
    low += [f"{task} control {side} {acc:.2f}" for task, sides in controls.items() for side, acc in sides.items()
            if acc < floors[task]]
    if low:
        raise CircuitgateError(
            f"organism {recipe.arch} trained below its accuracy floor (recall {recipe.min_recall}, held-out "
            f"reasoning {recipe.min_reasoning}): {', '.join(low)}"
        )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    info = {
        "schema": SCHEMA,
        "arch": recipe.arch,
        "recipe": recipe.to_dict(),
        "recipe_hash": recipe.hash(),
        "accuracy": {**clean, "controls": controls, "train_steps": recipe.steps, "train_seconds": round(seconds, 2)},
        "ground_truth": truth,
    }
    # Written last: its presence marks the dir complete.
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def build(arch: str = "qwen2", cache_root: Path | None = None, force: bool = False, progress: bool = True) -> Path:
    """Build the organism for ``arch`` (unless already built and not ``force``) and return its dir."""
    recipe = Recipe(arch=arch)
    target = organism_dir(recipe, cache_root)
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
            log.info("building organism %s into %s", arch, target)
            _build_into(tmp, recipe, progress)
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


def ensure_built(arch: str = "qwen2", cache_root: Path | None = None, progress: bool = True) -> Path:
    """The built organism's dir, building it first if it is missing."""
    return build(arch, cache_root=cache_root, force=False, progress=progress)
