"""What an analysis receives (analyses/base.py, docs/design.md "Analyses and their inputs"): the
session resolves what it declared, the hypotheses first, and it never calls back into the session."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from circuitgate.analyses import ANALYSES, base
from circuitgate.analyses.base import NAMED_INPUTS, Analysis, Inputs
from circuitgate.results import HypothesisResult
from circuitgate.session import Run, Settings

ANALYSES_DIR = Path(base.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return names | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


@pytest.mark.parametrize("module", sorted(p.name for p in ANALYSES_DIR.glob("*.py")))
def test_no_analysis_module_imports_the_session(module):
    assert not {m for m in _imports(ANALYSES_DIR / module) if m.startswith("circuitgate.session")}


def test_every_analysis_declares_known_needs():
    for a in ANALYSES.values():
        assert set(a.needs) <= set(NAMED_INPUTS) | set(ANALYSES), a.hypothesis
        assert a.hypothesis not in a.needs


def test_a_named_input_is_read_only_where_declared():
    made = []

    def make(name):
        made.append(name)
        return name

    inputs = Inputs(make, frozenset({"model"}))
    assert (inputs.model, inputs.batch_size, inputs.config) == ("model", "batch_size", "config")
    with pytest.raises(LookupError, match="'activations' it did not declare"):
        inputs.activations
    assert made == ["model", "batch_size", "config"]  # nothing made for the refused read
    with pytest.raises(LookupError, match="'batch_size'"):  # the model's device's: the model must be declared
        Inputs(make, frozenset()).batch_size


def _result(h: str, summary: dict | None = None) -> HypothesisResult:
    return HypothesisResult(h, "supported", "test", summary or {}, {})


class _Leaf(Analysis):
    def __init__(self, hypothesis: str, log: list) -> None:
        self.hypothesis, self.log = hypothesis, log

    def compute(self, inputs: Inputs, method: str) -> HypothesisResult:
        self.log.append((self.hypothesis, method))
        return _result(self.hypothesis)


class _Needs(Analysis):
    """Needs H1 always, and H2 unless its steps say otherwise; counts how often its steps were made."""

    hypothesis = "H5"
    needs = ("H1", "H2")

    def __init__(self, log: list, skip_h2: bool) -> None:
        self.log, self.skip_h2, self.made = log, skip_h2, 0

    def steps(self, inputs: Inputs) -> object:
        self.made += 1
        return {"skip": self.skip_h2}

    def hypotheses_needed(self, inputs: Inputs, method: str) -> tuple[str, ...]:
        return ("H1",) if inputs.steps["skip"] else ("H1", "H2")

    def compute(self, inputs: Inputs, method: str) -> HypothesisResult:
        self.log.append(("H5", method))
        with pytest.raises(LookupError):
            inputs.model  # not declared
        return _result("H5", {"given": sorted(inputs.results)})


@pytest.mark.parametrize("skip_h2", [False, True])
def test_the_session_computes_what_an_analysis_needs_first_and_only_that(monkeypatch, skip_h2):
    log: list = []
    needs = _Needs(log, skip_h2)
    for h in ("H1", "H2"):
        monkeypatch.setitem(ANALYSES, h, _Leaf(h, log))
    monkeypatch.setitem(ANALYSES, "H5", needs)
    run = Run(Settings(model="organism", method="both", device="cpu", progress=False))
    for method in ("paired", "original"):
        assert run.result("H5", method).summary["given"] == (["H1"] if skip_h2 else ["H1", "H2"])
    expected = [("H1", "paired"), ("H2", "paired"), ("H5", "paired"), ("H1", "original"), ("H2", "original"),
                ("H5", "original")]
    assert log == [e for e in expected if not (skip_h2 and e[0] == "H2")]
    assert needs.made == 1  # the steps are the run's, shared by every method
    run.result("H5", "paired")
    assert len(log) == len(expected) - 2 * skip_h2  # computed once
