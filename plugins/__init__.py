"""circuitgate's pytest plugin (registered by the root conftest.py)."""
