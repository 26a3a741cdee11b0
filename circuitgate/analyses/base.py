"""What every hypothesis module provides (``circuitgate.analyses``)."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Mapping

from circuitgate.results import HypothesisResult

if TYPE_CHECKING:
    from circuitgate.session import Run


class Analysis:
    """One hypothesis: ``compute`` its result on a run under a method; what its expectations source
    says of it; the component ids its tests assert."""

    hypothesis: str

    def compute(self, run: "Run", method: str) -> HypothesisResult:
        raise NotImplementedError

    def source_expectations(self, run: "Run") -> tuple[str | None, Mapping[str, str]]:
        """(expected verdict or None when the source states none, component id -> class)."""
        source = run.expectations
        return source.verdicts.get(self.hypothesis), dict(source.components.get(self.hypothesis, {}))

    def component_ids(self, run: "Run") -> list[str]:
        return list(self.source_expectations(run)[1])


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

    def __init__(self, hypothesis: str) -> None:
        self.hypothesis = hypothesis

    def compute(self, run: "Run", method: str) -> HypothesisResult:
        recall, reasoning = run.activations
        if method == "original":  # the original had no controls: it never saw them
            from circuitgate.methods import original

            cfg = run.config
            if self.hypothesis == "H1":
                return original.analyse_h1(recall, reasoning, cfg.h1)
            if self.hypothesis == "H2":
                return original.analyse_h2(recall, reasoning, cfg.h2)
            return original.analyse_h3(recall, reasoning, cfg.h3, device=run.loaded.device)
        from circuitgate.methods import paired

        result = paired.analyse(self.hypothesis, recall, reasoning, run.config, run.control_activations,
                                device=run.loaded.device, pair_features=self._baseline_features(run))
        # Row i of every array is pair i of the prompt set: the pairs a gate lines runs up by.
        return replace(result, uncertainty={**result.uncertainty, "pairs": list(run.prompt_set.ids)})

    def _baseline_features(self, run: "Run") -> dict[str, str] | None:
        """A gate's baseline's per-unit feature choices (``pair_feature``): the candidate keeps the
        per-pair values of the same features, so the two runs compare like with like."""
        from circuitgate.analyses import baseline_entry

        entry = baseline_entry(run, self.hypothesis, "paired")
        if entry is None:
            return None
        return {cid: c["pair_feature"] for cid, c in (entry.get("components") or {}).items() if "pair_feature" in c}
