"""Wiring only: the circuitgate fixtures and plugin, and the thread count."""

import torch

# Under CPU contention torch with 2 threads slowed 20-100x; 1 thread stayed stable (docs/nnsight.md, Threads).
torch.set_num_threads(1)

pytest_plugins = ["plugins.verdicts", "fixtures.circuitgate"]
