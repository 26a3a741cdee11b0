"""The plugin as a model team gets it: a built wheel in a fresh virtual environment, run from an empty
directory (``python -m pytest --pyargs circuitgate.hypotheses``), outside the checkout.

About a minute: building the wheel is seconds, the virtual environment's install of torch (the
pinned CPU wheel) and circuitgate's dependencies is most of the rest; the organism comes from the session's
cache, built once for every test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
# What a build must not see: it would put its egg-info and build folders in the checkout, and a stale
# egg-info there is found by importlib.metadata in a session started from the checkout.
UNBUILT = shutil.ignore_patterns(".git", "reports", "*.egg-info", "build", "dist", "__pycache__", ".venv",
                                 ".pytest_cache", ".hypothesis", ".benchmarks")


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The python of a fresh virtual environment holding only torch and the built wheel (and what the
    wheel depends on)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=UNBUILT)
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"),
                  str(src)], cwd=root)
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("circuitgate-*.whl"))
    venv = root / "venv"
    made = _run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    # --no-compile: pip byte-compiles every installed module (torch's thousands) up front; left to
    # import time, only what the run imports is compiled. Measured: install 89 s -> 37 s, the first
    # suite run 10 s -> 22 s. What the wheel installs is the same.
    install = _run([str(python), "-m", "pip", "install", "-q", "--no-compile", "torch==2.13.0", str(wheel)], cwd=root)
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def test_the_suite_runs_from_an_empty_directory(installed, organism_family, tmp_path):
    organism_family["organism"]  # built into the session's cache, which the environment below names
    env = {**os.environ, "CIRCUITGATE_CACHE": os.environ["CIRCUITGATE_CACHE"]}
    env.pop("PYTHONPATH", None)
    where = _run([str(installed), "-c", "import circuitgate; print(circuitgate.__file__)"], cwd=tmp_path, env=env)
    assert str(installed.parents[1]) in where.stdout, where.stdout  # the wheel's copy, not the checkout
    run = _run([str(installed), "-m", "pytest", "--pyargs", "circuitgate.hypotheses", "-k", "H2",
                "-p", "no:cacheprovider", "--report-dir", "out"], cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "3 passed" in run.stdout and "H2  supported" in run.stdout
    for name in ("verdicts.json", "junit.xml", "report.html", "manifest.json"):
        assert (tmp_path / "out" / name).is_file(), name
    # A bad option value: pytest's one line and its usage-error status, as in the checkout.
    bad = _run([str(installed), "-m", "pytest", "--pyargs", "circuitgate.hypotheses", "--method", "sound",
                "-p", "no:cacheprovider"], cwd=tmp_path, env=env)
    assert bad.returncode == pytest.ExitCode.USAGE_ERROR
    assert bad.stderr.splitlines()[0] == "ERROR: --method: unknown method 'sound' (known: paired, original, both)"
