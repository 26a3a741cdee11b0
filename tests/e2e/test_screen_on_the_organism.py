"""H5's attribution path on the organism, against its measured truth: the screen picks which targets
are measured exactly, and after confirmation every planted component must be there with its class;
the single neurons it confirms are selective only inside a planted block of their class."""

from __future__ import annotations

import pytest

import json
import math

from circuitgate.analyses import expected_components
from circuitgate.documents import verdicts_document
from circuitgate.ids import parse_target
from circuitgate.report import render_html
from circuitgate.session import Run, Settings
from circuitgate.truth import read_info

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def screened_run(organism_family, tmp_path_factory) -> Run:
    organism_family["organism"]  # built into the session's cache
    config = tmp_path_factory.mktemp("screen") / "screen.yaml"
    # top_k 5: 10 of the 30 fixed targets per skill, fewer than the 14 planted ones together.
    config.write_text("h5:\n  screen: attribution\n  top_k: 5\n")
    return Run(Settings(model="organism", config=str(config), device="cpu", progress=False))


def test_every_planted_component_is_confirmed_with_its_class(screened_run):
    h5 = screened_run.result("H5")
    screen = h5.summary["screen"]
    assert screen["path"] == "attribution" and screen["method"] == "ig"
    assert (screen["steps"], screen["groups"]) == (4, 32)
    planted = {cid: e.value for cid, e in expected_components(screened_run.inputs, "H5").items() if e.value != "none"}
    assert len(planted) == 14
    found = {cid: h5.components[cid].cls for cid in planted if cid in h5.components}
    assert found == planted
    # Only exactly measured targets are classified, and fewer than all of them were measured.
    assert set(h5.components) == set(screen["confirmed"])
    assert len(h5.components) < len(screen["estimates"])
    assert h5.verdict == "supported"


def test_single_neurons_are_confirmed_and_selective_only_in_planted_blocks(screened_run, organism_family):
    h5 = screened_run.result("H5")
    screen = h5.summary["screen"]
    neurons = {tid: r for tid, r in screen["confirmed"].items() if parse_target(tid).kind == "neuron"}
    top = [t for t, r in neurons.items() if r["chosen"] == "top"]
    assert 0 < len(top) <= 2 * 2 * 5  # top_k 5: at most ten per skill
    # 5% of the rest of the organism's 4 x 256 neurons, drawn at random
    assert screen["random_checks"]["neurons"]["n"] == math.ceil(0.05 * (screen["n_neurons"] - len(top)))
    info = read_info(organism_family["organism"])
    size, truth = info["plan"]["block_size"], info["ground_truth"]["ablations"]["zero"]
    selective = {t: r["class"] for t, r in neurons.items() if r["class"] in ("recall", "reasoning")}
    assert selective  # measured: 8 single reasoning neurons of the planted blocks of layers 2 and 3
    for tid, cls in selective.items():
        n = parse_target(tid)
        block = f"neurons-L{n.layer}-B{n.neuron // size}"
        assert truth.get(block, {}).get("class") == cls, (tid, cls, block)


def test_the_report_shows_each_confirmed_target_beside_its_estimate(screened_run):
    screened_run.result("H5")
    html = render_html(json.loads(json.dumps(verdicts_document(screened_run))))
    assert "H5 screen and exact confirmation" in html and "1024 single neurons included" in html
    assert "Single neurons: the top 10 per skill and 5% of the rest, 51 drawn at random" in html
    for tid in screened_run.result("H5").summary["screen"]["confirmed"]:
        assert f"<td>{tid}</td>" in html


def test_a_gate_measures_every_target_its_baseline_classified(screened_run, tmp_path):
    """A gate on a screened model ablates exactly the baseline's targets whatever its own screen ranks
    (with top_k 1 the screen alone would leave most of them unmeasured): the same units on the same
    pairs, and no more exact ablations than its baseline made."""
    screened_run.result("H5")
    baseline = tmp_path / "verdicts.json"
    baseline.write_text(json.dumps(verdicts_document(screened_run)))
    config = tmp_path / "gate.yaml"
    config.write_text("h5:\n  screen: attribution\n  top_k: 1\n  random_fraction: 0\n  neuron_random_fraction: 0\n")
    gate = Run(Settings(model="organism", config=str(config), baseline=str(baseline), device="cpu", progress=False))
    h5 = gate.result("H5")
    before = screened_run.result("H5").components
    assert set(before) == set(h5.components)
    chosen = {r["chosen"] for r in h5.summary["screen"]["confirmed"].values()}
    assert chosen == {"baseline"}
    planted = {cid: e.value for cid, e in expected_components(screened_run.inputs, "H5").items() if e.value != "none"}
    assert {cid: h5.components[cid].cls for cid in planted} == planted
