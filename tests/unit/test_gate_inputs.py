"""What a gate measures (analyses/h5_targets.py: the baseline's targets, neuron sets and pairs), the compact
encodings verdicts.json stores them in (encoding.py), and the fine-tuned candidates (candidates.py)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from circuitgate import CircuitgateError
from circuitgate.analyses.h5_targets import baseline_pairs, gated_targets
from circuitgate.config import Config, load_config
from circuitgate.encoding import pack_bits, pack_floats, pack_mask, unpack_bits, unpack_floats, unpack_mask


@given(st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1, max_size=50))
@settings(max_examples=50, deadline=None)
def test_floats_round_trip_exactly_in_float32(values):
    assert list(unpack_floats(pack_floats(values), len(values))) == [float(np.float32(v)) for v in values]


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.sets(st.integers(0, n - 1)))))
@settings(max_examples=50, deadline=None)
def test_neuron_masks_round_trip(case):
    size, chosen = case
    assert unpack_mask(pack_mask(sorted(chosen), size), size) == tuple(sorted(chosen))


def test_a_1536_neuron_layer_set_takes_256_characters_and_bits_read_back():
    assert len(pack_mask(range(0, 1536, 3), 1536)) == 256
    assert list(unpack_bits(pack_bits([True, False, True]))) == [True, False, True]


@pytest.mark.parametrize("call, message", [
    (lambda: unpack_floats("!!", None), "not base64"),
    (lambda: unpack_floats(pack_floats([1.0, 2.0]), 3), "hold 2 float32 numbers, expected 3"),
    (lambda: unpack_mask(pack_mask([1], 16), 32), "expected 32"),
    (lambda: unpack_bits("01x"), "0 and 1"),
])
def test_corrupt_encodings_are_one_clear_error(call, message):
    with pytest.raises(CircuitgateError, match=message):
        call()


def _run(baseline_h5: dict | None, config: Config = Config(), ids=("a", "b", "c", "d")) -> SimpleNamespace:
    baseline = None
    if baseline_h5 is not None:
        baseline = {"schema": 3, "method": "paired", "config": Config().to_dict(),
                    "hypotheses": {"H5": baseline_h5}}
    return SimpleNamespace(baseline=baseline, config=config, methods=("paired",),
                           shape=SimpleNamespace(ffn=16), prompt_set=SimpleNamespace(ids=list(ids), name="tiny"))


H5_ENTRY = {
    "verdict": "supported",
    "components": {"head-L0H1": {"class": "recall"}, "neuron-L1N3": {"class": "none"},
                   "neurons-L1-recall": {"class": "mixed"}},
    "summary": {"pairs": {"ids": ["d", "b"]}, "screen": {"path": "attribution"},
                "h3_sets": {"neurons-L1-recall": {"layer": 1, "neurons": pack_mask([2, 5], 16),
                                                  "control": {"id": "neurons-L1-recall-control",
                                                              "neurons": pack_mask([7, 9], 16)}}}},
}


def test_a_gate_measures_the_baselines_targets_and_its_neuron_sets_as_drawn():
    gated = gated_targets(_run(H5_ENTRY), "paired")
    assert gated.ids == {"head-L0H1", "neuron-L1N3", "neurons-L1-recall"} and gated.path == "attribution"
    assert [(t.id, t.neurons) for t in gated.sets] == [("neurons-L1-recall", (2, 5)),
                                                        ("neurons-L1-recall-control", (7, 9))]
    assert gated.controls == {"neurons-L1-recall": "neurons-L1-recall-control"}
    assert gated_targets(_run(None), "paired") is None


def test_a_baseline_without_recorded_sets_leaves_them_to_this_runs_h3():
    entry = {**H5_ENTRY, "summary": {k: v for k, v in H5_ENTRY["summary"].items() if k != "h3_sets"}}
    assert gated_targets(_run(entry), "paired").sets is None


def test_a_gate_ablates_on_the_baselines_pairs_unless_their_choice_is_overridden(tmp_path):
    assert list(baseline_pairs(_run(H5_ENTRY))) == [1, 3]
    other = tmp_path / "seed.yaml"
    other.write_text("h5: {seed: 1}\n")
    assert baseline_pairs(_run(H5_ENTRY, load_config(other))) is None  # another subsample was asked for
    assert baseline_pairs(_run(None)) is None
    with pytest.raises(CircuitgateError, match="the baseline's H5 pairs are not in the prompt set tiny: d"):
        baseline_pairs(_run(H5_ENTRY, ids=("a", "b", "c")))


def test_a_fine_tuned_copy_is_a_plain_local_model_with_its_record(tiny_qwen_dir, tmp_path):
    import json

    from circuitgate.candidates import fine_tune

    out = fine_tune(tiny_qwen_dir, tmp_path / "ft", ["w3 w4 w5 w6", "w7 w8 w9"], steps=3, lr=1e-3)
    note = json.loads((out / "fine_tuned.json").read_text())
    assert note["steps"] == 3 and note["loss_last"] < note["loss_first"]
    assert sorted(p.name for p in out.glob("*.safetensors"))
    with pytest.raises(CircuitgateError, match="exists"):
        fine_tune(tiny_qwen_dir, out, ["w3"], steps=1, lr=1e-3)
