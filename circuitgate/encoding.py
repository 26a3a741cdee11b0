"""Compact encodings of arrays inside verdicts.json (docs/design.md, "Files"): what a gate needs of a
run besides its summary numbers, per-pair values of every unit and neuron sets, without a sidecar file.

- ``pack_floats``: little-endian float32, base64. 130 pairs of one unit take 696 characters, against
  about 2,000 as JSON numbers; float32 keeps every digit a run computed in float32, so a rerun
  compares as exactly equal.
- ``pack_mask``: a neuron set as a bit mask over the layer's neurons, base64: a set of any size in a
  1,536-neuron layer takes 256 characters.
- ``pack_bits``: 0/1 per pair (whether the clean model answered) as a string of '0' and '1', readable.
"""

from __future__ import annotations

import base64
from typing import Sequence

import numpy as np

from circuitgate import CircuitgateError


def pack_floats(values: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def unpack_floats(text: str, n: int | None = None) -> np.ndarray:
    """float64 values of ``pack_floats``; ``n``: how many there must be (a one-line error otherwise)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, AttributeError):
        raise CircuitgateError("packed values are not base64 text") from None
    if len(raw) % 4 or (n is not None and len(raw) != 4 * n):
        raise CircuitgateError(f"packed values hold {len(raw) / 4:g} float32 numbers, expected {n}")
    return np.frombuffer(raw, dtype="<f4").astype(np.float64)


def pack_mask(indices: Sequence[int], size: int) -> str:
    mask = np.zeros(size, dtype=bool)
    mask[np.asarray(indices, dtype=np.int64)] = True
    return base64.b64encode(np.packbits(mask, bitorder="little").tobytes()).decode("ascii")


def unpack_mask(text: str, size: int) -> tuple[int, ...]:
    """The sorted indices of ``pack_mask``."""
    try:
        raw = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    except (ValueError, AttributeError):
        raise CircuitgateError("a packed neuron set is not base64 text") from None
    if len(raw) != (size + 7) // 8:
        raise CircuitgateError(f"a packed neuron set holds {8 * len(raw)} bits, expected {size}")
    return tuple(int(i) for i in np.flatnonzero(np.unpackbits(raw, bitorder="little")[:size]))


def pack_bits(flags: np.ndarray) -> str:
    return "".join("1" if f else "0" for f in np.asarray(flags, dtype=bool))


def unpack_bits(text: str) -> np.ndarray:
    if not isinstance(text, str) or set(text) - {"0", "1"}:
        raise CircuitgateError("a per-pair record must be a string of 0 and 1")
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1")
