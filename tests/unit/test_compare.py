"""`circuitgate compare` and the gate's rule it shares with --baseline (circuitgate/gate.py): decisions
on change, not on class; skills; verdict flips; old documents; formats and exit codes."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from circuitgate import CircuitgateError
from circuitgate.cli import main
from circuitgate.compare import MAX_ROWS, compare, config_differences, format_markdown, format_table, load_document
from circuitgate.encoding import pack_bits, pack_floats, unpack_floats
from circuitgate.stats import change_of_means, fdr_correction

PAIRS = [f"p{i}" for i in range(24)]
RNG = np.random.default_rng(0)
NOISE = RNG.normal(0, 0.5, size=(24, 8))


def h5_unit(cls: str, mean: float, column: int) -> dict:
    """An H5 target with per-pair interactions around ``mean`` (the effect is their mean)."""
    values = mean + NOISE[:, column] - NOISE[:, column].mean()
    return {"class": cls, "effect": float(values.mean()), "effect_ci": [mean - 0.2, mean + 0.2], "p_adj": None,
            "pair_values": pack_floats(values)}


def doc(**over) -> dict:
    base = {
        "schema": 3,
        "model": {"name": "release", "id": "/models/release", "sha256": "ab" * 32,
                  "shape": {"n_layers": 4, "n_heads": 4, "ffn": 64}},
        "method": "paired",
        "prompts": {"name": "organism", "sha256": "cd" * 32, "n_pairs": 24},
        "config": {"paired": {"alpha": 0.05}, "h5": {"metric": "accuracy"}},
        "clean_accuracy": {"recall": 0.75, "reasoning": 0.75},
        "clean_correct": {"recall": pack_bits(np.arange(24) % 4 != 0), "reasoning": pack_bits(np.arange(24) % 4 != 1)},
        "hypotheses": {
            "H5": {"verdict": "supported", "expected": "supported", "passed": True,
                   "summary": {"threshold": 1, "noise_floor": {"expected_flips": 1.5}},
                   "uncertainty": {"kind": "pairs", "statistic": "mean", "pairs": PAIRS},
                   "components": {
                       "head-L1H0": h5_unit("recall", 0.9, 0),
                       "head-L2H1": h5_unit("reasoning", -0.9, 1),
                       "mlp-L0": h5_unit("mixed", 0.05, 2),
                       "attn-L3": h5_unit("none", 0.0, 3),
                   }},
        },
    }
    base.update(over)
    return base


def unit(d: dict, component: str, hypothesis: str = "H5") -> dict:
    return d["hypotheses"][hypothesis]["components"][component]


def moved(d: dict, component: str, cls: str, by: float, noise: float = 0.0, seed: int = 1) -> dict:
    """A copy of ``d`` with a unit's class set and its per-pair values shifted by ``by`` (plus noise
    of that sd per pair, as a changed model shifts each pair differently)."""
    d = copy.deepcopy(d)
    c = unit(d, component)
    values = unpack_floats(c["pair_values"]) + by + np.random.default_rng(seed).normal(0, noise, 24)
    c.update({"class": cls, "effect": float(values.mean()), "pair_values": pack_floats(values)})
    return d


def by_unit(c) -> dict:
    return {d.unit: d.decision for d in c.report.units}


def test_identical_documents_hold_everything():
    c = compare(doc(), doc())
    assert c.exit_code == 0 and not c.failing and not c.notes
    assert set(by_unit(c).values()) == {"held"}
    assert [d.decision for d in c.report.skills] == ["held", "held"]
    assert "PASS: nothing regressed" in format_table(c) and "PASS: nothing regressed" in format_markdown(c)


def test_a_class_that_changes_with_its_effect_regresses():
    b = moved(doc(), "head-L1H0", "none", -0.9)  # the recall head no longer matters
    c = compare(doc(), b)
    assert by_unit(c)["head-L1H0"] == "regressed" and c.exit_code == 1
    d = next(x for x in c.report.units if x.unit == "head-L1H0")
    assert d.delta == pytest.approx(-0.9) and d.delta_ci[1] < -0.1 and d.basis == "pairs"
    assert "class changed and the effect moved beyond the margin 0.1" in d.why
    assert "H5 head-L1H0" in format_table(c).splitlines()[-1]


def test_a_class_that_flips_at_its_threshold_while_its_effect_holds_is_not_a_regression():
    b = moved(doc(), "mlp-L0", "recall", 0.01)  # the bfloat16 kind of change: the same effect, a new class
    c = compare(doc(), b)
    assert by_unit(c)["mlp-L0"] == "held" and c.exit_code == 0


def test_an_unclear_change_is_unresolved_and_fails_only_under_strict():
    b = moved(doc(), "mlp-L0", "recall", 0.15, noise=0.5)  # beyond the margin by its estimate, not significantly
    c = compare(doc(), b)
    assert by_unit(c)["mlp-L0"] == "unresolved" and c.exit_code == 0
    assert compare(doc(), b, strict=True).exit_code == 1
    assert "unresolved" in format_table(c)


def test_the_correction_runs_across_the_hypothesis_units():
    """p_adj is Benjamini-Hochberg over every unit of the hypothesis the two runs share."""
    a = doc()
    for i in range(20):
        a["hypotheses"]["H5"]["components"][f"head-L0H{i}"] = h5_unit("mixed", 0.0, i % 8)
    b = a
    for i in range(20):
        b = moved(b, f"head-L0H{i}", "recall", 0.1 * (i % 5), noise=0.3, seed=i)
    c = compare(a, b)
    ids = list(a["hypotheses"]["H5"]["components"])
    values = [np.stack([unpack_floats(unit(d, u)["pair_values"]) for u in ids], axis=1) for d in (a, b)]
    raw = change_of_means(*values, 0.1, paired=True).p_moved
    expected = dict(zip(ids, fdr_correction(raw, 0.05, "bh").p_adj))
    assert {d.unit: d.p_adj for d in c.report.units} == pytest.approx(expected)


def test_a_unit_only_in_b_is_added_and_one_not_measured_in_b_is_unresolved_unless_it_was_none():
    b = copy.deepcopy(doc())
    comps = b["hypotheses"]["H5"]["components"]
    del comps["attn-L3"], comps["mlp-L0"]
    comps["head-L3H3"] = h5_unit("reasoning", -0.5, 4)
    c = compare(doc(), b)
    assert by_unit(c) == {"head-L1H0": "held", "head-L2H1": "held", "mlp-L0": "unresolved", "attn-L3": "held",
                          "head-L3H3": "added"}


def test_units_on_other_pairs_are_compared_unpaired():
    b = copy.deepcopy(doc())
    b["hypotheses"]["H5"]["uncertainty"]["pairs"] = [f"q{i}" for i in range(24)]  # another subsample
    c = compare(doc(), b)
    d = next(x for x in c.report.units if x.unit == "head-L1H0")
    assert d.delta == pytest.approx(0.0) and d.delta_ci[1] - d.delta_ci[0] > 0.3  # no pairing: a wide interval


def test_a_skill_that_drops_beyond_the_margin_regresses_first():
    b = copy.deepcopy(doc())
    recall = np.arange(24) % 4 != 0
    recall[:12] = False  # 0.75 -> 0.38
    b["clean_correct"]["recall"] = pack_bits(recall)
    c = compare(doc(), b)
    skill = c.report.skills[0]
    assert (skill.unit, skill.decision, skill.before, skill.after) == ("recall", "regressed", "0.75", "0.38")
    assert c.failing[0] is skill and c.failing[0].name == "recall accuracy"
    assert "recall accuracy 0.75 -> 0.38, -0.375" in skill.describe()


def test_a_small_skill_drop_is_not_a_regression():
    b = copy.deepcopy(doc())
    recall = np.arange(24) % 4 != 0
    recall[1] = False  # one answer lost: 0.75 -> 0.71
    b["clean_correct"]["recall"] = pack_bits(recall)
    assert compare(doc(), b).report.skills[0].decision in ("unresolved", "held")
    assert compare(doc(), b).exit_code == 0


def test_a_verdict_that_flips_through_units_that_held_is_unresolved():
    # H5 needs a selective unit of each skill: the reasoning head turns mixed with its effect unmoved.
    b = moved(doc(), "head-L2H1", "mixed", 0.0)
    b["hypotheses"]["H5"]["verdict"] = "not_supported"
    c = compare(doc(), b)
    (h5,) = c.report.hypotheses
    assert h5.decision == "unresolved" and "reasoning-selective 1 -> reasoning-selective 0" in h5.why.replace(
        "recall-selective 1, ", "")
    assert c.exit_code == 0


def test_a_verdict_that_flips_through_a_regressed_unit_regresses():
    b = moved(doc(), "head-L2H1", "none", 0.9)
    b["hypotheses"]["H5"]["verdict"] = "not_supported"
    c = compare(doc(), b)
    (h5,) = c.report.hypotheses
    assert h5.decision == "regressed" and "explained by the regressed units: H5 head-L2H1" in h5.why


def test_h5_inconclusive_by_a_clean_accuracy_crossing_follows_the_skill():
    b = copy.deepcopy(doc())
    b["hypotheses"]["H5"]["verdict"] = "inconclusive"
    b["hypotheses"]["H5"]["summary"]["reason"] = "clean accuracy on recall below h5.min_clean_accuracy 0.5: ..."
    recall = np.arange(24) % 4 != 0
    recall[0:2] = [False, False]  # a small drop: not a skill regression
    b["clean_correct"]["recall"] = pack_bits(recall)
    (h5,) = compare(doc(), b).report.hypotheses
    assert h5.decision == "unresolved" and "crossed h5.min_clean_accuracy by less than its uncertainty" in h5.why
    recall[:14] = False
    b["clean_correct"]["recall"] = pack_bits(recall)
    (h5,) = compare(doc(), b).report.hypotheses
    assert h5.decision == "regressed" and "a skill regressed" in h5.why


def test_a_document_before_schema_3_is_judged_by_the_old_rule_and_says_so():
    old = copy.deepcopy(doc(schema=2))
    del old["clean_correct"]
    for c in old["hypotheses"]["H5"]["components"].values():
        del c["pair_values"]
    del old["hypotheses"]["H5"]["uncertainty"]
    b = moved(doc(), "mlp-L0", "recall", 0.01)
    c = compare(old, b)
    assert by_unit(c)["mlp-L0"] == "regressed" and not c.report.skills
    assert any("judged by the old rule" in n for n in c.notes)


def test_intervals_are_the_basis_when_a_unit_has_no_per_pair_values():
    a = doc()
    for c in a["hypotheses"]["H5"]["components"].values():
        del c["pair_values"]
    b = copy.deepcopy(a)
    unit(b, "head-L1H0").update({"class": "none", "effect": 0.0, "effect_ci": [-0.2, 0.2]})
    c = compare(a, b)
    d = next(x for x in c.report.units if x.unit == "head-L1H0")
    assert d.basis == "intervals" and d.decision == "regressed"


@pytest.mark.parametrize("field, value, named", [
    ("schema", 1, "schema: A 3, B 1"),
    ("method", "original", "method: A paired, B original"),
    ("prompts", {"name": "geography", "sha256": "ef" * 32}, "prompt set: A organism (sha256 cdcdcdcdcdcd), "
                                                            "B geography (sha256 efefefefefef)"),
    ("model", {"name": "x", "id": "x", "sha256": "0", "shape": {"n_layers": 5, "n_heads": 4, "ffn": 64}},
     "model shape: A 4 layers x 4 heads, 64 MLP neurons per layer, B 5 layers x 4 heads, 64 MLP neurons per layer"),
])
def test_incomparable_documents_are_refused_saying_which(field, value, named):
    with pytest.raises(CircuitgateError, match="cannot be compared") as e:
        compare(doc(), doc(**{field: value}))
    assert named in str(e.value)


def test_schemas_2_and_3_compare():
    assert compare(doc(schema=2), doc()).report is not None


def test_setting_differences_are_noted():
    b = doc(config={"paired": {"alpha": 0.01}, "h5": {"metric": "accuracy"}})
    assert config_differences(doc(), b) == ["paired.alpha 0.05 -> 0.01"]
    assert any("paired.alpha 0.05 -> 0.01" in n for n in compare(doc(), b).notes)


def test_hypotheses_in_one_document_only_are_noted_not_compared():
    a = doc()
    a["hypotheses"]["H1"] = {"verdict": "supported", "summary": {}, "components": {}}
    c = compare(a, doc())
    assert [x.hypothesis for x in c.report.hypotheses] == ["H5"] and c.exit_code == 0
    assert c.notes == ["paired: not in both runs, not compared: H1 (A only)"]


def test_method_both_compares_each_method_and_names_it():
    a = doc(method="both")
    a["by_method"] = {"paired": a["hypotheses"], "original": copy.deepcopy(a["hypotheses"])}
    b = copy.deepcopy(a)
    b["by_method"]["original"] = moved({"hypotheses": b["by_method"]["original"]}, "head-L1H0", "none", -0.9)["hypotheses"]
    c = compare(a, b)
    assert [c.label(x) for x in c.failing] == ["original: H5 head-L1H0"]
    assert "| original | H5 | head-L1H0 |" in format_markdown(c)
    assert [d.unit for d in c.report.skills] == ["recall", "reasoning"]  # one clean accuracy, whatever the methods


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


def test_held_units_are_counted_not_listed_and_a_comment_stays_short(tmp_path, capsys):
    a = doc()
    comps = a["hypotheses"]["H5"]["components"]
    for i in range(30):
        comps[f"head-L0H{i}"] = h5_unit("mixed", 0.0, i % 8)
    b = copy.deepcopy(a)
    for i in range(20):
        b = moved(b, f"head-L0H{i}", "none", -1.0 - i * 0.01)
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    assert main(["compare", str(pa), str(pb)]) == 1
    table = capsys.readouterr().out
    assert "head-L0H25" not in table and "units: 20 regressed, 0 unresolved, 0 added, 14 held" in table
    assert "noise floor of A (class flips a rerun on resampled pairs would give by chance): H5 1.5" in table
    assert main(["compare", str(pa), str(pb), "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    assert f"#### Units (first {MAX_ROWS} of 20)" in md and md.count("| H5 | head-L0H") == MAX_ROWS
    assert main(["compare", str(pa), str(pb), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["n_failing"] == 20 and len(data["units"]) == 34 and data["counts"]["held"] == 14


def test_cli_exit_codes_formats_and_strict(tmp_path, capsys):
    pa, pb, pu = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "u.json"
    pa.write_text(json.dumps(doc()))
    pb.write_text(json.dumps(moved(doc(), "head-L1H0", "none", -0.9)))
    pu.write_text(json.dumps(moved(doc(), "mlp-L0", "recall", 0.15, noise=0.5)))
    assert main(["compare", str(pa), str(pa)]) == 0
    capsys.readouterr()
    assert main(["compare", str(pa), str(pb), "--format", "markdown", "--label", "release", "candidate"]) == 1
    md = capsys.readouterr().out
    assert md.startswith("### circuitgate compare: **FAIL: 1 regressed**")
    assert "| H5 | head-L1H0 | recall -> none |" in md and md.rstrip().endswith("H5 1.5")
    assert main(["compare", str(pa), str(pb), "--format", "json", "-o", str(tmp_path / "c.json")]) == 1
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["failing"] == ["H5 head-L1H0"] and data["b"]["label"] == "B"
    assert main(["compare", str(pa), str(pu)]) == 0
    assert main(["compare", str(pa), str(pu), "--strict"]) == 1
    assert "FAIL: 1 regressed or unresolved (strict)" in capsys.readouterr().out


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    ("{", "is not valid JSON"),
    ("[]", "is not a circuitgate verdicts.json (no schema, method, prompts, hypotheses)"),
    ('{"schema": 3, "method": "paired", "prompts": {}}', "(no hypotheses)"),
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


def test_corrupt_per_pair_values_are_one_line_and_exit_2(tmp_path, capsys):
    b = doc()
    unit(b, "mlp-L0")["pair_values"] = "not base64!"
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(doc()))
    pb.write_text(json.dumps(b))
    assert main(["compare", str(pa), str(pb)]) == 2
    assert "packed values are not base64" in capsys.readouterr().err


def test_incomparable_files_exit_2(tmp_path, capsys):
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(doc()))
    pb.write_text(json.dumps(doc(method="original")))
    assert main(["compare", str(pa), str(pb)]) == 2
    assert "cannot be compared: method: A paired, B original" in capsys.readouterr().err
