"""What every hypothesis module provides (``circuitgate.analyses``), and what it receives.

An analysis declares what it ``needs``: other hypotheses' results and named inputs (the model, the
activations, the clean scores, the second model's results). The session resolves them, computing
the hypotheses first, in one place, and hands them over in an ``Inputs``; an analysis never calls
back into the session (docs/design.md, "Analyses and their inputs").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

from circuitgate.results import HypothesisResult

if TYPE_CHECKING:
    from circuitgate.activations import Activations
    from circuitgate.clean import CleanScores
    from circuitgate.config import Config
    from circuitgate.expectations import Expectations
    from circuitgate.models import LoadedModel, ModelSpec, Shape
    from circuitgate.prompts import PromptSet

# Named inputs an analysis must declare in ``needs`` to read: each costs a model's weights in memory or
# passes over them. The run's settings (config, prompts, shape, baseline, expectations) are always there.
NAMED_INPUTS = ("model", "activations", "control_activations", "clean", "twin")


@dataclass(frozen=True)
class Twin:
    """The second model H4 compares with: its name, shape, and the hypotheses' results on it by method
    and hypothesis (computed after the first model was released: two models need not fit at once)."""

    name: str
    shape: "Shape"
    results: Mapping[str, Mapping[str, HypothesisResult]]


@dataclass(frozen=True)
class Inputs:
    """What an analysis receives from the session: every input is made on first read by ``make`` (the
    session's, which keeps it), so ``-k H2`` makes nothing H2 does not read; a named input
    (``NAMED_INPUTS``) only when the analysis declared it in ``needs``. ``results``: the declared
    hypotheses' results under the method being computed. ``steps``: the analysis's cached steps on
    this run (``Analysis.steps``), shared by every method."""

    make: Callable[[str], Any]
    needs: frozenset[str] = frozenset(NAMED_INPUTS)
    results: Mapping[str, HypothesisResult] = field(default_factory=lambda: MappingProxyType({}))
    steps: Any = None

    def _get(self, name: str) -> Any:
        declared = "model" if name == "batch_size" else name  # the batch size is the model's device's
        if declared in NAMED_INPUTS and declared not in self.needs:
            raise LookupError(f"an analysis read the input {name!r} it did not declare in its needs")
        return self.make(name)

    def given(self, results: Mapping[str, HypothesisResult], steps: Any) -> "Inputs":
        return replace(self, results=MappingProxyType(dict(results)), steps=steps)

    # -- the run's settings: always there ----------------------------------------------------------
    @property
    def spec(self) -> "ModelSpec":
        return self._get("spec")

    @property
    def config(self) -> "Config":
        return self._get("config")

    @property
    def prompt_set(self) -> "PromptSet":
        return self._get("prompt_set")

    @property
    def model_dir(self) -> Path:
        """The model's weights directory (built or found, not loaded)."""
        return self._get("model_dir")

    @property
    def shape(self) -> "Shape":
        return self._get("shape")

    @property
    def methods(self) -> tuple[str, ...]:
        """The analysis methods the run computes; the first leads verdicts.json."""
        return self._get("methods")

    @property
    def progress(self) -> bool:
        return self._get("progress")

    @property
    def baseline(self) -> dict[str, Any] | None:
        """The baseline verdicts.json a gate measures as (``--baseline``), or None."""
        return self._get("baseline")

    @property
    def expectations(self) -> "Expectations":
        return self._get("expectations")

    @property
    def own(self) -> Mapping[str, "Analysis"]:
        """The project's own hypotheses the run met, by id (``circuitgate.api``)."""
        return self._get("own")

    @property
    def twin_spec(self) -> "ModelSpec | None":
        """The second model H4 compares with, as named (not loaded), or None without one."""
        return self._get("twin_spec")

    @property
    def twin_dir(self) -> Path:
        """The second model's weights directory (built or found, not loaded)."""
        return self._get("twin_dir")

    @property
    def twin_shape(self) -> "Shape":
        return self._get("twin_shape")

    # -- named inputs: declared in ``needs`` ---------------------------------------------------------
    @property
    def model(self) -> "LoadedModel":
        return self._get("model")

    @property
    def batch_size(self) -> int:
        """Prompts per forward pass on the model's device (``--batch-size``)."""
        return self._get("batch_size")

    @property
    def activations(self) -> tuple["Activations", "Activations"]:
        """(recall, reasoning) last-token activations; row i of each is pair i."""
        return self._get("activations")

    @property
    def control_activations(self) -> dict[str, tuple["Activations", "Activations"]]:
        """task -> (template a, template b) last-token activations of the prompt set's controls."""
        return self._get("control_activations")

    @property
    def clean(self) -> "CleanScores":
        """The clean model's whole answers on every pair (``circuitgate.clean``), measured once per run."""
        return self._get("clean")

    @property
    def twin(self) -> Twin:
        return self._get("twin")


class Analysis:
    """One hypothesis: ``compute`` its result from its inputs under a method; what its expectations
    source says of it; the component ids its tests assert. ``needs``: the hypotheses (H1..H5) whose
    results it takes as inputs and the named inputs (``NAMED_INPUTS``) it reads."""

    hypothesis: str
    needs: tuple[str, ...] = ()

    def hypotheses_needed(self, inputs: Inputs, method: str) -> tuple[str, ...]:
        """The hypotheses of ``needs`` this run's result takes (default: all); fewer where the analysis
        can tell first that it will not read them (H5 in a gate that recorded its neuron sets)."""
        return hypotheses_of(self.needs)

    def steps(self, inputs: Inputs) -> Any:
        """The analysis's cached steps on one run, shared by every method (H5's sweeps), or None."""
        return None

    def compute(self, inputs: Inputs, method: str) -> HypothesisResult:
        raise NotImplementedError

    def source_expectations(self, inputs: Inputs) -> tuple[str | None, Mapping[str, str]]:
        """(expected verdict or None when the source states none, component id -> class)."""
        source = inputs.expectations
        return source.verdicts.get(self.hypothesis), dict(source.components.get(self.hypothesis, {}))

    def component_ids(self, inputs: Inputs) -> list[str]:
        return list(self.source_expectations(inputs)[1])


def hypotheses_of(needs: Collection[str]) -> tuple[str, ...]:
    """The hypotheses among ``needs`` (the rest are named inputs)."""
    return tuple(n for n in needs if n not in NAMED_INPUTS)


class ActivationAnalysis(Analysis):
    """H1-H3: the two tasks' last-token activations (and, under ``paired``, the template controls'),
    analysed by the method's statistics (``methods.paired`` / ``methods.original``); docs/method.md
    describes each. H1, layers specialise: activation features per layer (residual norm and mean,
    attention entropy, MLP magnitude and sparsity; the original method adds concentration), components
    layers ``L04``. H2, attention heads specialise: five metrics of each head's last-token attention
    row (entropy, max, focus, spread, Gini), components heads ``L07H01``. H3, MLP neurons are
    task-specific: every neuron of every layer in one vectorised rank test, per layer the share of
    task-specific neurons, components layers ``L04``; its masks (``arrays["specific"]``,
    ``arrays["d"]``) are H5's neuron-set targets. H4 and H5 build on these (H5 ablates H3's neurons,
    H4 compares H1 and H2 profiles), so they follow the method too."""

    needs = ("model", "activations", "control_activations")

    def __init__(self, hypothesis: str) -> None:
        self.hypothesis = hypothesis

    def compute(self, inputs: Inputs, method: str) -> HypothesisResult:
        recall, reasoning = inputs.activations
        cfg = inputs.config
        if method == "original":  # the original had no controls: it never saw them
            from circuitgate.methods import original

            if self.hypothesis == "H1":
                return original.analyse_h1(recall, reasoning, cfg.h1)
            if self.hypothesis == "H2":
                return original.analyse_h2(recall, reasoning, cfg.h2)
            return original.analyse_h3(recall, reasoning, cfg.h3, device=inputs.model.device)
        from circuitgate.methods import paired

        result = paired.analyse(self.hypothesis, recall, reasoning, cfg, inputs.control_activations,
                                device=inputs.model.device, pair_features=self._baseline_features(inputs))
        # Row i of every array is pair i of the prompt set: the pairs a gate lines runs up by.
        return replace(result, uncertainty={**result.uncertainty, "pairs": list(inputs.prompt_set.ids)})

    def _baseline_features(self, inputs: Inputs) -> dict[str, str] | None:
        """A gate's baseline's per-unit feature choices (``pair_feature``): the candidate keeps the
        per-pair values of the same features, so the two runs compare like with like."""
        from circuitgate.analyses import baseline_entry

        entry = baseline_entry(inputs, self.hypothesis, "paired")
        if entry is None:
            return None
        return {cid: c["pair_feature"] for cid, c in (entry.get("components") or {}).items() if "pair_feature" in c}
