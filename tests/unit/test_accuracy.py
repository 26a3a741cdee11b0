"""Verdict accuracy: the scoring, on made-up scores (tests/e2e/test_accuracy_on_the_family.py scores the
suite on the organisms themselves)."""

from __future__ import annotations


from circuitgate import accuracy
from circuitgate.accuracy import ModelScore, Report


def _report() -> Report:
    good = ModelScore("organism", "paired", verdicts={"H1": ("supported", "supported"), "H5": ("supported", "supported")},
                      h5=[("head-L1H0", "recall", "recall"), ("head-L2H1", "reasoning", "reasoning"),
                          ("mlp-L0", "mixed", "mixed"), ("head-L3H3", "none", "none")],
                      planted=[("H2", "L01H00", "recall", "recall"), ("H2", "L02H01", "reasoning", "reasoning")])
    bad = ModelScore("copy", "paired", verdicts={"H1": ("supported", None), "H5": ("supported", "not_supported")},
                     h5=[("head-L1H0", "mixed", "recall"), ("head-L2H1", "none", "none")],
                     planted=[("H2", "L01H00", "reasoning", "recall"), ("H2", "L02H01", "none", "reasoning")])
    return Report([good, bad])


def test_scores_verdicts_classes_and_planted_units():
    s = _report().summary("paired")
    assert (s["verdicts_right"], s["verdicts"]) == (2, 3)  # a verdict without truth is not scored
    assert (s["h5_right"], s["h5"]) == (5, 6)
    assert s["h5_per_class"]["recall"] == {"precision": 1.0, "recall": 0.5, "n_truth": 2, "n_called": 1}
    assert s["h5_per_class"]["mixed"]["precision"] == 0.5 and s["h5_per_class"]["none"]["recall"] == 1.0
    assert (s["planted_found"], s["planted"], s["planted_opposite"]) == (2, 4, 1)


def test_targets_name_what_falls_short():
    assert _report().meets_targets("paired") == [
        "1 hypothesis verdict(s) wrong", "H5 classes right 5/6 < 95%", "planted units found 2/4 < 90%",
        "1 planted unit(s) reported with the opposite class"]
    assert Report([_report().scores[0]]).meets_targets("paired") == []


def test_markdown_marks_wrong_verdicts_with_the_truth():
    table = accuracy.markdown(_report())
    assert "| copy | supported | - | - | - | **supported** (truth not_supported) | 1/2 | 0/2 |" in table
    assert "| organism | supported | - | - | - | supported | 4/4 | 2/2 |" in table
    assert "| recall | 1.00 | 0.50 | 2 |" in table
