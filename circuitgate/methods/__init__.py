"""Analysis methods: each turns recall and reasoning ``Activations`` into ``HypothesisResult`` records.

``paired`` is the sound default; ``original`` reproduces the original research method exactly, flaws
included (docs/method.md). Their names, and what --method takes, are ``circuitgate.vocabulary``'s.
"""
