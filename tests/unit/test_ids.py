"""Component and target ids: each builder's id parses back to what built it; the shared vocabulary."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from circuitgate import CircuitgateError
from circuitgate.ids import (ComponentId, TargetId, attn_target, block_target, control_target, head_id, head_target,
                             layer_id, mlp_target, neuron_id, neuron_set_target, neuron_target, parse_component,
                             parse_target, target_kind, target_series)
from circuitgate.vocabulary import CLASSES, SKILLS

index = st.integers(0, 99_999)


@given(index, index, index)
def test_component_ids_parse_back(layer, head, neuron):
    assert parse_component(layer_id(layer)) == ComponentId("layer", layer)
    assert parse_component(head_id(layer, head)) == ComponentId("head", layer, head=head)
    assert parse_component(neuron_id(layer, neuron)) == ComponentId("neuron", layer, neuron=neuron)


@given(index, index, st.sampled_from(SKILLS))
def test_target_ids_parse_back_and_have_their_kind(layer, k, skill):
    built = {
        attn_target(layer): TargetId("attn", layer),
        mlp_target(layer): TargetId("mlp", layer),
        head_target(layer, k): TargetId("head", layer, head=k),
        block_target(layer, k): TargetId("neurons", layer, block=k),
        neuron_set_target(layer, skill): TargetId("neurons", layer, skill=skill),
        control_target(neuron_set_target(layer, skill)): TargetId("neurons", layer, skill=skill, control=True),
        neuron_target(layer, k): TargetId("neuron", layer, neuron=k),
    }
    for tid, parsed in built.items():
        assert parse_target(tid) == parsed and target_kind(tid) == parsed.kind


@pytest.mark.parametrize("cid", ["", "L", "L3H", "H2", "L3H2N1", "l3", "L03 ", "D0", "attn-L3"])
def test_a_string_that_is_not_a_component_id_is_refused(cid):
    with pytest.raises(CircuitgateError, match="is not a component id"):
        parse_component(cid)


@pytest.mark.parametrize("tid", ["", "attn-L", "mlp-3", "head-L2", "neurons-L2", "neurons-L2-mixed", "neuron-L2",
                                 "L03", "attn-L3-control", "head-L2H1x"])
def test_a_string_that_is_not_a_target_id_has_no_kind(tid):
    assert target_kind(tid) is None
    with pytest.raises(CircuitgateError, match="is not a target id"):
        parse_target(tid)


def test_a_series_is_a_target_id_without_its_layer():
    assert [target_series(parse_target(t)) for t in (attn_target(3), mlp_target(0), block_target(2, 1),
                                                     neuron_set_target(5, "reasoning"),
                                                     control_target(neuron_set_target(5, "recall")))] == \
        ["attn-L*", "mlp-L*", "neurons-L*-B1", "neurons-L*-reasoning", "neurons-L*-recall-control"]
    for one in (head_target(1, 2), neuron_target(1, 2)):  # one per head or neuron: no series over depth
        with pytest.raises(CircuitgateError, match="no series"):
            target_series(parse_target(one))


def test_the_vocabulary_lists_the_skills_first_and_imports_nothing_heavy():
    assert CLASSES[:len(SKILLS)] == SKILLS
    code = "import sys, circuitgate.vocabulary; print(sorted({'torch', 'numpy', 'yaml'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
