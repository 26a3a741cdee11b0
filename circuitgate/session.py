"""One run of the suite: its settings, its inputs (model, prompts, config, baseline, expectations
source, activations, clean scores) and a cache of results. What a hypothesis computes from them is the
business of its module in ``circuitgate.analyses``, which declares what it needs and receives it
(``analyses.base.Inputs``); the run resolves those needs, in one place, and never hands itself over.
What a run writes is the business of ``circuitgate.documents``.

Everything is computed lazily and once, so ``-k H2`` computes only what H2 needs. The pytest plugin
holds one ``Run`` per session; the same object works without pytest.
"""

from __future__ import annotations

import datetime as _dt
import gc
from dataclasses import dataclass, replace
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Collection

import torch

from circuitgate import CircuitgateError, options, twin_cache
from circuitgate.analyses import analysis_of, baseline_entry, legacy_baseline
from circuitgate.analyses.base import Analysis, Inputs, Twin, hypotheses_of
from circuitgate.activations import Activations
from circuitgate.clean import CleanScores, measure_clean
from circuitgate.compare import baseline_prompts, check_baseline, check_shape, load_baseline
from circuitgate.config import Config, load_config
from circuitgate.expectations import Expectations, expectations_for
from circuitgate.models import LoadedModel, ModelSpec, Shape, load_model, model_info, resolve
from circuitgate.vocabulary import ANALYSIS_METHODS
from circuitgate.models.loading import model_directory, resolve_device
from circuitgate.models.registry import cpu_config
from circuitgate.organism import ensure_built
from circuitgate.prompts import PromptSet, default_prompts, load_prompt_set
from circuitgate.results import HypothesisResult

if TYPE_CHECKING:
    from circuitgate.gate import Decision

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
    threads: str = "auto"  # torch CPU threads the plugin set: auto = 1 on a CPU, torch's own on a GPU
    remote: bool | str = False  # --remote: True runs the traces on NDIF, "local" through nnsight's local stand-in
    progress: bool = True

    def __post_init__(self) -> None:
        # The options' own checks (``circuitgate.options``), which pytest ran already as it parsed them:
        # a run made without pytest is checked alike, with the same messages.
        object.__setattr__(self, "method", options.method(self.method))
        options.device(self.device)  # --device cuda on a machine without one: say so before any work
        options.dtype(self.dtype)
        options.batch_size(self.batch_size)
        from circuitgate.models.loading import REMOTE_VALUES, ndif_api_key

        if self.remote not in REMOTE_VALUES:
            raise CircuitgateError(f"unknown remote setting {self.remote!r} (use False, True or 'local')")
        if self.remote is True:
            ndif_api_key()  # no key in the environment: say so before any work

    @property
    def methods(self) -> tuple[str, ...]:
        """The analysis methods this run computes; the first is the one verdicts.json leads with."""
        return ANALYSIS_METHODS if self.method == "both" else (self.method,)


class Run:
    """Settings -> inputs, each made on first use, and results by (method, hypothesis), each computed
    once by the hypothesis's analysis from the inputs it declared. ``tested``: the hypotheses a
    selected test asked for (the rest were computed as inputs, as H3 for H5's neurons). ``twin_made``:
    H4's second model, once made. ``own``: the project's own hypotheses this run met, by id
    (``circuitgate.api.hypothesis``)."""

    def __init__(self, settings: Settings, root: Path | None = None, twin: "Run | None" = None) -> None:
        self.settings = settings
        self.root = root or Path.cwd()
        self.started = _dt.datetime.now(_dt.timezone.utc)
        self.tested: set[str] = set()
        self._results: dict[tuple[str, str], HypothesisResult] = {}
        self._steps: dict[str, Any] = {}  # hypothesis -> its analysis's cached steps (``Analysis.steps``)
        self._twin_results: Twin | None = None
        self._gate_units: dict[tuple[str, str], dict[str, "Decision"]] = {}
        self._gate_verdicts: dict[tuple[str, str], "Decision"] = {}
        self.twin_made = twin
        self.own: dict[str, Analysis] = {}

    # -- inputs ----------------------------------------------------------------------------------
    @cached_property
    def spec(self) -> ModelSpec:
        return resolve(self.settings.model)

    @cached_property
    def config(self) -> Config:
        """The thresholds and settings: the defaults under the model's registry settings (or the CPU
        defaults, ``cpu_defaults``), under ``--config``; in a gate, the baseline's settings (a directory
        of a registry model gates as its alias did) under ``--config``, whose changes are ``overrides``."""
        if self._baseline_doc is not None and isinstance(self._baseline_doc.get("config"), dict):
            return load_config(self.settings.config, self._baseline_doc["config"])
        return load_config(self.settings.config, cpu_config() if self.cpu_defaults else self.spec.config)

    @cached_property
    def cpu_defaults(self) -> bool:
        """Whether the model runs with the registry's CPU-sized H5 (``cpu_config``, smollm2's): it has no
        registry settings of its own and no baseline, runs on this machine's CPU, and its default H5
        would screen (more than ``h5.exact_max`` attention, MLP and head targets), the H5 a CPU cannot
        afford (docs/design.md, "Runs sized to the machine"). The organisms, built here and measured
        exactly, never do; a hub id is taken to be a pretrained model (hundreds of targets) without
        reading its config, which may not be here yet."""
        spec = self.spec
        if spec.config is not None or spec.builtin or spec.expectations == "organism" or self._baseline_doc is not None:
            return False
        if self.settings.remote is True or resolve_device(self.settings.device) != "cpu":
            return False
        if spec.path is None:
            return True
        from circuitgate.interventions import standard_targets

        try:
            shape = self.shape
        except (OSError, ValueError):  # no readable config.json: loading the directory says what is wrong
            return False
        return len(standard_targets(shape)) > load_config(self.settings.config).h5.exact_max

    @cached_property
    def overrides(self) -> list[str]:
        """What this gate measures otherwise than its baseline did, as the user asked: each config key
        ``--config`` changed ("h5.seed 0 -> 1"), and another ``--h4-model``."""
        if self._baseline_doc is None:
            return []
        from circuitgate.compare import config_differences

        changed = config_differences(self._baseline_doc, {"config": self.config.to_dict()})
        twin = self._baseline_twin
        if self.settings.h4_model and twin and self.settings.h4_model != twin:
            changed.append(f"h4 model {twin} -> {self.settings.h4_model}")
        return changed

    @cached_property
    def _baseline_twin(self) -> str | None:
        """The model the baseline's H4 compared with, as --h4-model names it: its alias, else its id."""
        from circuitgate.models import aliases

        twin = (self._baseline_doc or {}).get("h4_model") or {}
        name = twin.get("name")
        return name if name in aliases() else twin.get("id")

    @cached_property
    def prompt_set(self) -> PromptSet:
        """The prompt set as this model's tokenizer sees it: where the file gives variants, the wordings
        that match each pair's (and control's) token counts (``PromptSet.matched``); without variants
        the tokenizer is not loaded."""
        ps = load_prompt_set(self.settings.prompts or baseline_prompts(self._baseline_doc, self.settings.baseline)
                             or default_prompts(self.spec, self.settings.method))
        if not ps.has_variants:
            return ps
        from circuitgate.models.loading import token_counter

        return ps.matched(token_counter(self.model_dir))

    @cached_property
    def _baseline_doc(self) -> dict[str, Any] | None:
        return load_baseline(self.settings.baseline) if self.settings.baseline else None

    @cached_property
    def baseline(self) -> dict[str, Any] | None:
        """The baseline verdicts.json, refused when made with another schema, method or prompt set."""
        if self._baseline_doc is not None:
            check_baseline(self._baseline_doc, self.settings.baseline, self.settings.method, self.prompt_set)
        return self._baseline_doc

    def check_shape(self) -> None:
        """Refuse a candidate of another shape than its baseline's model, in one line, before any work."""
        if self.baseline is not None:
            from dataclasses import asdict

            check_shape(self.baseline, self.settings.baseline, asdict(self.shape))

    @cached_property
    def report_dir(self) -> Path:
        if self.settings.report_dir:
            return Path(self.settings.report_dir)
        return self.root / "reports" / f"{self.spec.slug}-{self.started.strftime('%Y%m%d-%H%M%S')}"

    @cached_property
    def model_dir(self) -> Path:
        if self.settings.remote is True:  # config and tokenizer only: the weights stay on NDIF
            return model_directory(self.spec, self.settings.progress, remote=True)
        return ensure_built(self.spec.builtin) if self.spec.builtin else model_directory(self.spec, self.settings.progress)

    @cached_property
    def shape(self) -> Shape:
        from transformers import AutoConfig

        return Shape.from_config(AutoConfig.from_pretrained(self.model_dir))

    @cached_property
    def expectations(self) -> Expectations:
        # Only an organism's truth needs the weights' directory: a YAML source must not find or fetch them.
        return expectations_for(self.spec, self.config, lambda: (self.model_dir, self.shape))

    @cached_property
    def twin_spec(self) -> ModelSpec | None:
        """The model H4 compares with: ``--h4-model``, else the registry twin, else none. (Named as
        typed, not by the spec's name: a local directory's spec is named by its last part only.)"""
        name = self.h4_model_name
        return resolve(name) if name else None

    @property
    def h4_model_name(self) -> str | None:
        """The second model as named: ``--h4-model``, else the baseline's (a gate compares as its
        baseline did), else the registry twin."""
        return self.settings.h4_model or self._baseline_twin or self.spec.twin

    @property
    def twin(self) -> "Run":
        """The second model's run (same prompts, method, config and device), made on first use."""
        if self.twin_made is None:
            if self.twin_spec is None:
                raise CircuitgateError(f"H4 needs a second model: {self.spec.name} has no registry twin; pass --h4-model")
            # Not gated itself: the twin is measured as the baseline run measured it, on its own.
            self.twin_made = Run(replace(self.settings, model=self.h4_model_name, h4_model=None, baseline=None,
                                         prompts=self.settings.prompts or self.prompt_set.name,
                                         report_dir=str(self.report_dir)), self.root)
        return self.twin_made

    @cached_property
    def loaded(self) -> LoadedModel:
        return load_model(self.spec, self.settings.device, self.settings.dtype, self.settings.progress, self.model_dir,
                          remote=self.settings.remote)

    @cached_property
    def model_info(self) -> dict[str, Any]:
        """The model part of the documents; kept when the model is released."""
        return model_info(self.loaded)

    @cached_property
    def placement(self) -> tuple[str, str]:
        """(device, dtype) the model ran with; kept when the model is released."""
        return self.loaded.device, self.loaded.dtype

    @cached_property
    def clean(self) -> CleanScores:
        """The clean model's whole answers on every pair (``circuitgate.clean``): the clean accuracy every
        run reports and what H5 selects and times by; measured once, kept when the model is released."""
        return measure_clean(self.loaded, self.prompt_set, self.batch_size, self.settings.progress)

    def release(self) -> None:
        """Free the model's weights (before H4's second model loads); a later use reloads. What the
        documents need of it (``model_info``, ``placement``, ``clean``) is measured first and kept."""
        if "loaded" in self.__dict__:
            self.__dict__.update(model_info=self.model_info, placement=self.placement, clean=self.clean)
            del self.__dict__["loaded"]
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()

    def _extract(self, prompts: list[str], desc: str) -> Activations:
        from circuitgate.extract import cached_extract

        return cached_extract(self.loaded, prompts, self.batch_size, self.settings.progress, desc=desc)

    @cached_property
    def activations(self) -> tuple[Activations, Activations]:
        """(recall, reasoning) last-token activations; row i of each is pair i."""
        ps = self.prompt_set
        return self._extract(ps.prompts("recall"), "recall activations"), \
            self._extract(ps.prompts("reasoning"), "reasoning activations")

    @cached_property
    def control_activations(self) -> dict[str, tuple[Activations, Activations]]:
        """task -> (template a, template b) last-token activations of the prompt set's controls."""
        ps = self.prompt_set
        return {task: (self._extract(ps.control_prompts(task, "a"), f"{task} controls a"),
                       self._extract(ps.control_prompts(task, "b"), f"{task} controls b")) for task in ps.control_tasks()}

    @property
    def batch_size(self) -> int:
        from circuitgate.extract import batch_size_for

        return batch_size_for(self.settings.batch_size, self.loaded.device)

    # -- what an analysis receives -------------------------------------------------------------------
    @cached_property
    def inputs(self) -> Inputs:
        """The run's inputs, every one readable and no results: what the expectations of a test are read
        from (``analyses.expected_verdict``, ``component_ids``). An analysis gets its own (``_compute``)."""
        return Inputs(partial(self._input, hypotheses=()))

    def _input(self, name: str, hypotheses: Collection[str]) -> Any:
        """The input ``name`` (``analyses.base.Inputs``), made on first use and kept; ``twin``: the second
        model's results of ``hypotheses``."""
        makers = {
            "spec": lambda: self.spec, "config": lambda: self.config, "prompt_set": lambda: self.prompt_set,
            "model_dir": lambda: self.model_dir, "shape": lambda: self.shape,
            "methods": lambda: self.settings.methods, "progress": lambda: self.settings.progress,
            "baseline": lambda: self.baseline, "expectations": lambda: self.expectations,
            "twin_spec": lambda: self.twin_spec, "twin_dir": lambda: self.twin.model_dir,
            "twin_shape": lambda: self.twin.shape,
            "model": lambda: self.loaded, "batch_size": lambda: self.batch_size,
            "activations": lambda: self.activations, "control_activations": lambda: self.control_activations,
            "clean": lambda: self.clean, "twin": lambda: self._twin(tuple(hypotheses)), "own": lambda: self.own,
        }
        return makers[name]()

    def _twin(self, hypotheses: tuple[str, ...]) -> Twin:
        """The second model's results of ``hypotheses`` under every method. This model's are computed
        first, under every method too, and the model released (its clean scores kept) before the twin
        loads: each model is loaded once, and only one is in memory at a time."""
        if self._twin_results is None:
            for method in self.settings.methods:
                for h in hypotheses:
                    self.result(h, method)
            self.release()
            twin = self.twin
            key = twin.kept_key(hypotheses)
            kept = twin_cache.load(key) if key else None
            if kept is None:
                results = {m: {h: twin.result(h, m) for h in hypotheses} for m in self.settings.methods}
                twin.release()
                kept = twin_cache.KeptTwin(Twin(twin.spec.name, twin.shape, results), twin.model_info)
                if key:
                    twin_cache.store(key, kept)
            else:  # what the documents read of the twin, so that it is never loaded
                twin.__dict__["model_info"] = dict(kept.model_info)
            self._twin_results = kept.twin
        return self._twin_results

    def kept_key(self, hypotheses: Collection[str]) -> str | None:
        """The key this run's results of ``hypotheses`` are kept under as a twin (``circuitgate.twin_cache``);
        None for a model run remotely, whose weights are not here to hash."""
        if self.settings.remote is True:
            return None
        from circuitgate.documents import config_sha256
        from circuitgate.models.loading import resolve_dtype, weights_sha256

        device = resolve_device(self.settings.device)
        model = twin_cache.directory_sha256(self.model_dir, weights_sha256(self.model_dir, self.settings.progress))
        return twin_cache.twin_key(model, device, resolve_dtype(self.settings.dtype, device), config_sha256(self.config),
                                   self.prompt_set, self.settings.methods, hypotheses)

    # -- results ---------------------------------------------------------------------------------
    def result(self, hypothesis: str, method: str | None = None) -> HypothesisResult:
        """A hypothesis's result by ``method`` (default: the run's first), computed once."""
        key = (method or self.settings.methods[0], hypothesis)
        if key not in self._results:
            self._results[key] = self._compute(analysis_of(self.inputs, hypothesis), key[0])
        return self._results[key]

    def _compute(self, a: Analysis, method: str) -> HypothesisResult:
        """Resolve what ``a`` needs, the hypotheses first, and compute its result from them."""
        inputs = Inputs(partial(self._input, hypotheses=hypotheses_of(a.needs)), frozenset(a.needs))
        if a.hypothesis not in self._steps:
            self._steps[a.hypothesis] = a.steps(inputs)
        inputs = inputs.given({}, self._steps[a.hypothesis])
        needed = a.hypotheses_needed(inputs, method)
        return a.compute(inputs.given({h: self.result(h, method) for h in needed}, inputs.steps), method)

    @property
    def results(self) -> dict[str, HypothesisResult]:
        """The results of the run's first method (the one that leads verdicts.json), by hypothesis."""
        return self.results_by(self.settings.methods[0])

    def results_by(self, method: str) -> dict[str, HypothesisResult]:
        return {h: r for (m, h), r in sorted(self._results.items()) if m == method}

    # -- a gate (--baseline): every decision by gate.py's rule, computed once ----------------------------
    def _entry(self, hypothesis: str, method: str) -> dict[str, Any]:
        """The run's verdicts.json entry of a hypothesis, as a gate compares it with the baseline's."""
        from circuitgate.judging import hypothesis_entry

        result = self.result(hypothesis, method)
        return hypothesis_entry(result, result.verdict, {})

    def gate_units(self, hypothesis: str, method: str) -> dict[str, "Decision"]:
        """unit -> its decision against the baseline (``gate.judge_units``), over all the hypothesis's
        units at once: the correction needs the whole family."""
        from circuitgate.gate import judge_units

        key = (hypothesis, method)
        if key not in self._gate_units:
            cfg = self.config.gate
            margin = cfg.margins.of(hypothesis, self.config.h5.metric)
            decided = judge_units(method, hypothesis,
                                  baseline_entry(self.inputs, hypothesis, method) or {"components": {}},
                                  self._entry(hypothesis, method), margin, cfg, legacy_baseline(self.inputs))
            self._gate_units[key] = {d.unit: d for d in decided}
        return self._gate_units[key]

    @cached_property
    def gate_skills(self) -> dict[str, "Decision"]:
        """task -> its clean-accuracy decision against the baseline (``gate.judge_skills``); empty when
        the baseline does not record which pairs it answered."""
        from circuitgate.gate import judge_skills

        mine = {"clean_correct": self.clean.correct}
        return {d.unit: d for d in judge_skills(self.settings.methods[0], self.baseline, mine, self.config.gate)}

    def gate_verdict(self, hypothesis: str, method: str) -> "Decision":
        """The hypothesis verdict's decision against the baseline (``gate.judge_verdict``)."""
        from circuitgate.gate import judge_verdict

        key = (hypothesis, method)
        if key not in self._gate_verdicts:
            baseline_h5 = baseline_entry(self.inputs, "H5", method)
            h5 = self.gate_verdict("H5", method) if hypothesis == "H4" and baseline_h5 else None
            skills = list(self.gate_skills.values()) if hypothesis == "H5" else []
            self._gate_verdicts[key] = judge_verdict(
                method, hypothesis, baseline_entry(self.inputs, hypothesis, method), self._entry(hypothesis, method),
                list(self.gate_units(hypothesis, method).values()), skills, h5, legacy_baseline(self.inputs))
        return self._gate_verdicts[key]
