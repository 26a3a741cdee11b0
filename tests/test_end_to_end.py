"""End to end: the real suite (`pytest hypotheses`) in a subprocess, on the built-in organism and on
local HF directories of both families. Verdicts must line up with the organism's ground truth source,
the JUnit outcomes with verdicts.json, and a rerun must reproduce verdicts.json byte for byte."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from circuitgate.config import Config
from circuitgate.expectations import from_ground_truth
from circuitgate.models.adapters import Shape
from circuitgate.organism import ensure_built, read_info

REPO = Path(__file__).resolve().parents[1]
FOUR_FILES = ["junit.xml", "manifest.json", "report.html", "verdicts.json"]

pytestmark = pytest.mark.slow


def suite(*args: str) -> subprocess.CompletedProcess:
    """`python -m pytest hypotheses ...` from the repository root, as a user runs it."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "hypotheses", "-p", "no:cacheprovider", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )


@pytest.fixture(scope="module")
def organism_dir() -> Path:
    return ensure_built("qwen2", progress=False)


@pytest.fixture(scope="module")
def organism_run(organism_dir, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("organism-run")
    return suite("--report-dir", str(out)), out


def _verdicts(out: Path) -> dict:
    return json.loads((out / "verdicts.json").read_text())


def test_organism_run_writes_the_four_files(organism_run):
    proc, out = organism_run
    # Exit 0 or 1 (verdict tests may fail: that is the product speaking); never a usage/internal error.
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == FOUR_FILES
    assert "circuitgate verdicts (organism, method seed)" in proc.stdout


def test_organism_expectations_are_its_ground_truth(organism_run, organism_dir):
    _, out = organism_run
    doc = _verdicts(out)
    info = read_info(organism_dir)
    expected = from_ground_truth(info, Shape(4, 4, 4, 16, 64, 256), Config())
    assert doc["model"]["sha256"] and doc["expectations"].startswith("organism ground truth")
    for h in ("H1", "H2"):
        entry = doc["hypotheses"][h]
        assert entry["verdict"] in ("supported", "not_supported", "inconclusive")
        assert entry["expected"] == expected.verdicts[h]
        assert {c: e["expected"] for c, e in entry["components"].items()} == dict(expected.components[h])
        for c in entry["components"].values():
            assert c["passed"] == (c["class"] == c["expected"])
    assert len(doc["hypotheses"]["H1"]["components"]) == 4
    assert len(doc["hypotheses"]["H2"]["components"]) == 16


def test_junit_outcomes_match_verdicts(organism_run):
    _, out = organism_run
    doc = _verdicts(out)
    cases = list(ET.parse(out / "junit.xml").getroot().iter("testcase"))
    assert len(cases) == 2 + 4 + 16
    for case in cases:
        name = case.get("name")
        failed = case.find("failure") is not None
        if name in ("test_H1", "test_H2"):
            passed = doc["hypotheses"][name[-2:]]["passed"]
        else:
            h = "H1" if name.startswith("test_H1_layer") else "H2"
            passed = doc["hypotheses"][h]["components"][name.split("[")[1].rstrip("]")]["passed"]
        assert failed == (not passed), name
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert "expected" in props and ("verdict" in props or "class" in props)


def test_rerun_reproduces_verdicts_exactly(organism_run, tmp_path):
    _, out = organism_run
    proc = suite("--report-dir", str(tmp_path))
    assert proc.returncode in (0, 1)
    assert (tmp_path / "verdicts.json").read_bytes() == (out / "verdicts.json").read_bytes()


def test_k_h2_writes_the_four_files_with_h2_only(organism_dir, tmp_path):
    proc = suite("-k", "H2", "--report-dir", str(tmp_path))
    assert proc.returncode in (0, 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == FOUR_FILES
    assert set(_verdicts(tmp_path)["hypotheses"]) == {"H2"}


def test_seed_h1_on_any_local_directory(tiny_model_dir, tmp_path):
    """`pytest hypotheses -k H1 --method seed --model DIR` on a tiny Qwen2 and a tiny Llama."""
    prompts = tmp_path / "p.yaml"
    pairs = "\n".join(
        f"  - {{id: p{i}, recall: {{prompt: 'w{3 + i} w{4 + i}', answer: w1}}, "
        f"reasoning: {{prompt: 'w{3 + i} w9 w{10 + i} w11 w12', answer: w2}}}}"
        for i in range(20)
    )
    prompts.write_text(f"schema: 1\nname: tiny\npairs:\n{pairs}\n")
    out = tmp_path / "out"
    proc = suite("-k", "H1", "--method", "seed", "--model", str(tiny_model_dir), "--prompts", str(prompts),
                 "--report-dir", str(out))
    assert proc.returncode in (0, 1), proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = _verdicts(out)
    assert set(doc["hypotheses"]) == {"H1"} and doc["expectations"] == "none"
    assert len(doc["hypotheses"]["H1"]["components"]) == 2
