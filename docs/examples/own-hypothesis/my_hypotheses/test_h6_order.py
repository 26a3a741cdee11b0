"""H6, a hypothesis of our own: recall is done before reasoning starts.

Ablate each layer's attention and each layer's MLP in turn. H6 holds when every sublayer that
selectively impairs recall sits in an earlier layer than every sublayer that selectively impairs
reasoning, and each skill has at least one. "Selectively" is H5's rule (circuitgate.api.causal_units):
the sublayer hurts its skill by at least h5.min_drop and more than the other skill in the same prompt
pairs, beyond pair noise, after a false-discovery correction over the sublayers.
"""

from circuitgate import api


@api.hypothesis("H6")  # expected supported, unless --config says otherwise (expected: {H6: ...})
def h6(model: api.Model) -> api.HypothesisResult:
    targets = model.targets(kinds=("attn", "mlp"))  # attn-L0, mlp-L0, attn-L1, ...
    recall, reasoning = model.drops(targets)  # [pairs, targets] on the run's prompt set (--prompts)
    units = api.causal_units(recall, reasoning, [t.id for t in targets], model.config)
    layer = {t.id: t.layer for t in targets}
    recall_layers = sorted({layer[u] for u, c in units.items() if c.cls == "recall"})
    reasoning_layers = sorted({layer[u] for u, c in units.items() if c.cls == "reasoning"})
    summary = {"recall_layers": recall_layers, "reasoning_layers": reasoning_layers,
               "headline": f"recall-selective layers {recall_layers}, reasoning-selective layers {reasoning_layers}"}
    if not recall_layers or not reasoning_layers:
        return api.result("H6", "not_supported", units, summary, reason="a skill has no selective sublayer")
    verdict = "supported" if max(recall_layers) < min(reasoning_layers) else "not_supported"
    return api.result("H6", verdict, units, summary)


def test_H6(h6, judge):
    judge.hypothesis(h6)
