"""The clean model's whole answers on every pair of the prompt set: the clean accuracy every run reports
(verdicts.json's ``clean_accuracy`` and ``clean_correct``), what ``h5.pairs: known`` selects by, and
the forward by which H5's plan times this machine. The session measures it once, while the model is
loaded (docs/design.md, "Analyses and their inputs")."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

from circuitgate.encoding import pack_bits
from circuitgate.vocabulary import SKILLS

if TYPE_CHECKING:
    from circuitgate.interventions import Metrics
    from circuitgate.models import LoadedModel
    from circuitgate.prompts import PromptSet


@dataclass(frozen=True)
class CleanScores:
    """task -> the whole-answer metrics of every pair, and the seconds the forward took."""

    scores: Mapping[str, "Metrics"]
    seconds: float

    @property
    def accuracy(self) -> dict[str, float]:
        return {side: float(m.accuracy.mean()) for side, m in self.scores.items()}

    @property
    def correct(self) -> dict[str, str]:
        """task -> which pairs it answered, packed (``encoding.pack_bits``): what a gate's skills compare."""
        return {side: pack_bits(m.accuracy == 1) for side, m in self.scores.items()}


def measure_clean(loaded: "LoadedModel", ps: "PromptSet", batch_size: int, progress: bool) -> CleanScores:
    """One plain forward of every prompt (no target: each pass is one copy of one batch), timed."""
    from circuitgate.interventions import ablation_sweep

    start = time.perf_counter()
    scores = {side: ablation_sweep(loaded, ps.prompts(side), ps.answers(side), [], candidates=ps.answers(side),
                                   desc=f"clean {side} answers", batch_size=batch_size, max_rows=batch_size,
                                   progress=progress).clean
              for side in SKILLS}
    return CleanScores(scores, time.perf_counter() - start)
