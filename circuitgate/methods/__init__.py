"""Analysis methods: each turns recall and reasoning ``Activations`` into ``HypothesisResult`` records.

``seed`` reproduces the original method exactly, flaws included (docs/method.md).
"""
