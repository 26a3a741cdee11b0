"""The benchmarks stay runnable: each runs once with timing off (pytest-benchmark's --benchmark-disable)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_benchmarks_run():
    proc = subprocess.run([sys.executable, "-m", "pytest", "benchmarks", "--benchmark-disable", "-q",
                           "-p", "no:cacheprovider", "-p", "no:randomly"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
