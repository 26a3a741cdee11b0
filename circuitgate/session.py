"""One run of the suite: settings -> model, prompts, activations -> hypothesis results -> documents.

Everything is computed lazily and once, so ``-k H2`` computes only what H2 needs. The pytest plugin
holds one ``Run`` per session; the same object works without pytest.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from dataclasses import asdict, dataclass
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from circuitgate import CircuitgateError
from circuitgate.activations import Activations
from circuitgate.config import Config, load_config
from circuitgate.expectations import Expectations, from_file, from_ground_truth
from circuitgate.models import LoadedModel, ModelSpec, Shape, load_model, model_info, resolve
from circuitgate.prompts import PromptSet, load_prompt_set
from circuitgate.results import HypothesisResult
from circuitgate.verdicts import SCHEMA, hypothesis_entry, jsonable

METHODS = ("seed",)


def _analyses(method: str) -> dict[str, Callable[[Activations, Activations, Config], HypothesisResult]]:
    if method == "seed":
        from circuitgate.methods import seed

        return {
            "H1": lambda rc, rs, cfg: seed.analyse_h1(rc, rs, cfg.h1),
            "H2": lambda rc, rs, cfg: seed.analyse_h2(rc, rs, cfg.h2),
        }
    raise CircuitgateError(f"unknown method {method!r} (known: {', '.join(METHODS)})")


@dataclass(frozen=True)
class Settings:
    """The command-line options of a run (DESIGN.md, Command-line contract)."""

    model: str | None = None
    method: str = "seed"
    prompts: str | None = None
    config: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: str = "auto"
    report_dir: str | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CircuitgateError(f"unknown method {self.method!r} (known: {', '.join(METHODS)})")
        from circuitgate.models.loading import resolve_device

        resolve_device(self.device)  # --device cuda on a machine without one: say so before any work
        if self.batch_size != "auto" and not (str(self.batch_size).isdigit() and int(self.batch_size) >= 1):
            raise CircuitgateError(f"--batch-size must be a positive integer or auto, got {self.batch_size!r}")


class Run:
    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.settings = settings
        self.root = root or Path.cwd()
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self._results: dict[str, HypothesisResult] = {}

    # -- what to run on ------------------------------------------------------------------------
    @cached_property
    def spec(self) -> ModelSpec:
        return resolve(self.settings.model)

    @cached_property
    def config(self) -> Config:
        return load_config(self.settings.config)

    @cached_property
    def prompt_set(self) -> PromptSet:
        name = self.settings.prompts or self.spec.prompts
        if name is None:
            name = "organism" if self.spec.expectations == "organism" else "geography-seed"
        return load_prompt_set(name)

    @cached_property
    def report_dir(self) -> Path:
        if self.settings.report_dir:
            return Path(self.settings.report_dir)
        stamp = self.started.strftime("%Y%m%d-%H%M%S")
        return self.root / "reports" / f"{self.spec.slug}-{stamp}"

    @cached_property
    def model_dir(self) -> Path:
        from circuitgate.models.loading import model_directory

        return model_directory(self.spec)

    @cached_property
    def shape(self) -> Shape:
        from transformers import AutoConfig

        return Shape.from_config(AutoConfig.from_pretrained(self.model_dir))

    @cached_property
    def expectations(self) -> Expectations:
        source = self.spec.expectations
        if source == "organism":
            from circuitgate.organism import read_info

            return from_ground_truth(read_info(self.model_dir), self.shape, self.config)
        if source:
            return from_file(source)
        return Expectations(source="none")

    # -- computing -----------------------------------------------------------------------------
    @cached_property
    def loaded(self) -> LoadedModel:
        return load_model(self.spec, self.settings.device, self.settings.dtype)

    @cached_property
    def activations(self) -> tuple[Activations, Activations]:
        """(recall, reasoning) last-token activations; row i of each is pair i."""
        from circuitgate.extract import batch_size_for, cached_extract

        bs = batch_size_for(self.settings.batch_size, self.loaded.device)
        ps = self.prompt_set
        return tuple(  # type: ignore[return-value]
            cached_extract(self.loaded, ps.prompts(side), bs, self.settings.progress, desc=f"{side} activations")
            for side in ("recall", "reasoning")
        )

    def result(self, hypothesis: str) -> HypothesisResult:
        if hypothesis not in self._results:
            analyse = _analyses(self.settings.method)[hypothesis]
            recall, reasoning = self.activations
            self._results[hypothesis] = analyse(recall, reasoning, self.config)
        return self._results[hypothesis]

    @property
    def results(self) -> dict[str, HypothesisResult]:
        return dict(sorted(self._results.items()))

    def expected_verdict(self, hypothesis: str) -> str:
        return self.expectations.verdict(hypothesis, self.config)

    def expected_class(self, hypothesis: str, component: str) -> str | None:
        return self.expectations.components.get(hypothesis, {}).get(component)

    # -- documents -----------------------------------------------------------------------------
    def verdicts_document(self) -> dict[str, Any]:
        """verdicts.json: deterministic for a given model, prompts, method and config (no times)."""
        return {
            "schema": SCHEMA,
            "model": model_info(self.loaded),
            "method": self.settings.method,
            "prompts": {"name": self.prompt_set.name, "sha256": self.prompt_set.sha256,
                        "n_pairs": len(self.prompt_set.pairs)},
            "expectations": self.expectations.source,
            "config": jsonable(self.config.to_dict()),
            "hypotheses": {
                h: hypothesis_entry(r, self.expected_verdict(h), self.expectations.components.get(h, {}))
                for h, r in self.results.items()
            },
        }

    def manifest(self, finished: _dt.datetime | None = None) -> dict[str, Any]:
        packages = ("circuitgate", "torch", "transformers", "nnsight", "numpy", "scipy", "statsmodels", "pytest")
        versions = {}
        for name in packages:
            try:
                versions[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                versions[name] = None
        loaded = self.loaded
        return jsonable({
            "schema": SCHEMA,
            "model": model_info(loaded),
            "model_dir": str(self.model_dir),
            "prompts": {"name": self.prompt_set.name, "sha256": self.prompt_set.sha256, "source": self.prompt_set.source},
            "method": self.settings.method,
            "config": self.config.to_dict(),
            "config_file": self.settings.config,
            "seed": self.config.h1.seed,
            "settings": asdict(self.settings),
            "device": loaded.device,
            "dtype": loaded.dtype,
            "hypotheses_run": list(self.results),
            "started": self.started.isoformat(timespec="seconds"),
            "finished": (finished or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "packages": versions,
        })
