"""Model aliases (registry.yaml) -> what to load: the built-in organism, weights a pip package ships, a
hub repo id or a local dir."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

import yaml

from circuitgate import CircuitgateError
from circuitgate.models.packaged import PackagedWeights


@dataclass(frozen=True)
class ModelSpec:
    """A resolved ``--model`` value. Exactly one of ``builtin``, ``packaged``, ``hub``, ``path`` is set."""

    name: str  # what the user typed (alias, hub id or path): names the report directory
    builtin: str | None = None  # an organism of the family: "organism" | "organism-llama" | "organism-null"
    hub: str | None = None
    path: Path | None = None
    packaged: PackagedWeights | None = None  # a GGUF file in a pip package, converted once into the cache
    expectations: str | None = None
    prompts: str | None = None  # default prompt set for this model
    twin: str | None = None  # the model of another family H4 compares with by default
    # Settings this model runs with unless the --config file sets them (a mapping like the config file).
    config: Mapping[str, Any] | None = field(default=None, hash=False)
    description: str = ""

    @property
    def slug(self) -> str:
        """A file-name-safe form of the name, for report directories."""
        return "".join(c if c.isalnum() or c in "-._" else "-" for c in self.name).strip("-.") or "model"


@cache
def _registry() -> dict:
    text = resources.files("circuitgate.models").joinpath("registry.yaml").read_text()
    return yaml.safe_load(text)


def aliases() -> dict[str, ModelSpec]:
    """All registry aliases, in file order."""
    return {name: _spec(name, entry) for name, entry in _registry()["models"].items()}


def default_alias() -> str:
    return _registry()["default"]


def cpu_config() -> Mapping[str, Any]:
    """The settings a model without a registry ``config`` runs with on the CPU when its default H5 would
    screen (registry.yaml's ``cpu_config``: smollm2's measured CPU-sized H5; ``session.Run.config``)."""
    return _registry()["cpu_config"]


def _spec(name: str, entry: dict) -> ModelSpec:
    return ModelSpec(
        name=name,
        builtin=entry.get("builtin"),
        hub=entry.get("hub"),
        packaged=PackagedWeights(**entry["packaged"]) if entry.get("packaged") else None,
        expectations=entry.get("expectations"),
        prompts=entry.get("prompts"),
        twin=entry.get("twin"),
        config=entry.get("config"),
        description=entry.get("description", ""),
    )


def resolve(name: str | None) -> ModelSpec:
    """An alias, a local directory or a hub id (``owner/name``) -> ModelSpec.

    A local directory wins over a hub id of the same spelling, as in transformers' from_pretrained.
    """
    name = name or default_alias()
    known = aliases()
    if name in known:
        return known[name]
    path = Path(name).expanduser()
    if path.is_dir():
        from circuitgate.truth import is_organism_dir

        return ModelSpec(
            name=path.name or name,
            path=path.resolve(),
            expectations="organism" if is_organism_dir(path) else None,
        )
    if name.count("/") == 1 and not name.startswith((".", "/", "~")) and all(name.split("/")):
        return ModelSpec(name=name, hub=name)
    raise CircuitgateError(
        f"unknown model {name!r}: not a registry alias ({', '.join(known)}), "
        "not a local directory, not a hub id (owner/name)"
    )
