"""H2: attention heads specialise. Five metrics of each head's last-token attention row (entropy, max,
focus, spread, Gini), recall against reasoning (docs/method.md, "H2 - attention heads specialise").
Components: heads ``L07H01``."""

from circuitgate.analyses.base import ActivationAnalysis

ANALYSIS = ActivationAnalysis("H2")
