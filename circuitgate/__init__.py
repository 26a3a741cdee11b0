"""circuitgate: test hypotheses about a language model's internals (recall vs reasoning circuits).

The engine is plain Python; the pytest plugin in ``plugins/`` and the fixtures in ``fixtures/`` are thin
wiring over it. See docs/design.md for the data flow: prompts -> model -> activations -> features ->
statistics -> verdicts -> reports.
"""

__version__ = "0.1.0"


class CircuitgateError(Exception):
    """A user-facing error: its message is one line, shown without a traceback."""
