"""The suite scored on the organism family and on damaged copies of the planted organism against their
known truth: docs/validation.md's "Verdict accuracy" table, its targets met under paired."""

from __future__ import annotations

import pytest

from circuitgate import accuracy

pytestmark = pytest.mark.slow


def test_the_suite_meets_its_accuracy_targets_on_the_organisms(organism_family, organism_cache, tmp_path):
    """docs/validation.md's table: every member of the family and a damaged copy per planted unit (plus one unit
    outside the plan). The targets are paired's; the table's seed-method rows are measured, not held to a
    target, so they are left to the command that writes the table (docs/validation.md)."""
    for name in ("organism", "organism-llama", "organism-null"):
        organism_family[name]
    # Without the d_z intervals and with the fewest resamples for the noise floor: neither enters a
    # verdict or a class (measured: the 12 runs' scores equal the defaults'), and the two were a fifth
    # of the test's time (100 s to 79 s; docs/validation.md, "Verdict accuracy").
    quick = tmp_path / "quick.yaml"
    quick.write_text("paired: {n_boot: 0}\ngate: {resamples: 2}\n")
    report = accuracy.measure(("paired",), cache=organism_cache, workdir=tmp_path, config=quick)
    assert report.meets_targets("paired") == [], accuracy.markdown(report)
    models = [s.model for s in report.by_method("paired")]
    assert models[:3] == ["organism", "organism-llama", "organism-null"] and len(models) == 3 + 8 + 1
    s = report.summary("paired")
    assert s["planted"] == 2 * 8 + 9 * 8 and s["h5"] > 300
    null = next(m for m in report.by_method("paired") if m.model == "organism-null")
    assert null.verdicts["H5"] == ("not_supported", "not_supported") and null.verdicts["H1"][1] is None
