"""One run of the suite: settings -> model, prompts, activations -> hypothesis results -> documents.

Everything is computed lazily and once, so ``-k H2`` computes only what H2 needs. The pytest plugin
holds one ``Run`` per session; the same object works without pytest.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
from dataclasses import asdict, dataclass, replace
from functools import cached_property
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from circuitgate import CircuitgateError
from circuitgate.activations import Activations
from circuitgate.config import Config, load_config
from circuitgate.expectations import Expectations, from_file, from_ground_truth
from circuitgate.models import LoadedModel, ModelSpec, Shape, load_model, model_info, resolve
from circuitgate.prompts import PromptSet, builtin_names, load_prompt_set
from circuitgate.results import HypothesisResult
from circuitgate.verdicts import SCHEMA, Expected, from_baseline, hypothesis_entry, jsonable

if TYPE_CHECKING:
    from circuitgate.interventions import PatchResult, SweepResult

# paired: the sound default; seed: the original method, exactly; both: the two side by side.
METHODS = ("paired", "seed", "both")
ANALYSIS_METHODS = ("paired", "seed")


SIDES = ("recall", "reasoning")
# Interventions repeat each prompt batch once per target; this caps the rows of one forward pass.
MAX_ROWS = {"cpu": 2048, "cuda": 512}


Controls = Mapping[str, tuple[Activations, Activations]]


def analyse_activations(method: str, hypothesis: str, recall: Activations, reasoning: Activations, config: Config,
                        controls: Controls, device: str) -> HypothesisResult:
    """An activation-based hypothesis (H1-H3) by one method. H4 and H5 build on these: H5 ablates
    H3's neurons, H4 compares H1, H2 and H5 profiles, so they too follow the method."""
    if method == "seed":  # the original had no controls: it never saw them
        from circuitgate.methods import seed

        analyses: dict[str, Callable[[], HypothesisResult]] = {
            "H1": lambda: seed.analyse_h1(recall, reasoning, config.h1),
            "H2": lambda: seed.analyse_h2(recall, reasoning, config.h2),
            "H3": lambda: seed.analyse_h3(recall, reasoning, config.h3, device=device),
        }
        return analyses[hypothesis]()
    if method == "paired":
        from circuitgate.methods import paired

        return paired.analyse(hypothesis, recall, reasoning, config, controls, device=device)
    raise CircuitgateError(f"unknown method {method!r} (known: {', '.join(ANALYSIS_METHODS)})")


@dataclass(frozen=True)
class Settings:
    """The command-line options of a run (docs/design.md, Command-line contract)."""

    model: str | None = None
    method: str = "paired"
    prompts: str | None = None
    config: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: str = "auto"
    report_dir: str | None = None
    h4_model: str | None = None  # the second model H4 compares with; default: the model's registry twin
    baseline: str | None = None  # a previous verdicts.json: the expectations
    progress: bool = True

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CircuitgateError(f"unknown method {self.method!r} (known: {', '.join(METHODS)})")
        from circuitgate.models.loading import resolve_device

        resolve_device(self.device)  # --device cuda on a machine without one: say so before any work
        if self.batch_size != "auto" and not (str(self.batch_size).isdigit() and int(self.batch_size) >= 1):
            raise CircuitgateError(f"--batch-size must be a positive integer or auto, got {self.batch_size!r}")

    @property
    def methods(self) -> tuple[str, ...]:
        """The analysis methods this run computes; the first is the one verdicts.json leads with."""
        return ANALYSIS_METHODS if self.method == "both" else (self.method,)


class Run:
    def __init__(self, settings: Settings, root: Path | None = None) -> None:
        self.settings = settings
        self.root = root or Path.cwd()
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self._results: dict[tuple[str, str], HypothesisResult] = {}  # (method, hypothesis) -> result
        self._twin: Run | None = None
        # Hypotheses a selected test asked for; the rest were computed as inputs (H3 for H5's neurons).
        self.tested: set[str] = set()

    # -- what to run on ------------------------------------------------------------------------
    @cached_property
    def spec(self) -> ModelSpec:
        return resolve(self.settings.model)

    @cached_property
    def config(self) -> Config:
        return load_config(self.settings.config)

    @cached_property
    def prompt_set(self) -> PromptSet:
        name = self.settings.prompts or self._baseline_prompts or self.spec.prompts
        if name is None:
            # The paper's own 30 prompts replicate it under --method seed; the sound method needs the
            # length-matched set with controls, and so does the side-by-side comparison.
            name = "organism" if self.spec.expectations == "organism" else (
                "geography-seed" if self.settings.method == "seed" else "geography")
        return load_prompt_set(name)

    @cached_property
    def _baseline_doc(self) -> dict[str, Any] | None:
        if not self.settings.baseline:
            return None
        from circuitgate.compare import load_document

        try:
            return load_document(self.settings.baseline)
        except CircuitgateError as e:
            raise CircuitgateError(f"--baseline: {e}") from None

    @property
    def _baseline_prompts(self) -> str | None:
        """With no --prompts, a baseline's run uses the baseline's prompt set (it must, to compare)."""
        doc = self._baseline_doc
        if doc is None:
            return None
        name = doc["prompts"].get("name")
        if name not in builtin_names():
            raise CircuitgateError(f"--baseline {self.settings.baseline} was made with the prompt set {name!r}, "
                                   f"which is not built in: pass its file with --prompts")
        return name

    @cached_property
    def baseline(self) -> dict[str, Any] | None:
        """The baseline verdicts.json, refused (saying why) when it was made with another schema,
        method or prompt set: its verdicts would not be this run's to regress from."""
        doc = self._baseline_doc
        if doc is None:
            return None
        from circuitgate.compare import incompatibilities

        ps = self.prompt_set
        mine = {"schema": SCHEMA, "method": self.settings.method, "prompts": {"name": ps.name, "sha256": ps.sha256}}
        problems = incompatibilities(doc, mine, "baseline", "this run")
        if problems:
            raise CircuitgateError(f"--baseline {self.settings.baseline} was made with another "
                                   + "; another ".join(problems))
        return doc

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

    @cached_property
    def twin_spec(self) -> ModelSpec | None:
        """The model H4 compares with: ``--h4-model``, else the registry twin, else none."""
        name = self._twin_name
        return resolve(name) if name else None

    @property
    def _twin_name(self) -> str | None:
        # As typed, not the spec's name: a local directory's spec is named by its last part only.
        return self.settings.h4_model or self.spec.twin

    @property
    def twin(self) -> "Run":
        """The second model's run (same prompts, method, config and device), made on first use."""
        if self.twin_spec is None:
            raise CircuitgateError(f"H4 needs a second model: {self.spec.name} has no registry twin; pass --h4-model")
        if self._twin is None:
            prompts = self.settings.prompts or self.prompt_set.name
            self._twin = Run(replace(self.settings, model=self._twin_name, prompts=prompts, h4_model=None,
                                     report_dir=str(self.report_dir)), self.root)
        return self._twin

    def _organism_pair(self) -> bool:
        """Both H4 models are organisms: H4's expectations come from their two ground truths."""
        twin = self.twin_spec
        return self.spec.expectations == "organism" and twin is not None and (
            twin.builtin is not None or twin.expectations == "organism")

    def h4_component_ids(self) -> list[str]:
        """The depth bins H4's component tests assert: for two organisms known from their layer counts
        alone, so collecting the tests neither builds nor loads the second model; otherwise those
        the expectations source names."""
        from circuitgate.h4 import depth_id

        if not self._organism_pair():
            return list(self.expectations.components.get("H4", {}))
        if self.twin_spec.builtin:
            from circuitgate.organism.recipe import recipe_of

            twin_layers = recipe_of(self.twin_spec.builtin).n_layers
        else:
            twin_layers = self.twin.shape.n_layers
        return [depth_id(k) for k in range(min(self.shape.n_layers, twin_layers))]

    @cached_property
    def h4_expectations(self) -> tuple[str | None, dict[str, str]]:
        """H4's expected verdict and depth-bin classes: from two organisms' ground truths when both
        models are organisms, else only what the config says."""
        if self._organism_pair():
            from circuitgate.expectations import h4_from_ground_truths
            from circuitgate.organism import read_info

            return h4_from_ground_truths((read_info(self.model_dir), self.shape),
                                         (read_info(self.twin.model_dir), self.twin.shape), self.config)
        return self.expectations.verdicts.get("H4"), dict(self.expectations.components.get("H4", {}))

    # -- computing -----------------------------------------------------------------------------
    @cached_property
    def loaded(self) -> LoadedModel:
        return load_model(self.spec, self.settings.device, self.settings.dtype, self.settings.progress)

    @cached_property
    def activations(self) -> tuple[Activations, Activations]:
        """(recall, reasoning) last-token activations; row i of each is pair i."""
        from circuitgate.extract import cached_extract

        ps = self.prompt_set
        return tuple(  # type: ignore[return-value]
            cached_extract(self.loaded, ps.prompts(side), self.batch_size, self.settings.progress,
                           desc=f"{side} activations")
            for side in ("recall", "reasoning")
        )

    @cached_property
    def control_activations(self) -> dict[str, tuple[Activations, Activations]]:
        """task -> (template a, template b) last-token activations of the prompt set's controls."""
        from circuitgate.extract import cached_extract

        ps = self.prompt_set
        return {task: tuple(cached_extract(self.loaded, ps.control_prompts(task, side), self.batch_size,  # type: ignore[misc]
                                           self.settings.progress, desc=f"{task} controls {side}")
                            for side in ("a", "b"))
                for task in ps.control_tasks()}

    @property
    def batch_size(self) -> int:
        from circuitgate.extract import batch_size_for

        return batch_size_for(self.settings.batch_size, self.loaded.device)

    def result(self, hypothesis: str, method: str | None = None) -> HypothesisResult:
        """A hypothesis's result by ``method`` (default: the run's first), computed once."""
        method = method or self.settings.methods[0]
        key = (method, hypothesis)
        if key not in self._results:
            if hypothesis == "H4":
                self._results[key] = self._h4(method)
            elif hypothesis == "H5":
                self._results[key] = self._h5(method)
            else:
                recall, reasoning = self.activations
                controls = self.control_activations if method == "paired" else {}
                self._results[key] = analyse_activations(method, hypothesis, recall, reasoning, self.config,
                                                         controls, self.loaded.device)
        return self._results[key]

    def _sweep(self, targets: list, desc: str) -> dict[str, "SweepResult"]:
        """Both tasks' ablation sweeps over ``targets``."""
        from circuitgate.interventions import ablation_sweep

        cfg, ps = self.config.h5, self.prompt_set
        reference = ps.prompts("recall") + ps.prompts("reasoning")  # mean ablation: both tasks alike
        return {side: ablation_sweep(self.loaded, ps.prompts(side), ps.answers(side), targets,
                                     ablation=cfg.ablation, reference=reference, candidates=ps.answers(side),
                                     desc=f"{desc} ({side})", **self._intervention_args)
                for side in SIDES}

    @property
    def _intervention_args(self) -> dict[str, Any]:
        return {"batch_size": self.batch_size, "max_rows": MAX_ROWS.get(self.loaded.device, 512),
                "progress": self.settings.progress}

    @cached_property
    def _fixed_neuron_sets(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        """The neuron sets ablated as targets of their own: a baseline's (a gate ablates what the
        baseline ablated, also on a copy that no longer knows its blocks), else the expectations
        source's (an organism's neuron blocks)."""
        entry = self._baseline_entry("H5", None)
        if entry is not None:
            return {tid: (s["layer"], tuple(s["neurons"]))
                    for tid, s in entry.get("summary", {}).get("neuron_sets", {}).items()}
        return dict(self.expectations.neuron_sets)

    @property
    def _fixed_targets(self) -> list:
        """Every attention, MLP and head target, and the fixed neuron sets: the same under every method."""
        from circuitgate.interventions import Target, standard_targets

        sets = [Target(tid, "neurons", layer, neurons=neurons)
                for tid, (layer, neurons) in self._fixed_neuron_sets.items()]
        return standard_targets(self.shape) + sets

    @cached_property
    def _standard_sweeps(self) -> dict[str, "SweepResult"]:
        """Sweeps over the fixed targets: the same under every method, so run once."""
        return self._sweep(self._fixed_targets, "H5 ablations")

    @cached_property
    def _patching(self) -> dict[str, "PatchResult"]:
        """The last-token residual of the paired prompt patched in at every layer, both directions."""
        from circuitgate.interventions import patch_residual

        ps, common = self.prompt_set, self._intervention_args
        recall_acts, reasoning_acts = self.activations
        return {
            "recall_into_reasoning": patch_residual(self.loaded, ps.prompts("reasoning"), ps.answers("reasoning"),
                                                    recall_acts.resid, ps.answers("recall"),
                                                    candidates=ps.answers("reasoning"), desc="H5 patching", **common),
            "reasoning_into_recall": patch_residual(self.loaded, ps.prompts("recall"), ps.answers("recall"),
                                                    reasoning_acts.resid, ps.answers("reasoning"),
                                                    candidates=ps.answers("recall"), desc="H5 patching", **common),
        }

    def _h5(self, method: str) -> HypothesisResult:
        """Ablate every target on both tasks, then patch residuals across tasks. The
        method's H3 neurons are targets too, each set with its random control."""
        from circuitgate.h5 import analyse_h5, neuron_targets
        from circuitgate.interventions import SweepResult

        h3 = self.result("H3", method)
        sets, controls = neuron_targets(h3.arrays["specific"], h3.arrays["d"], self.config.h5.seed)
        sweeps = self._standard_sweeps
        if sets:
            extra = self._sweep(sets, f"H5 {method} neuron ablations")
            sweeps = {side: SweepResult(sweeps[side].clean, {**sweeps[side].ablated, **extra[side].ablated},
                                        sweeps[side].ablation) for side in SIDES}
        result = analyse_h5(sweeps["recall"], sweeps["reasoning"], self._fixed_targets + sets, controls,
                            self.config.h5, self._patching)
        fixed = {tid: {"layer": layer, "neurons": list(neurons)} for tid, (layer, neurons) in self._fixed_neuron_sets.items()}
        return replace(result, summary={**result.summary, "neuron_sets": fixed})

    def _h4(self, method: str) -> HypothesisResult:
        """H1, H2 and H5 on this model and its twin, compared by relative depth."""
        from circuitgate.h4 import PROFILES, analyse_h4, no_second_model

        if self.twin_spec is None:
            return no_second_model(self.spec.name)
        twin = self.twin
        results = tuple({h: run.result(h, method) for h in PROFILES} for run in (self, twin))
        return analyse_h4((self.spec.name, twin.spec.name), results, (self.shape, twin.shape), self.config.h4)

    @property
    def results(self) -> dict[str, HypothesisResult]:
        """The results of the run's first method (the one that leads verdicts.json), by hypothesis."""
        return self.results_by(self.settings.methods[0])

    def results_by(self, method: str) -> dict[str, HypothesisResult]:
        return {h: r for (m, h), r in sorted(self._results.items()) if m == method}

    # -- expectations: the baseline's where there is one, else the expectations source's -------------
    def _baseline_entry(self, hypothesis: str, method: str | None) -> Mapping[str, Any] | None:
        if self.baseline is None:
            return None
        from circuitgate.compare import method_entries

        return method_entries(self.baseline).get(method or self.settings.methods[0], {}).get(hypothesis)

    def expected_verdict(self, hypothesis: str, method: str | None = None) -> Expected:
        """The baseline's verdict; a hypothesis the baseline did not run falls back to the source."""
        entry = self._baseline_entry(hypothesis, method)
        if entry is not None:
            return from_baseline(entry)
        if hypothesis == "H4":
            return Expected(self.config.expected.get("H4") or self.h4_expectations[0] or "supported")
        return Expected(self.expectations.verdict(hypothesis, self.config))

    def expected_components(self, hypothesis: str, method: str | None = None) -> dict[str, Expected]:
        entry = self._baseline_entry(hypothesis, method)
        if entry is not None:
            return {cid: from_baseline(c, "class") for cid, c in (entry.get("components") or {}).items()}
        source = self.h4_expectations[1] if hypothesis == "H4" else self.expectations.components.get(hypothesis, {})
        return {cid: Expected(cls) for cid, cls in source.items()}

    def expected_class(self, hypothesis: str, component: str, method: str | None = None) -> Expected | None:
        return self.expected_components(hypothesis, method).get(component)

    def component_ids(self, hypothesis: str) -> list[str]:
        """The components a hypothesis's component tests assert: the baseline's (under every method it
        ran), else the expectations source's (H4's: see ``h4_component_ids``)."""
        if self.baseline is not None:
            ids = {cid: None for m in self.settings.methods for cid in self.expected_components(hypothesis, m)}
            if ids or any(self._baseline_entry(hypothesis, m) for m in self.settings.methods):
                return list(ids)
        if hypothesis == "H4":
            return self.h4_component_ids()
        return list(self.expected_components(hypothesis))

    # -- documents -----------------------------------------------------------------------------
    def verdicts_document(self) -> dict[str, Any]:
        """verdicts.json: deterministic for a given model, prompts, method and config (no times)."""
        doc = self._document()
        if self.baseline is not None:
            doc["baseline"]["regressions"] = self.regressions(doc)
        return doc

    def regressions(self, doc: Mapping[str, Any]) -> list[str]:
        """What regressed against the baseline among the tested hypotheses, by `circuitgate compare`'s
        rule and names: a failing test and a named regression are one thing seen twice."""
        from circuitgate.compare import compare

        c = compare(self.baseline, doc, "baseline", "this run")
        return [c.label(x) for x in c.regressions if x.hypothesis in self.tested]

    def _document(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "model": model_info(self.loaded),
            "method": self.settings.method,
            "prompts": {"name": self.prompt_set.name, "sha256": self.prompt_set.sha256,
                        "n_pairs": len(self.prompt_set.pairs)},
            "expectations": self.expectations_source,
            **({"baseline": {"path": str(self.settings.baseline), "model": self.baseline.get("model")}}
               if self.baseline is not None else {}),
            **self._h4_model_info(),
            "config": jsonable(self.config.to_dict()),
            "hypotheses": self._entries(self.settings.methods[0]),
            # --method both: each method's verdicts, side by side (the report shows them so).
            **({"by_method": {m: self._entries(m) for m in self.settings.methods}}
               if len(self.settings.methods) > 1 else {}),
        }

    def _entries(self, method: str) -> dict[str, Any]:
        # What the source leaves unasserted is the source's: a baseline asserts every unit it has.
        notes = {} if self.baseline is not None else self.expectations.notes
        return {h: {**hypothesis_entry(r, self.expected_verdict(h, method), self.expected_components(h, method),
                                       notes.get(h)),
                    "tested": h in self.tested}
                for h, r in self.results_by(method).items()}

    @property
    def expectations_source(self) -> str:
        if self.baseline is not None:
            model = self.baseline.get("model") or {}
            return f"baseline {self.settings.baseline} ({model.get('name') or model.get('id')})"
        return self.expectations.source

    def _h4_model_info(self) -> dict[str, Any]:
        """The second model's id and weight hash, when H4 compared with one."""
        if any(h == "H4" for _, h in self._results) and self._twin is not None:
            return {"h4_model": model_info(self._twin.loaded)}
        return {}

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
            **self._h4_model_info(),
            "prompts": {"name": self.prompt_set.name, "sha256": self.prompt_set.sha256, "source": self.prompt_set.source},
            "method": self.settings.method,
            "config": self.config.to_dict(),
            "config_file": self.settings.config,
            "seed": self.config.h1.seed,
            "settings": asdict(self.settings),
            "device": loaded.device,
            "dtype": loaded.dtype,
            "methods": list(self.settings.methods),
            "hypotheses_run": list(self.results),
            "started": self.started.isoformat(timespec="seconds"),
            "finished": (finished or _dt.datetime.now(_dt.timezone.utc)).isoformat(timespec="seconds"),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "packages": versions,
        })
