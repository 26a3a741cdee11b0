"""The cache root shared by the organism builds and the activation caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(root: Path | None = None) -> Path:
    """``root`` if given, else ``$CIRCUITGATE_CACHE``, else ``~/.cache/circuitgate``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("CIRCUITGATE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "circuitgate"
