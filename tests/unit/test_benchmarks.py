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


@pytest.mark.slow
def test_the_gpu_benchmark_script_runs_on_a_tiny_shape(tmp_path):
    """benchmarks/gpu_7b.py is run by hand on a GPU machine: its smoke shape keeps it working here."""
    out = tmp_path / "figures.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_7b.py", "--smoke", "--device", "cpu", "--dtype", "float32",
                           "--prompts", "12", "--batch-size", "4", "--repeat", "1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import json

    figures = json.loads(out.read_text())
    for key in ("forward_s", "forward_backward_s", "extract_batch_s", "h3_statistics_s", "screen_atp_batch_s",
                "screen_grouped_ig_batch_s", "confirmation_per_target_s", "screen_atp_batch_per_forward_backward"):
        assert isinstance(figures[key], float), key
    assert figures["shape"]["num_hidden_layers"] == 2 and figures["device"] == "cpu"
