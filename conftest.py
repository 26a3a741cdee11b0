"""Wiring: none is needed. The plugin and its fixtures register through circuitgate's pytest11 entry
point once circuitgate is installed (the README's commands install it; pyproject.toml). Torch's thread
count is the plugin's --threads: docs/design.md, "Command-line contract"."""
