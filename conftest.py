"""Wiring only: the circuitgate plugin and fixtures. (Torch's thread count is the plugin's --threads:
docs/design.md, "Command-line contract".)"""

pytest_plugins = ["plugins.verdicts", "fixtures.circuitgate"]
