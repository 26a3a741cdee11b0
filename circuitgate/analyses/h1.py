"""H1: layers specialise. Activation features per layer (residual norm and mean, attention entropy,
MLP magnitude and sparsity; the original method adds concentration), recall against reasoning; a layer is
specialised when enough features vote for one task (docs/method.md, "H1 - layers specialise"; docs/hypotheses.md,
"The hypotheses"). Components: layers ``L04``."""

from circuitgate.analyses.base import ActivationAnalysis

ANALYSIS = ActivationAnalysis("H1")
