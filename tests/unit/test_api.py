"""circuitgate.api (docs/own-hypothesis.md): the statistics over arrays an own hypothesis uses, its
result's checks, and a gate that leaves own hypotheses to their expectations."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from circuitgate import CircuitgateError, api
from circuitgate.config import Config, GateConfig, PairedConfig
from circuitgate.gate import compare_entries

from documents import document

IDS = ["u0", "u1", "u2"]


def _sides(n: int = 24, shift: float = 2.0, seed: int = 0) -> tuple[dict, dict]:
    """Two features over three units; on unit 0 reasoning is ``shift`` above recall in every pair."""
    rng = np.random.default_rng(seed)
    recall = {f: rng.normal(size=(n, 3)) for f in ("a", "b")}
    reasoning = {f: v + rng.normal(scale=0.3, size=v.shape) for f, v in recall.items()}
    reasoning["a"][:, 0] += shift
    return recall, reasoning


def test_every_exported_name_exists():
    assert all(hasattr(api, name) for name in api.__all__)


def test_paired_units_finds_the_planted_unit_and_checks_the_controls():
    config = Config(paired=PairedConfig(n_boot=200))
    recall, reasoning = _sides()
    null = _sides(shift=0.0, seed=1)
    result = api.paired_units("H6", recall, reasoning, IDS, config, controls={"recall": null})
    assert result.verdict == "supported" and result.components["u0"].cls == "reasoning"
    assert {result.components[u].cls for u in ("u1", "u2")} == {"none"}
    assert result.components["u0"].effect > 2 and result.summary["count"] == 1
    # A control whose two templates differ as the pairs do: the difference is the template's.
    confounded = api.paired_units("H6", recall, reasoning, IDS, config, controls={"recall": _sides(seed=2)})
    assert confounded.verdict == "inconclusive" and "confounded by template" in confounded.summary["reason"]
    # Without controls, require_controls makes it inconclusive; -1 orientation flips the class.
    assert api.paired_units("H6", recall, reasoning, IDS, config).verdict == "inconclusive"
    flipped = api.paired_units("H6", recall, reasoning, IDS, config, orientation={"a": -1, "b": 1},
                               controls={"recall": null})
    assert flipped.components["u0"].cls == "recall"


@pytest.mark.parametrize("call, message", [
    (lambda r, s, c: api.paired_units("H6", r, {"a": s["a"]}, IDS, c), "features ['a'] are not"),
    (lambda r, s, c: api.paired_units("H6", r, s, IDS[:2], c), "3 units, but 2 ids"),
    (lambda r, s, c: api.paired_units("H2", r, s, IDS, c), "'H2' is not an own hypothesis id"),
    (lambda r, s, c: api.paired_units("H6", r, s, IDS, c, orientation={"a": 2, "b": 1}), "+1 or -1"),
    (lambda r, s, c: api.paired_units("H6", r, {f: v[:10] for f, v in s.items()}, IDS, c), "matched pairs"),
    (lambda r, s, c: api.causal_units(r["a"], s["a"], IDS[:1], c), "drops must be [pairs, 1 targets]"),
    (lambda r, s, c: api.result("H6", "passed"), "verdict 'passed' is not one of"),
    (lambda r, s, c: api.hypothesis("h2"), "'h2' is not an own hypothesis id"),
    (lambda r, s, c: api.hypothesis("H6", expected="yes"), "expected 'yes' is not one of"),
    (lambda r, s, c: api.hypothesis("H6", components={"L0": "early"}), "component classes must be one of"),
])
def test_bad_input_is_one_circuitgate_error(call, message):
    recall, reasoning = _sides()
    with pytest.raises(CircuitgateError) as e:
        call(recall, reasoning, Config())
    assert message in str(e.value)


def test_causal_units_is_h5s_rule_over_the_given_targets():
    rng = np.random.default_rng(0)
    base = rng.normal(scale=0.02, size=(30, 3))
    recall, reasoning = base.copy(), base.copy()
    recall[:, 0] += 0.9  # hurts recall only: recall-selective
    recall[:, 1] += 0.9
    reasoning[:, 1] += 0.9  # hurts both alike: mixed
    units = api.causal_units(recall, reasoning, ["attn-L0", "mlp-L0", "attn-L1"], Config())
    assert [units[t].cls for t in units] == ["recall", "mixed", "none"]
    assert units["attn-L0"].effect == pytest.approx(0.9, abs=0.05) and units["attn-L0"].details["selective"]


def test_a_gate_leaves_own_hypotheses_to_their_expectations():
    a = document()
    b = copy.deepcopy(a)
    own = {"verdict": "supported", "method": "own", "summary": {}, "components": {"attn-L1": {"class": "recall"}}}
    a["hypotheses"]["H6"] = own
    b["hypotheses"]["H6"] = {**own, "verdict": "not_supported"}
    report = compare_entries(a, b, GateConfig())
    assert "H6" not in {d.hypothesis for d in report.decisions}
    assert any("own hypotheses are judged by their expectations, not by change: H6" in n for n in report.notes)
