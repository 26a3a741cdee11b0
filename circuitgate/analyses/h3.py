"""H3: MLP neurons are task-specific. Every neuron of every layer in one vectorised rank test; per layer
the share of task-specific neurons (docs/method.md, "H3 - MLP neurons are task-specific"). Its masks
(``arrays["specific"]``, ``arrays["d"]``) are H5's neuron-set targets. Components: layers ``L04``."""

from circuitgate.analyses.base import ActivationAnalysis

ANALYSIS = ActivationAnalysis("H3")
