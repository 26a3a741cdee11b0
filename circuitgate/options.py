"""The checks of the command-line options, one each, with their one message: the plugin's argparse
types call them as pytest parses the options (``circuitgate.plugin``), and ``session.Settings`` calls
the same ones for a run made without pytest. Light: no torch at import, as the entry point that
imports this module must not load it in other projects' sessions."""

from __future__ import annotations

from circuitgate import CircuitgateError
from circuitgate.vocabulary import DEVICES as DEVICE_NAMES
from circuitgate.vocabulary import DTYPE_NAMES, METHODS, canonical_method

DEVICES = ("auto", *DEVICE_NAMES)
DTYPES = ("auto", *DTYPE_NAMES)


def one_of(option: str, what: str, value: str, values: tuple[str, ...]) -> str:
    if value not in values:
        raise CircuitgateError(f"{option}: unknown {what} {value!r} (known: {', '.join(values)})")
    return value


def method(value: str) -> str:
    """--method, its first name ``seed`` read as ``original``."""
    return one_of("--method", "method", canonical_method(value), METHODS)


def device(value: str) -> str:
    one_of("--device", "device", value, DEVICES)
    if value == "cuda":  # on a machine without one: said before any work
        from circuitgate.models.loading import resolve_device

        resolve_device(value)
    return value


def dtype(value: str) -> str:
    return one_of("--dtype", "dtype", value, DTYPES)


def positive_or_auto(option: str, value: str) -> str:
    if value != "auto" and not (str(value).isdigit() and int(value) >= 1):
        raise CircuitgateError(f"{option} must be a positive integer or auto, got {value!r}")
    return value


def batch_size(value: str) -> str:
    return positive_or_auto("--batch-size", value)  # kept as typed: Settings (and manifest.json) hold the string


def threads(value: str) -> str | int:
    positive_or_auto("--threads", value)
    return value if value == "auto" else int(value)


def remote(value: str) -> str:
    """--remote's value: alone it runs on NDIF (``True``), ``local`` through nnsight's local stand-in."""
    if value != "local":
        raise CircuitgateError(f"--remote: unknown value {value!r} (--remote alone runs on NDIF, --remote local "
                               "through nnsight's local stand-in; a bare --remote goes after the test paths)")
    return value
