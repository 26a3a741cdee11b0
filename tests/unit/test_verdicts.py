"""Verdicts (judging, verdicts.json entries and atomic writes) and expectations sources."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from circuitgate import CircuitgateError
from circuitgate.config import Config, H1Config, H2Config, H5Config, ScaledCount
from circuitgate.expectations import Expectations, Figure, from_file, from_ground_truth, summary_value
from circuitgate.models.adapters import Shape
from circuitgate.results import ComponentResult, HypothesisResult
from circuitgate.vocabulary import CLASSES, VERDICTS
from circuitgate.judging import (
    Expected,
    from_baseline,
    hypothesis_entry,
    judge_component,
    judge_hypothesis,
    jsonable,
    passes,
    read_verdicts,
    write_json_atomic,
)


def result(verdict: str = "supported", **summary) -> HypothesisResult:
    comps = {
        "L00": ComponentResult("L00", "recall", -1.3, 0.001, {"votes": np.int64(3)}),
        "L01": ComponentResult("L01", "none", 0.12345, 0.5),
        "L02": ComponentResult("L02", "reasoning", np.float64(2.0), np.float32(float("nan"))),
    }
    return HypothesisResult("H1", verdict, "paired", summary or {"n_specialised": 6, "threshold": 5}, comps)


# -- judging -------------------------------------------------------------------------------------


def test_hypothesis_passes_when_verdict_matches():
    j = judge_hypothesis(result("supported"), "supported")
    assert j.passed
    assert j.message == "H1 supported as expected (specialised 6, threshold 5)"


def test_hypothesis_fails_on_mismatch_with_the_numbers():
    j = judge_hypothesis(result("not_supported", n_specialised=2, threshold=5), "supported")
    assert not j.passed
    assert j.message == "H1 is not_supported, expected supported (specialised 2, threshold 5)"


def test_inconclusive_never_passes_unless_expected():
    j = judge_hypothesis(result("inconclusive"), "supported")
    assert not j.passed and "inconclusive never passes unless expected" in j.message
    j = judge_hypothesis(result("inconclusive"), "not_supported")
    assert not j.passed
    assert judge_hypothesis(result("inconclusive"), "inconclusive").passed


def test_judge_hypothesis_without_counts_in_the_summary():
    j = judge_hypothesis(result("supported", other=1), "supported")
    assert j.passed and j.message == "H1 supported as expected ()"


@pytest.mark.parametrize("verdict", ["supported", "not_supported", "inconclusive"])
@pytest.mark.parametrize("expected", ["supported", "not_supported", "inconclusive"])
def test_hypothesis_passes_iff_equal(verdict, expected):
    assert judge_hypothesis(result(verdict), expected).passed is (verdict == expected)


@pytest.mark.parametrize("got", [*CLASSES, *VERDICTS, None])
@pytest.mark.parametrize("expected", [*CLASSES, *VERDICTS])
def test_the_judge_and_verdicts_json_pass_by_one_rule(got, expected):
    """Equal to the expectation, or absent where ``none`` was expected: the judge's and verdicts.json's
    ``passed`` agree with ``passes`` (and so with the terminal summary, which applies it)."""
    assert passes(expected, got) is (got == expected or (got is None and expected == "none"))
    units = {} if got is None else {"L00": ComponentResult("L00", got, 0.1, 0.5)}
    r = HypothesisResult("H1", got or "supported", "paired", {}, units)
    assert judge_component(r, "L00", expected).passed is passes(expected, got)
    if got is not None:
        entry = hypothesis_entry(r, expected, {"L00": expected})
        assert entry["passed"] is entry["components"]["L00"]["passed"] is passes(expected, got)
        assert judge_hypothesis(r, expected).passed is passes(expected, got)


def test_judge_component():
    r = result()
    j = judge_component(r, "L00", "recall")
    assert j.passed and j.message == "H1 L00 is recall as expected (effect -1.3, p_adj 0.001)"
    j = judge_component(r, "L01", "reasoning")
    assert not j.passed and j.message == "H1 L01 is none, expected reasoning (effect +0.123, p_adj 0.5)"
    # A unit this run lacks (another architecture, a vanished H5 neuron set) passes only if it was none.
    assert judge_component(r, "L99", "none").passed
    j = judge_component(r, "L99", "recall")
    assert not j.passed and j.message == "H1 L99 is not in this run, expected recall"


def test_a_baselines_expectation_is_marked_as_one():
    """A baseline's verdict or class is an expectation the judge hands to the gate (circuitgate/gate.py,
    tests/unit/test_compare.py), which decides on change, not on class."""
    exp = from_baseline({"verdict": "supported", "expected": "not_supported"})
    assert exp == Expected("supported", baseline=True)
    assert from_baseline({"class": "recall"}, "class").value == "recall"


# -- jsonable ------------------------------------------------------------------------------------


def test_jsonable_converts_numpy_and_non_finite():
    doc = {
        1: np.float32(0.5),
        "i": np.int64(7),
        "b": np.bool_(True),
        "nan": float("nan"),
        "inf": np.float64("-inf"),
        "arr": np.array([[1, 2], [3, 4]], dtype=np.int32),
        "farr": np.array([1.5, np.nan]),
        "tup": (1, (2.0, None)),
        "s": "text",
    }
    out = jsonable(doc)
    assert out == {"1": 0.5, "i": 7, "b": True, "nan": None, "inf": None, "arr": [[1, 2], [3, 4]],
                   "farr": [1.5, None], "tup": [1, [2.0, None]], "s": "text"}
    assert type(out["i"]) is int and type(out["b"]) is bool and type(out["1"]) is float
    assert type(out["arr"][0][0]) is int
    json.dumps(out, allow_nan=False)


def test_jsonable_zero_dimensional_array():
    assert jsonable(np.array(2.5)) == 2.5
    assert jsonable({"x": np.array(np.nan)}) == {"x": None}
    assert jsonable(np.array(3, dtype=np.int16)) == 3


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.integers(-1000, 1000).map(np.int64), st.integers(0, 255).map(np.uint8),
    st.floats(width=32).map(np.float32), st.floats().map(np.float64), st.booleans().map(np.bool_),
)
arrays = hnp.arrays(
    st.sampled_from([np.float64, np.float32, np.int32, np.bool_]),
    hnp.array_shapes(min_dims=0, max_dims=3, max_side=3),
)
trees = st.recursive(
    st.one_of(scalars, arrays),
    lambda kids: st.one_of(
        st.lists(kids, max_size=4), st.lists(kids, max_size=3).map(tuple),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(-5, 5)), kids, max_size=4),
    ),
    max_leaves=20,
)


def _plain(x) -> bool:
    if isinstance(x, dict):
        return all(type(k) is str and _plain(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_plain(v) for v in x)
    if isinstance(x, float):
        return math.isfinite(x)
    return x is None or type(x) in (bool, int, str)


@settings(max_examples=150, deadline=None)
@given(trees)
def test_jsonable_output_is_strict_json(tree):
    out = jsonable(tree)
    assert _plain(out)
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text) == out
    assert jsonable(out) == out  # idempotent


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_jsonable_keeps_finite_floats_exactly(x):
    assert jsonable(np.float64(x)) == x and jsonable(x) == x


# -- hypothesis_entry ----------------------------------------------------------------------------


def test_hypothesis_entry():
    entry = hypothesis_entry(result("supported", n_specialised=np.int64(6), threshold=5), "supported",
                             {"L00": "recall", "L01": "reasoning"})
    assert entry["verdict"] == "supported" and entry["expected"] == "supported" and entry["passed"] is True
    assert entry["method"] == "paired"
    assert entry["summary"] == {"n_specialised": 6} | {"threshold": 5}
    comps = entry["components"]
    assert comps["L00"] == {"class": "recall", "effect": -1.3, "effect_ci": None, "p_adj": 0.001, "votes": 3,
                            "expected": "recall", "passed": True}
    assert comps["L01"]["expected"] == "reasoning" and comps["L01"]["passed"] is False
    assert comps["L02"] == {"class": "reasoning", "effect": 2.0, "effect_ci": None, "p_adj": None}  # no expectation
    json.dumps(entry, allow_nan=False)


def test_hypothesis_entry_failed():
    entry = hypothesis_entry(result("inconclusive"), "supported", {})
    assert entry["passed"] is False and entry["verdict"] == "inconclusive"
    assert all("passed" not in c for c in entry["components"].values())


# -- write_json_atomic ---------------------------------------------------------------------------


def test_write_json_atomic_writes_and_creates_parents(tmp_path):
    path = tmp_path / "a" / "b" / "verdicts.json"
    doc = {"schema": 1, "x": [1, 2.5, None], "s": "é"}
    write_json_atomic(path, doc)
    assert read_verdicts(path) == doc
    assert path.read_text().endswith("}\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["verdicts.json"]


def test_write_json_atomic_replaces(tmp_path):
    path = tmp_path / "v.json"
    write_json_atomic(path, {"n": 1})
    write_json_atomic(path, {"n": 2})
    assert json.loads(path.read_text()) == {"n": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["v.json"]


def test_write_json_atomic_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "v.json"
    write_json_atomic(path, {"n": 1})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": list(range(1000)), "z": object()})  # fails mid-dump
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.json"]  # no temporary left behind


def test_write_json_atomic_failure_without_an_old_file(tmp_path):
    path = tmp_path / "v.json"
    with pytest.raises(TypeError):
        write_json_atomic(path, {"z": {1, 2}})
    assert list(tmp_path.iterdir()) == []


def test_write_json_atomic_interrupt_keeps_the_old_file(tmp_path):
    path = tmp_path / "v.json"
    write_json_atomic(path, {"n": 1})
    with pytest.raises(KeyboardInterrupt):
        write_json_atomic(path, {"n": 2, "later": {"a": 1}, "x": _Raising()})
    assert json.loads(path.read_text()) == {"n": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["v.json"]


class _Raising(dict):
    """A mapping the JSON encoder walks into, which raises a BaseException halfway through."""

    def __init__(self):
        super().__init__(k=1)

    def items(self):
        raise KeyboardInterrupt


# -- expectations: organism ground truth ---------------------------------------------------------

SHAPE = Shape(n_layers=4, n_heads=2, n_kv_heads=1, head_dim=8, hidden=16, ffn=32)


# Per-item correctness (20 probe items per task, all correct when clean) that H5's rule classifies as
# the given class: half the items broken on the hurt task(s), none on the other.
_CLEAN, _HALF = "1" * 20, "0" * 10 + "1" * 10
_BITS = {"recall": (_HALF, _CLEAN), "reasoning": (_CLEAN, _HALF), "mixed": (_HALF, _HALF), "none": (_CLEAN, _CLEAN)}


def _table(classes: dict[str, str]) -> dict:
    return {t: dict(zip(("recall_correct", "reasoning_correct"), _BITS[c])) for t, c in classes.items()}


def ground_truth(attn: list[str], mlp: list[str], heads: dict[tuple[int, int], str],
                 blocks: dict[str, str] | None = None, activation: dict | None = None,
                 mean: dict[str, str] | None = None) -> dict:
    """An organism.json's truth sections; ``mean`` overrides classes under mean ablation."""
    classes = {}
    for i, (a, m) in enumerate(zip(attn, mlp)):
        classes[f"attn-L{i}"], classes[f"mlp-L{i}"] = a, m
        for h in range(SHAPE.n_heads):
            classes[f"head-L{i}H{h}"] = heads.get((i, h), "none")
    classes.update(blocks or {})
    tables = {kind: _table(classes) for kind in ("zero", "resample")}
    tables["mean"] = _table({**classes, **(mean or {})})
    return {"name": "organism",
            "plan": {"block_size": 16},
            "ground_truth": {"metric": "accuracy", "rule": {"tau": 0.1, "level": 0.95, "n_boot": 2000, "seed": 0},
                             "clean_correct": {"recall": _CLEAN, "reasoning": _CLEAN}, "targets": list(classes),
                             "ablations": tables},
            "activation_truth": activation or {}}


INFO = ground_truth(
    attn=["recall", "recall", "none", "reasoning"],
    mlp=["none", "reasoning", "none", "reasoning"],
    heads={(1, 0): "recall", (3, 1): "mixed"},
    blocks={"neurons-L1-B0": "reasoning", "neurons-L1-B1": "none"},
    activation={"H1": {"L01": {"class": "recall"}, "L03": {"class": "reasoning"}},
                "H2": {"L01H00": {"class": "recall"}},
                "H3": {"L01": {"class": "reasoning"}}},
    mean={"head-L1H0": "mixed"},
)


def test_ground_truth_h5_is_every_measured_target_under_the_runs_ablation():
    e = from_ground_truth(INFO, SHAPE, Config())
    h5 = dict(e.components["H5"])
    assert list(h5) == INFO["ground_truth"]["targets"] and len(h5) == 4 * (2 + SHAPE.n_heads) + 2
    assert h5["head-L1H0"] == "recall" and h5["head-L3H1"] == "mixed" and h5["neurons-L1-B0"] == "reasoning"
    assert from_ground_truth(INFO, SHAPE, Config(h5=H5Config(ablation="mean"))).components["H5"]["head-L1H0"] == "mixed"
    assert e.verdicts["H5"] == "supported" and e.source.startswith("organism ground truth")
    # the neuron blocks become H5 targets of their own
    assert dict(e.neuron_sets) == {"neurons-L1-B0": (1, tuple(range(16))), "neurons-L1-B1": (1, tuple(range(16, 32)))}


def test_ground_truth_h1_to_h3_assert_the_planted_activation_units_only():
    e = from_ground_truth(INFO, SHAPE, Config())
    assert dict(e.components["H1"]) == {"L01": "recall", "L03": "reasoning"}
    assert dict(e.components["H2"]) == {"L01H00": "recall"} and dict(e.components["H3"]) == {"L01": "reasoning"}
    # defaults: 5/28 of 4 layers -> 1 layer; 20/784 of 8 heads -> 1 head; 1/28 -> 1 layer
    assert {h: e.verdicts[h] for h in ("H1", "H2", "H3")} == {h: "supported" for h in ("H1", "H2", "H3")}
    assert e.notes["H1"] == ("only the 2 units planted to differ in activation are asserted (L01, L03); "
                             "the other units carry no activation claim")


def test_ground_truth_activation_verdicts_need_the_threshold():
    above = Config(h1=H1Config(min_layers=ScaledCount(3, 4)), h2=H2Config(min_heads=ScaledCount(2, 8)))
    verdicts = from_ground_truth(INFO, SHAPE, above).verdicts
    assert "H1" not in verdicts and "H2" not in verdicts and verdicts["H3"] == "supported"


def test_ground_truth_keeps_its_own_rule_under_another_metric():
    # A min_drop of 0.6 in accuracy units would make every half-broken target "none"; in logit units
    # it says nothing about accuracy drops, so the truth's stored rule (tau 0.1) classifies.
    accuracy = Config(h5=H5Config(min_drop=0.6))
    logits = Config(h5=H5Config(metric="logit_diff", min_drop=0.6))
    assert set(from_ground_truth(INFO, SHAPE, accuracy).components["H5"].values()) == {"none"}
    assert dict(from_ground_truth(INFO, SHAPE, logits).components["H5"]) == dict(
        from_ground_truth(INFO, SHAPE, Config()).components["H5"])


def test_ground_truth_without_selective_targets_or_planted_activation():
    info = ground_truth(["mixed"] * 4, ["none"] * 4, {})
    e = from_ground_truth(info, SHAPE, Config())
    assert dict(e.verdicts) == {"H5": "not_supported"}
    assert "H1" not in e.components and not e.notes


def test_h4_from_ground_truths_needs_specialisation_in_both():
    from circuitgate.expectations import h4_from_ground_truths

    shape = Shape(n_layers=4, n_heads=2, n_kv_heads=1, head_dim=8, hidden=16, ffn=32)
    planted = ground_truth(["mixed", "recall", "reasoning", "none"], ["mixed", "recall", "reasoning", "reasoning"], {})
    null = ground_truth(["mixed"] * 4, ["mixed", "mixed", "mixed", "none"], {})
    verdict, bins = h4_from_ground_truths((planted, shape), (planted, shape), Config())
    # profiles [0, 1, -1, -0.5]: one ordering of 4! reaches the permutation p 1/24 <= 0.05
    assert verdict == "supported" and bins == {"D0": "mixed", "D1": "recall", "D2": "reasoning", "D3": "reasoning"}
    verdict, bins = h4_from_ground_truths((null, shape), (planted, shape), Config())
    assert verdict == "not_supported" and bins == {"D0": "mixed", "D1": "none", "D2": "none", "D3": "none"}


# -- expectations: files -------------------------------------------------------------------------


def test_qwen7b_paper_expectations():
    e = from_file("qwen7b-paper.yaml")
    layers = dict(e.components["H1"])
    assert list(layers) == [f"L{i:02d}" for i in range(28)]
    recall = [int(k[1:]) for k, v in layers.items() if v == "recall"]
    reasoning = [int(k[1:]) for k, v in layers.items() if v == "reasoning"]
    assert recall == [3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 17, 19, 25]
    assert reasoning == [1, 2, 18]
    assert sum(v == "none" for v in layers.values()) == 10
    assert dict(e.verdicts) == {"H1": "supported", "H2": "supported"}
    heads = dict(e.components["H2"])
    assert {k for k, v in heads.items() if v == "recall"} == {"L02H05", "L07H01", "L06H09"}
    assert {k for k, v in heads.items() if v == "reasoning"} == {"L26H05", "L27H08", "L21H10"}
    assert "2510.03366" in e.source


def test_qwen7b_paper_figures_are_the_seed_methods_headline_numbers():
    e = from_file("qwen7b-paper.yaml")
    assert e.figures_method == "original"
    h3 = e.figures["H3"]
    assert h3["n_task_specific"].value == 163058 and h3["n_task_specific"].tolerance == pytest.approx(8152.9)
    assert h3["fraction_task_specific"].matches(0.30) and not h3["fraction_task_specific"].matches(0.29)
    assert h3["most_specialised_layer.layer"].matches(4) and not h3["most_specialised_layer.layer"].matches(5)
    assert e.figures["H2"]["top_recall"].matches(["L02H05", "L07H01", "L06H09"])
    assert not e.figures["H2"]["top_recall"].matches(["L07H01", "L02H05", "L06H09"])  # the ranking is reported
    assert e.figures["H1"]["n_specialised"].value == 18 and not e.figures["H1"]["n_specialised"].matches(17)


def test_figures_are_read_from_nested_summary_keys():
    summary = {"most_specialised_layer": {"layer": 4, "n": 11857}, "n_task_specific": 1}
    assert summary_value(summary, "most_specialised_layer.n") == 11857
    assert summary_value(summary, "n_task_specific") == 1
    with pytest.raises(KeyError):
        summary_value(summary, "most_specialised_layer.fraction")
    with pytest.raises(KeyError):
        summary_value(summary, "n_task_specific.x")


def test_a_figure_that_is_not_a_number_matches_only_exactly():
    assert Figure(True).matches(True) and not Figure(1).matches(True)  # a bool is no count
    assert Figure(0.5, abs=0.1).matches(0.6) and not Figure(0.5, abs=0.1).matches(0.61)
    assert Figure(100, rel=0.05).describe() == "100 +/- 5" and Figure([1]).describe() == "[1]"


@pytest.mark.parametrize("text, message", [
    ("figures: {H3: {n: 1}}", "figures need `method:` one of original, paired"),
    ("figures: {method: seed, H9: {n: 1}}", "figures for unknown hypotheses"),
    ("figures: {method: seed, H3: {n: {val: 1}}}", "figure H3.n needs `value`"),
    ("figures: {method: seed, H3: {n: {value: [1], rel: 0.1}}}", "tolerances must be >= 0 and need a number"),
    ("figures: {method: seed, H3: {n: {value: 1, abs: -1}}}", "tolerances must be >= 0"),
    ("figures: [", "not valid YAML"),
])
def test_bad_figures_are_refused_naming_the_file(tmp_path, text, message):
    p = tmp_path / "mine.yaml"
    p.write_text(text + "\n")
    with pytest.raises(CircuitgateError, match=re.escape(message)):
        from_file(p)


def test_from_file_by_path(tmp_path):
    p = tmp_path / "mine.yaml"
    p.write_text("verdicts: {H2: not_supported}\ncomponents:\n  H1: {L00: recall}\n")
    e = from_file(p)
    assert e.source == str(p)
    assert dict(e.verdicts) == {"H2": "not_supported"} and dict(e.components["H1"]) == {"L00": "recall"}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert from_file(empty).verdicts == {} and from_file(empty).components == {}


def test_from_file_missing():
    with pytest.raises(CircuitgateError, match="expectations file not found: nope.yaml"):
        from_file("nope.yaml")


@pytest.mark.parametrize("text", [
    "verdicts: {H1: maybe}\n",
    "verdicts: {H7: supported}\n",
    "components: {H1: {L00: recal}}\n",
    "components: {H9: {L00: recall}}\n",
])
def test_from_file_rejects_bad_entries(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(CircuitgateError) as e:
        from_file(p)
    assert str(p) in str(e.value)


def test_verdict_precedence_is_config_then_baseline_then_source():
    from types import SimpleNamespace

    from circuitgate.analyses import expected_components, expected_verdict

    source = Expectations(source="s", verdicts={"H1": "not_supported"}, components={"H2": {"L00H00": "recall"}})

    def run(config=Config(), baseline=None):
        return SimpleNamespace(config=config, baseline=baseline, expectations=source, methods=("paired",))

    assert expected_verdict(run(), "H1").value == "not_supported"  # the source
    assert expected_verdict(run(), "H2").value == "supported"  # none says: supported
    base = {"method": "paired", "hypotheses": {"H1": {"verdict": "inconclusive", "components": {"L01": {"class": "none"}}},
                                               "H2": {"verdict": "supported", "components": {"L00H00": {"class": "mixed"}}}}}
    gate = expected_verdict(run(baseline=base), "H1")
    assert (gate.value, gate.baseline) == ("inconclusive", True)  # a baseline beats the source
    assert expected_components(run(baseline=base), "H2")["L00H00"].value == "mixed"
    assert expected_components(run(), "H2")["L00H00"].value == "recall"
    cfg = Config(expected={"H1": "supported"})
    assert expected_verdict(run(cfg, base), "H1").value == "supported"  # the user's config beats both
    assert expected_verdict(run(cfg), "H1").value == "supported"


def test_expectations_file_paths_are_packaged():
    import circuitgate.models as m

    assert (Path(m.__file__).parent / "expectations" / "qwen7b-paper.yaml").is_file()
