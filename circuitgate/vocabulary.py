"""The project's shared words, each defined once: the hypotheses, the two skills a prompt pair
contrasts, the classes and verdicts a run gives, a template control's sides, the analysis methods,
H5's ablations and metrics, the devices and dtypes. Every module that checks, orders or loops over
one of these takes it from here.

It imports nothing but ``typing``: the pytest entry point (``circuitgate.plugin``), which every pytest
session in an environment with circuitgate installed imports, reads the option values from it without
loading torch.
"""

from __future__ import annotations

from typing import Literal, get_args

# H1-H3 are read off activations (``analyses.base.ActivationAnalysis``); H4 and H5 build on them
# (docs/hypotheses.md, "The hypotheses").
ACTIVATION_HYPOTHESES = ("H1", "H2", "H3")
HYPOTHESES = (*ACTIVATION_HYPOTHESES, "H4", "H5")

# The two tasks of a prompt pair, in the order every result lists them: a prompt set's tasks, a gate's
# skills, the classes of a unit that serves one of them.
Skill = Literal["recall", "reasoning"]
SKILLS: tuple[str, ...] = get_args(Skill)
OTHER_SKILL = {"recall": "reasoning", "reasoning": "recall"}
# A unit's class: one skill's, both ("mixed"), or neither. The Literal types annotate results.py's records.
ComponentClass = Literal[Skill, "mixed", "none"]
CLASSES: tuple[str, ...] = get_args(ComponentClass)
Verdict = Literal["supported", "not_supported", "inconclusive"]
VERDICTS: tuple[str, ...] = get_args(Verdict)
# A template control asks one task in two templates, its sides a and b (docs/method.md, "Template controls").
CONTROL_SIDES = ("a", "b")

# Analysis methods (docs/method.md): ``paired`` the sound default, ``original`` the research method
# exactly; --method also takes ``both`` (the two side by side) and ``seed``, the original method's
# first name here (the research code was the project's seed), still accepted in documents written with it.
ANALYSIS_METHODS = ("paired", "original")
METHODS = (*ANALYSIS_METHODS, "both")
METHOD_ALIASES = {"seed": "original"}

# H5: how a target is ablated and what its drop is measured in (docs/method.md flaw 7).
ABLATIONS = ("zero", "mean", "resample")
METRICS = ("accuracy", "prob", "logit_diff")

# --device and --dtype, besides "auto" (torch's names of its dtypes: circuitgate.models.loading maps them).
DEVICES = ("cpu", "cuda")
DTYPE_NAMES = ("float32", "bfloat16", "float16")


def canonical_method(method: str) -> str:
    """A method's current name (``seed`` -> ``original``); any other string unchanged."""
    return METHOD_ALIASES.get(method, method)
