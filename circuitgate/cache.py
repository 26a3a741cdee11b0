"""The cache root shared by the organism builds and the activation caches, and the one way a file is
written so that no reader ever sees half of it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def cache_root(root: Path | None = None) -> Path:
    """``root`` if given, else ``$CIRCUITGATE_CACHE``, else ``~/.cache/circuitgate``."""
    if root is not None:
        return Path(root)
    env = os.environ.get("CIRCUITGATE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "circuitgate"


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb", shared: bool = False) -> Iterator[IO[Any]]:
    """A file opened beside ``path`` that becomes ``path`` by a rename when the block ends, and is
    removed when it raises: an interrupted run never leaves a file a later run would trust. ``shared``:
    the permissions a plain ``open`` would give (mkstemp makes the file owner-only), for what users
    share, such as a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    if shared:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
