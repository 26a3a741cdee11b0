"""H5's attribution path on the organism, against its measured truth: the screen picks which targets
are measured exactly, and after confirmation every planted component must be there with its class."""

from __future__ import annotations

import pytest

from circuitgate.analyses import expected_components
from circuitgate.session import Run, Settings

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
    assert screen["path"] == "attribution" and screen["method"] == "ig" and screen["steps"] == 4
    planted = {cid: e.value for cid, e in expected_components(screened_run, "H5").items() if e.value != "none"}
    assert len(planted) == 14
    found = {cid: h5.components[cid].cls for cid in planted if cid in h5.components}
    assert found == planted
    # Only exactly measured targets are classified, and fewer than all of them were measured.
    assert set(h5.components) == set(screen["confirmed"])
    assert len(h5.components) < len(screen["estimates"])
    assert h5.verdict == "supported"
