"""Analysis methods: each turns recall and reasoning ``Activations`` into ``HypothesisResult`` records.

``seed`` reproduces the original method exactly, flaws included (SEED_METHOD.md).
"""
