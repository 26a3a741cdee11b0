"""`circuitgate compare` and the rule it shares with --baseline: flips, effect changes, exit codes."""

from __future__ import annotations

import copy
import json

import pytest

from circuitgate import CircuitgateError
from circuitgate.cli import main
from circuitgate.compare import MAX_ROWS, compare, config_differences, format_markdown, format_table, load_document, \
    outcome


def doc(**over) -> dict:
    base = {
        "schema": 2,
        "model": {"name": "release", "id": "/models/release", "sha256": "ab" * 32},
        "method": "paired",
        "prompts": {"name": "organism", "sha256": "cd" * 32, "n_pairs": 64},
        "config": {"paired": {"alpha": 0.05}},
        "hypotheses": {
            "H1": {"verdict": "supported", "expected": "not_supported", "passed": False, "summary": {},
                   "components": {
                       "L00": {"class": "recall", "effect": -1.5, "effect_ci": [-1.8, -1.2], "p_adj": 1e-6},
                       "L01": {"class": "none", "effect": 0.1, "effect_ci": [-0.2, 0.4], "p_adj": 0.5},
                   }},
            "H5": {"verdict": "not_supported", "expected": "not_supported", "passed": True, "summary": {},
                   "components": {
                       "mlp-L0": {"class": "mixed", "effect": -0.4, "effect_ci": [-0.5, -0.3], "p_adj": None},
                       "neurons-L1-recall": {"class": "none", "effect": 0.0, "effect_ci": None, "p_adj": None},
                   }},
        },
    }
    base.update(over)
    return base


def changed(d: dict, hypothesis: str, component: str | None = None, **values) -> dict:
    d = copy.deepcopy(d)
    entry = d["hypotheses"][hypothesis]
    (entry if component is None else entry["components"][component]).update(values)
    return d


@pytest.mark.parametrize("before, after, expected", [
    ("recall", "recall", "same"), ("recall", "mixed", "regression"), ("none", "recall", "regression"),
    ("recall", None, "regression"), ("none", None, "same"), (None, "recall", "added"),
    ("supported", "not_supported", "regression"), ("not_supported", "supported", "regression"),
])
def test_outcome(before, after, expected):
    assert outcome(before, after) == expected


def test_identical_documents_have_nothing_to_report():
    c = compare(doc(), doc())
    assert c.exit_code == 0 and not c.regressions and not c.flips and not c.effect_changes and not c.notes
    assert [x.outcome for x in c.hypotheses] == ["same", "same"]
    assert "no regressions" in format_table(c) and "PASS: no regressions" in format_markdown(c)


def test_a_class_flip_is_a_regression_even_towards_the_old_expectation():
    # H1 was expected not_supported and failed that; becoming not_supported is still a change to review.
    b = changed(doc(), "H1", verdict="not_supported")
    b = changed(b, "H1", "L00", **{"class": "none", "effect": -0.1, "effect_ci": [-0.3, 0.1]})
    c = compare(doc(), b)
    assert c.exit_code == 1
    assert [x.name for x in c.regressions] == ["H1", "H1 L00"]
    (moved,) = c.effect_changes
    assert moved.component == "L00" and moved.disjoint and moved.delta == pytest.approx(1.4)
    table = format_table(c)
    assert "regressed: H1, H1 L00" in table and "-1.5 [-1.8, -1.2]" in table and "+1.4" in table


def test_effects_that_move_within_their_intervals_are_not_changes():
    b = changed(doc(), "H1", "L00", effect=-1.3, effect_ci=[-1.6, -1.0])
    c = compare(doc(), b)
    assert c.exit_code == 0 and not c.effect_changes
    assert {x.component: x.delta for x in c.components}["L00"] == pytest.approx(0.2)


def test_vanished_and_added_components():
    b = copy.deepcopy(doc())
    comps = b["hypotheses"]["H5"]["components"]
    del comps["neurons-L1-recall"]  # was none: may vanish
    del comps["mlp-L0"]  # was mixed: vanishing regresses
    comps["neurons-L2-reasoning"] = {"class": "reasoning", "effect": -0.3, "effect_ci": [-0.4, -0.2], "p_adj": None}
    c = compare(doc(), b)
    by = {x.component: x.outcome for x in c.components}
    assert by == {"L00": "same", "L01": "same", "mlp-L0": "regression", "neurons-L1-recall": "same",
                  "neurons-L2-reasoning": "added"}
    assert [x.name for x in c.regressions] == ["H5 mlp-L0"]
    assert "absent" in format_table(c)


@pytest.mark.parametrize("field, value, named", [
    ("schema", 1, "schema: A 2, B 1"),
    ("method", "original", "method: A paired, B original"),
    ("prompts", {"name": "geography", "sha256": "ef" * 32}, "prompt set: A organism (sha256 cdcdcdcdcdcd), "
                                                            "B geography (sha256 efefefefefef)"),
    ("prompts", {"name": "organism", "sha256": "ef" * 32}, "prompt set: A organism (sha256 cdcdcdcdcdcd), "
                                                           "B organism (sha256 efefefefefef)"),
])
def test_incomparable_documents_are_refused_saying_which(field, value, named):
    with pytest.raises(CircuitgateError, match="cannot be compared") as e:
        compare(doc(), doc(**{field: value}))
    assert named in str(e.value)


def test_threshold_differences_are_noted():
    b = doc(config={"paired": {"alpha": 0.01}})
    assert config_differences(doc(), b) == ["paired.alpha 0.05 -> 0.01"]
    assert any("paired.alpha 0.05 -> 0.01" in n for n in compare(doc(), b).notes)


def test_hypotheses_in_one_document_only_are_noted_not_compared():
    b = copy.deepcopy(doc())
    del b["hypotheses"]["H5"]  # e.g. a `-k H1` run
    c = compare(doc(), b)
    assert [x.hypothesis for x in c.hypotheses] == ["H1"] and c.exit_code == 0
    assert c.notes == ["paired: not in both runs, not compared: H5 (only A)"]


def test_method_both_compares_each_method_and_names_it():
    a = doc(method="both")
    a["by_method"] = {"paired": a["hypotheses"], "original": copy.deepcopy(a["hypotheses"])}
    b = copy.deepcopy(a)
    b["by_method"]["original"]["H1"]["components"]["L01"]["class"] = "reasoning"
    c = compare(a, b)
    assert [c.label(x) for x in c.regressions] == ["original: H1 L01"]
    assert "| original | H1 | L01 |" in format_markdown(c)


def test_a_document_from_when_the_original_method_was_called_seed_compares_as_original(tmp_path):
    old = doc(method="both")
    old["by_method"] = {"paired": old["hypotheses"], "seed": copy.deepcopy(old["hypotheses"])}
    (tmp_path / "old.json").write_text(json.dumps({**old, "method": "seed"}))
    loaded = load_document(tmp_path / "old.json")
    assert loaded["method"] == "original" and set(loaded["by_method"]) == {"paired", "original"}


def test_a_document_on_the_prompt_set_before_its_rename_compares_as_the_renamed_set(tmp_path):
    """geography-seed became geography-paper with the same prompts: a baseline on the old name (and so
    the old name's hash) still gates a run on the new; edited prompts under the old name do not."""
    from circuitgate.prompts import load_prompt_set
    from circuitgate.prompts.schema import _canonical_hash

    paper = load_prompt_set("geography-paper")
    old_sha = _canonical_hash(paper.schema, "geography-seed", paper.pairs, paper.controls)
    old = doc(method="original", prompts={"name": "geography-seed", "sha256": old_sha})
    (tmp_path / "old.json").write_text(json.dumps(old))
    loaded = load_document(tmp_path / "old.json")
    assert loaded["prompts"] == {"name": "geography-paper", "sha256": paper.sha256}
    assert compare(loaded, doc(method="original", prompts={"name": paper.name, "sha256": paper.sha256})).exit_code == 0
    (tmp_path / "edited.json").write_text(json.dumps({**old, "prompts": {"name": "geography-seed", "sha256": "2" * 64}}))
    assert load_document(tmp_path / "edited.json")["prompts"] == {"name": "geography-seed", "sha256": "2" * 64}


def test_effect_changes_are_capped_in_tables_but_not_in_json(tmp_path, capsys):
    a = doc()
    comps = {f"L{i:02d}": {"class": "none", "effect": 0.0, "effect_ci": [-0.1, 0.1], "p_adj": 0.5} for i in range(20)}
    a["hypotheses"]["H1"]["components"] = comps
    b = copy.deepcopy(a)
    for i, c in enumerate(b["hypotheses"]["H1"]["components"].values()):
        c.update(effect=1.0 + i, effect_ci=[0.5 + i, 1.5 + i])
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    assert main(["compare", str(pa), str(pb)]) == 0  # effects moved, no class changed
    out = capsys.readouterr().out
    assert f"(largest {MAX_ROWS} of 20)" in out and "L19" in out and "L04" not in out
    assert main(["compare", str(pa), str(pb), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert sum(x["ci_disjoint"] for x in data["components"]) == 20 and data["n_regressions"] == 0


def test_cli_exit_codes_and_formats(tmp_path, capsys):
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(doc()))
    pb.write_text(json.dumps(changed(doc(), "H5", "mlp-L0", **{"class": "none"})))
    assert main(["compare", str(pa), str(pa)]) == 0
    capsys.readouterr()
    assert main(["compare", str(pa), str(pb), "--format", "markdown", "--label", "release", "candidate"]) == 1
    md = capsys.readouterr().out
    assert md.startswith("### circuitgate compare: **FAIL: 1 regression**")
    assert "Regressed: `H5 mlp-L0`" in md and "| H5 | mlp-L0 | mixed | none | regression |" in md
    assert main(["compare", str(pa), str(pb), "--format", "json", "-o", str(tmp_path / "c.json")]) == 1
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["regressions"] == ["H5 mlp-L0"] and data["b"]["label"] == "B"


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{", "is not valid JSON"),
    ("[]", "is not a circuitgate verdicts.json (no schema, method, prompts, hypotheses)"),
    ('{"schema": 2, "method": "paired", "prompts": {}}', "(no hypotheses)"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(doc()))
    assert main(["compare", str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    with pytest.raises(CircuitgateError):
        load_document(bad)


def test_incomparable_files_exit_2(tmp_path, capsys):
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(doc()))
    pb.write_text(json.dumps(doc(method="original")))
    assert main(["compare", str(pa), str(pb)]) == 2
    assert "cannot be compared: method: A paired, B original" in capsys.readouterr().err
