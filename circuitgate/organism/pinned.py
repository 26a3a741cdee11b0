"""One portable organism build, in a process started with ``builder.PINNED_ENV`` (``builder.build_into``
starts it):

    python -m circuitgate.organism.pinned NAME RECIPE_JSON OUT ERROR_FILE [--quiet]

builds the portable organism ``NAME`` from the recipe into ``OUT``. A build that fails as circuitgate says (its
ground truth is not its plan, its accuracy is below the floor) writes its message to ``ERROR_FILE``
and exits 1, for the parent to raise as it is.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from circuitgate import CircuitgateError
from circuitgate.organism.builder import build_into, pinned
from circuitgate.organism.recipe import Recipe


def main(argv: list[str]) -> int:
    name, recipe, out, error = argv[:4]
    if not pinned():  # started by hand without the environment: it would build unpinned weights
        raise SystemExit("circuitgate.organism.pinned runs only in a process started with builder.PINNED_ENV")
    try:
        build_into(Path(out), name, Recipe(**json.loads(recipe)), progress="--quiet" not in argv[4:], portable=True)
    except CircuitgateError as e:
        Path(error).write_text(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
