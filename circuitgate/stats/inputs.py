"""Input checks shared by the topics: a float array with a sample axis (axis 0)."""

from __future__ import annotations

import numpy as np
import torch

from circuitgate import CircuitgateError


def _as_float(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 0:
        raise CircuitgateError(f"{name} must have a sample axis (axis 0)")
    return x


def _finite64(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """float64 numpy copy of a numpy or torch array (any float dtype, bfloat16 included), finite, with
    a sample axis."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 0:
        raise CircuitgateError(f"{name} must have a sample axis (axis 0)")
    if not np.all(np.isfinite(x)):
        raise CircuitgateError(f"{name}: values must be finite")
    return x


def _check_level(level: float) -> float:
    level = float(level)
    if not 0.0 < level < 1.0:
        raise CircuitgateError(f"level must be in (0, 1), got {level}")
    return level


def _check_count(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise CircuitgateError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
