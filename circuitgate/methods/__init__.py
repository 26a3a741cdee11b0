"""Analysis methods: each turns recall and reasoning ``Activations`` into ``HypothesisResult`` records.

``paired`` is the sound default; ``original`` reproduces the original research method exactly, flaws
included (docs/method.md). ``seed``, the original method's first name here (the research code was the
project's seed), is still accepted for it, on the command line and in documents written with it.
"""

ANALYSIS_METHODS = ("paired", "original")
METHODS = (*ANALYSIS_METHODS, "both")  # what --method takes: both runs the two side by side
METHOD_ALIASES = {"seed": "original"}


def canonical_method(method: str) -> str:
    return METHOD_ALIASES.get(method, method)
