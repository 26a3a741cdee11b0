"""The hypotheses suite, installed as ``circuitgate.hypotheses``: ``pytest hypotheses`` in a checkout,
``python -m pytest --pyargs circuitgate.hypotheses`` anywhere circuitgate is installed."""
