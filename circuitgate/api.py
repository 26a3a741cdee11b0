"""circuitgate's public API for a hypothesis of your own (docs/own-hypothesis.md).

A project's own hypothesis is a function of the run's model that returns a ``HypothesisResult``:
``@hypothesis("H6")`` makes it the session fixture ``h6`` of the project's suite (a directory its ini
file names under ``circuitgate_suites``), computed once and only when a selected test asks for it,
judged by the ``judge`` fixture as H1-H5 are, and written to verdicts.json, junit.xml and the report
beside them. What it may use is here: the run's model (activations and ablations through
circuitgate's one model-access layer), prompt sets, the paired statistics H1-H3 use and the causal
rule H5 uses, each over arrays, and the ids components are named by. Everything else in circuitgate
is internal and may change.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import pytest

from circuitgate import CircuitgateError
from circuitgate.activations import Activations
from circuitgate.analyses.base import Analysis, Inputs
from circuitgate.config import Config, check_own_id
from circuitgate.features import h1_layer_features as layer_features
from circuitgate.features import h2_head_metrics as head_metrics
from circuitgate.ids import attn_target, head_id, head_target, layer_id, mlp_target, neuron_id
from circuitgate.interventions import KINDS, Target, standard_targets
from circuitgate.methods.paired import H1_ORIENTATION, H2_ORIENTATION
from circuitgate.models.adapters import Shape
from circuitgate.prompts import PromptSet, load_prompt_set
from circuitgate.results import ComponentResult, HypothesisResult, class_counts
from circuitgate.vocabulary import CLASSES, SKILLS, VERDICTS

if TYPE_CHECKING:
    from circuitgate.session import Run

__all__ = [
    # an own hypothesis and what it returns
    "hypothesis", "result", "HypothesisResult", "ComponentResult", "VERDICTS", "CLASSES", "CircuitgateError",
    # the run's model, prompt sets, activations and ablation targets
    "Model", "Shape", "Activations", "PromptSet", "load_prompts", "Target", "layer_features", "head_metrics",
    "LAYER_ORIENTATION", "HEAD_ORIENTATION", "head_ids", "layer_ids",
    # statistics over arrays
    "paired_units", "causal_units",
    # ids
    "layer_id", "head_id", "neuron_id", "attn_target", "mlp_target", "head_target",
]

# Which way each feature of ``layer_features`` and ``head_metrics`` counts as "more engaged" (+1) or
# less (-1), as the paired method orients them (docs/method.md, flaw 4): a class then means the same
# whichever feature shows it. Concentration repeats entropy and is left out.
LAYER_ORIENTATION: Mapping[str, float] = H1_ORIENTATION
HEAD_ORIENTATION: Mapping[str, float] = H2_ORIENTATION


def load_prompts(name_or_file: str | Path) -> PromptSet:
    """A prompt set in the project's schema (docs/cli.md, "Prompt sets"): a built-in name or a YAML file."""
    return load_prompt_set(name_or_file)


def layer_ids(shape: Shape) -> list[str]:
    """``L00`` ... : the ids of ``layer_features``' units, in their order."""
    return [layer_id(i) for i in range(shape.n_layers)]


def head_ids(shape: Shape) -> list[str]:
    """``L00H00`` ... : the ids of ``head_metrics``' units flattened layer-major, in their order."""
    return [head_id(i, h) for i in range(shape.n_layers) for h in range(shape.n_heads)]


class Model:
    """The run's model with its prompt set and settings, as an own hypothesis sees it. Activations
    and ablations go through circuitgate's model-access layer (``circuitgate.extract``,
    ``circuitgate.interventions``; docs/design.md, "Model access"), so they hold on every supported
    family, remotely too, and activations are cached on disk as H1-H3's are."""

    def __init__(self, inputs: Inputs, method: str) -> None:
        self._inputs = inputs
        self.method = method  # the run's analysis method (paired or original) this result is judged under

    @property
    def name(self) -> str:
        return self._inputs.spec.name

    @property
    def shape(self) -> Shape:
        return self._inputs.shape

    @property
    def config(self) -> Config:
        """The run's settings and thresholds (``--config`` over the defaults)."""
        return self._inputs.config

    @property
    def prompt_set(self) -> PromptSet:
        """The run's prompt set (``--prompts``, else the model's default), matched to its tokenizer."""
        return self._inputs.prompt_set

    def prompts(self, name_or_file: str | Path) -> PromptSet:
        """Another prompt set (a built-in name or a YAML file), matched to this model's tokenizer
        where it gives variants, as the run's is."""
        ps = load_prompt_set(name_or_file)
        if not ps.has_variants:
            return ps
        from circuitgate.models.loading import token_counter

        return ps.matched(token_counter(self._inputs.model_dir))

    def activations(self, texts: Sequence[str], desc: str = "activations") -> Activations:
        """Last-token activations of ``texts``, row i for text i: residual stream, attention rows,
        MLP neurons (``Activations``)."""
        from circuitgate.extract import cached_extract

        inputs = self._inputs
        return cached_extract(inputs.model, list(texts), inputs.batch_size, inputs.progress, desc=desc)

    def sides(self, prompt_set: PromptSet | None = None) -> tuple[Activations, Activations]:
        """(recall, reasoning) activations of a prompt set's pairs (default: the run's); row i is pair i."""
        ps = prompt_set or self.prompt_set
        return (self.activations(ps.prompts("recall"), f"{ps.name} recall"),
                self.activations(ps.prompts("reasoning"), f"{ps.name} reasoning"))

    def targets(self, kinds: Sequence[str] = ("attn", "mlp", "head")) -> list[Target]:
        """The model's ablation targets of these kinds, by layer: ``attn-L2``, ``mlp-L2``, ``head-L2H1``.
        A set of MLP neurons is a ``Target(id, "neurons", layer, neurons=(...))`` of your own."""
        unknown = sorted(set(kinds) - set(KINDS) | ({"neurons"} & set(kinds)))
        if unknown:
            raise CircuitgateError(f"targets: unknown kind(s) {', '.join(unknown)} (use attn, mlp, head; neuron sets "
                                   "are Target(id, 'neurons', layer, neurons=...))")
        return [t for t in standard_targets(self.shape) if t.kind in kinds]

    def drops(self, targets: Sequence[Target], prompt_set: PromptSet | None = None, *,
              metric: str | None = None, ablation: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(recall, reasoning) per-pair drops [P, T]: the clean metric minus the metric with target t
        ablated, on each side of every pair of a prompt set (default: the run's), as H5 measures
        them. ``metric`` and ``ablation`` default to the run's ``h5.metric`` and ``h5.ablation``;
        mean ablation averages over both sides' prompts."""
        from circuitgate.interventions import ablation_sweep

        inputs, ps, cfg = self._inputs, prompt_set or self.prompt_set, self.config.h5
        metric, targets = metric or cfg.metric, list(targets)
        if not targets:
            raise CircuitgateError("drops: no targets to ablate")
        reference = ps.prompts("recall") + ps.prompts("reasoning")
        out = []
        for side in SKILLS:
            sweep = ablation_sweep(inputs.model, ps.prompts(side), ps.answers(side), targets,
                                   ablation=ablation or cfg.ablation, reference=reference, candidates=ps.answers(side),
                                   batch_size=inputs.batch_size, progress=inputs.progress,
                                   desc=f"{ps.name} ablations ({side})")
            clean = sweep.clean.get(metric)
            out.append(np.stack([clean - sweep.ablated[t.id].get(metric) for t in targets], axis=1))
        return out[0], out[1]


# -- statistics over arrays ----------------------------------------------------------------------------
def _stacked(values: Mapping[str, Any], features: Sequence[str], n_units: int, where: str) -> np.ndarray:
    """feature -> [P, ...units] as one [P, F, U] array, in ``features``' order."""
    if set(values) != set(features):
        raise CircuitgateError(f"{where}: features {sorted(values)} are not the orientation's {sorted(features)}")
    arrays = [np.asarray(values[f], dtype=float) for f in features]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1 or arrays[0].ndim < 1:
        raise CircuitgateError(f"{where}: every feature needs one shape [pairs, units...], got {sorted(shapes)}")
    out = np.stack([a.reshape(a.shape[0], -1) for a in arrays], axis=1)
    if out.shape[2] != n_units:
        raise CircuitgateError(f"{where}: {out.shape[2]} units, but {n_units} ids")
    if np.isinf(out).any():
        raise CircuitgateError(f"{where}: infinite values (NaN marks a missing value)")
    return out


def paired_units(hypothesis: str, recall: Mapping[str, Any], reasoning: Mapping[str, Any], ids: Sequence[str],
                 config: Config, *, orientation: Mapping[str, float] | None = None, min_units: int = 1,
                 controls: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]] | None = None) -> HypothesisResult:
    """H1-H3's paired statistics over units of your own choosing (docs/method.md, "The sound method").

    ``recall`` and ``reasoning``: feature -> per-pair values [P, ...units] of the pairs' two sides
    (row i of each is pair i; ``head_metrics`` and ``layer_features`` give such mappings), the units
    named by ``ids`` in C order. ``orientation``: feature -> +1 where larger means more engaged, -1
    where less (default +1 each). Per pair, the oriented difference reasoning - recall is tested by
    the signed-rank test under one FDR family over features x units, selected on half the pairs and
    confirmed on the other (``config.paired``); a unit is ``recall``, ``reasoning``, ``mixed`` or
    ``none``. ``controls``: task -> (template a, template b) values of the same task under two
    templates, analysed alike: when they come out specialised the verdict is ``inconclusive``
    (confounded by template), and without controls it is inconclusive unless
    ``paired.require_controls`` is off. Supported: at least ``min_units`` specialised units. NaN marks
    a missing value (a head skipped on a prompt): that pair gives no evidence for it.
    """
    from circuitgate.methods.paired import Count, Spec, _judge, _units, family

    check_own_id(hypothesis)
    orientation = dict(orientation or {f: 1.0 for f in recall})
    if not orientation or any(v not in (1.0, -1.0) for v in orientation.values()):
        raise CircuitgateError(f"{hypothesis}: orientation must map each feature to +1 or -1, got {orientation}")
    if not isinstance(min_units, int) or min_units < 1:
        raise CircuitgateError(f"{hypothesis}: min_units must be a positive integer, got {min_units!r}")
    ids = list(ids)
    spec = Spec(hypothesis, (), orientation, lambda values: values)
    values = (_stacked(recall, spec.features, len(ids), f"{hypothesis} recall"),
              _stacked(reasoning, spec.features, len(ids), f"{hypothesis} reasoning"))
    if values[0].shape != values[1].shape:
        raise CircuitgateError(f"{hypothesis}: recall and reasoning must be matched pairs: {values[0].shape[0]} vs "
                               f"{values[1].shape[0]}")
    cfg = config.paired
    diff = spec.oriented(*values)
    main = family(diff, cfg)
    count = Count(int(main.specialised.sum()), min_units, "units")
    checked = {}
    for task, (a, b) in (controls or {}).items():
        fam = family(spec.oriented(_stacked(a, spec.features, len(ids), f"{hypothesis} {task} controls a"),
                                   _stacked(b, spec.features, len(ids), f"{hypothesis} {task} controls b")), cfg)
        checked[task] = (fam, Count(int(fam.specialised.sum()), min_units, "units"))
    verdict, reason = _judge(main, count, checked, cfg, None)
    summary: dict[str, Any] = {
        **class_counts(main.cls), "count": count.n, "threshold": min_units, "n_pairs": main.n_pairs,
        "features": list(spec.features), "correction": cfg.correction, "alpha": cfg.alpha, "n_tests": main.n_tests,
        "bar": main.bar, "min_attainable_p": main.min_p,
        "controls": {task: {"n_specialised": c.n, "specialised": c.supported} for task, (_, c) in checked.items()},
        "headline": (f"{count.n} specialised units (threshold {min_units}; recall {int((main.cls == 'recall').sum())}, "
                     f"reasoning {int((main.cls == 'reasoning').sum())}, mixed {int((main.cls == 'mixed').sum())}), "
                     f"stable in >= {cfg.stability:.0%} of {cfg.n_splits} split halves"),
        **({"reason": reason} if reason else {}),
    }
    components = _units(main, spec, diff, values, cfg, ids)
    return HypothesisResult(hypothesis, verdict, "paired", summary, components, uncertainty={"kind": "pairs",
                                                                                          "statistic": "d_z"})


def causal_units(recall_drop: Any, reasoning_drop: Any, ids: Sequence[str], config: Config) -> dict[str, ComponentResult]:
    """H5's rule over ablation targets of your own choosing (docs/method.md, "H5"): per-pair drops
    [P, T] on each side (``Model.drops``) -> per target its class (``recall`` when it hurts recall by at
    least ``h5.min_drop`` and more than reasoning in the same pairs, selectively after the FDR
    correction over the targets; ``reasoning`` likewise; ``mixed``; ``none``), its effect (the
    interaction, mean recall drop - reasoning drop) with its paired-bootstrap interval, and adjusted p."""
    from circuitgate.causal import classify_targets

    ids = list(ids)
    r = np.asarray(recall_drop, dtype=float)
    if r.ndim != 2 or r.shape[1] != len(ids):
        raise CircuitgateError(f"causal_units: drops must be [pairs, {len(ids)} targets], got shape {r.shape}")
    cfg = config.h5
    stats = classify_targets(r, reasoning_drop, tau=cfg.min_drop, level=cfg.level, n_boot=cfg.n_boot, seed=cfg.seed,
                             alpha=cfg.alpha, correction=cfg.correction)
    return {tid: ComponentResult(
        tid, str(stats.cls[t]), float(stats.interaction.estimate[t]), float(stats.p_adj[t]),
        {"recall_drop": float(stats.recall_drop.estimate[t]), "reasoning_drop": float(stats.reasoning_drop.estimate[t]),
         "selective": bool(stats.selective[t])},
        effect_ci=(float(stats.interaction.ci_low[t]), float(stats.interaction.ci_high[t])),
        pair_values=stats.pair_interaction[:, t]) for t, tid in enumerate(ids)}


def result(hypothesis: str, verdict: str, components: Mapping[str, ComponentResult] | None = None,
           summary: Mapping[str, Any] | None = None, *, reason: str | None = None, method: str = "own") -> HypothesisResult:
    """An own hypothesis's result: its verdict (``supported``, ``not_supported``, ``inconclusive``),
    its units and a summary (the ``headline`` is what the judge and the terminal summary show; the
    ``reason`` says why a verdict is inconclusive or not supported)."""
    check_own_id(hypothesis)
    if verdict not in VERDICTS:
        raise CircuitgateError(f"{hypothesis}: verdict {verdict!r} is not one of {', '.join(VERDICTS)}")
    return HypothesisResult(hypothesis, verdict, method, {**(summary or {}), **({"reason": reason} if reason else {})},
                            dict(components or {}))


# -- the fixture ---------------------------------------------------------------------------------------
class OwnAnalysis(Analysis):
    """An own hypothesis as the run's analyses are: computed by its function from the run's model, its
    own expectations source."""

    needs = ("model",)

    def __init__(self, hypothesis: str, compute: Callable[[Model], HypothesisResult], expected: str,
                 components: Mapping[str, str]) -> None:
        self.hypothesis, self._compute = hypothesis, compute
        self.expected, self.components = expected, dict(components)

    def compute(self, inputs: Inputs, method: str) -> HypothesisResult:
        out = self._compute(Model(inputs, method))
        if not isinstance(out, HypothesisResult) or out.hypothesis != self.hypothesis:
            got = out.hypothesis if isinstance(out, HypothesisResult) else type(out).__name__
            raise CircuitgateError(f"{self.hypothesis}: its function must return the HypothesisResult of "
                                   f"{self.hypothesis} (circuitgate.api.result), got {got}")
        return out

    def source_expectations(self, inputs: Inputs) -> tuple[str | None, Mapping[str, str]]:
        return self.expected, self.components


def hypothesis(id: str, *, expected: str = "supported",
               components: Mapping[str, str] | None = None) -> Callable[[Callable[[Model], HypothesisResult]], Any]:
    """Make ``compute(model: Model) -> HypothesisResult`` the session fixture named ``id`` in lower
    case (``H6`` -> ``h6``), in a test module or a conftest.py of the project's suite.

    ``expected``: the verdict its test expects, unless the run's config says otherwise (``expected:
    {H6: not_supported}`` in ``--config``); ``components``: unit id -> the class its component tests
    expect (``judge.component(h6, unit)``). The result is computed on first use, once per session,
    and recorded with the run's results (verdicts.json, the summary, the report)."""
    check_own_id(id)
    if expected not in VERDICTS:
        raise CircuitgateError(f"{id}: expected {expected!r} is not one of {', '.join(VERDICTS)}")
    bad = {c: k for c, k in (components or {}).items() if k not in CLASSES}
    if bad:
        raise CircuitgateError(f"{id}: component classes must be one of {', '.join(CLASSES)}, got {bad}")

    def decorate(compute: Callable[[Model], HypothesisResult]) -> Any:
        own = OwnAnalysis(id, compute, expected, components or {})

        def fixture(pytestconfig: pytest.Config, cg_run: "Run", cg_method: str) -> HypothesisResult:
            from circuitgate.fixtures.circuitgate import result_of

            if cg_run.own.setdefault(id, own) is not own:
                pytest.fail(f"circuitgate: two definitions of the own hypothesis {id}", pytrace=False)
            return result_of(pytestconfig, cg_run, id, cg_method)

        fixture.__doc__ = compute.__doc__
        return pytest.fixture(scope="session", name=id.lower())(fixture)

    return decorate
