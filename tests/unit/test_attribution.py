"""The attribution screen against references that never touch nnsight or the screen's code.

Each reference runs one prompt alone and unpadded through ``loaded.hf`` with torch hooks on the modules
the adapter names: autograd gradients for attribution patching (steps=1), a finite difference for its
sign and scale, and for integrated gradients the exact drop of ablating one path's units together,
which their attributions must sum to (completeness; a unit's IG share of its path is not its own
ablation effect, so it is not compared with one).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from circuitgate import CircuitgateError
from circuitgate.attribution import Attribution, attribution_screen, unit_groups
from circuitgate.interventions import Target, ablation_sweep, answer_token_ids, standard_targets
from circuitgate.models import load_model, resolve

# Lengths 3 2 6 1 4 3: at batch size 4 the batches are padded differently from the prompts alone.
PROMPTS = ["w5 w7 w9", "w3 w4", "w10 w11 w12 w13 w14 w15", "w20", "w8 w9 w10 w11", "w30 w31 w32"]
ANSWERS = ["w1", "w2", "w3", "w4", "w5", "w6"]
REFERENCE = ["w50 w51 w52 w53", "w6", "w22 w23 w24"]
SITES = ("heads", "neurons")


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(resolve(str(tiny_model_dir)), device="cpu", dtype="float32", progress=False)


# ---------------------------------------------------------------------------------------------------
# The reference: plain HF forwards of single unpadded prompts, with torch hooks.

def _module(loaded, layer: int, site: str):
    ad = loaded.adapter
    return ad.o_proj_module(loaded.hf, layer) if site == "heads" else ad.down_proj_module(loaded.hf, layer)


def _run(loaded, text: str, fns: dict[tuple[int, str], Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
    """Last-token logits [V] of one unpadded prompt, each site's input passed through its function."""
    handles = [_module(loaded, layer, site).register_forward_pre_hook(
        lambda m, args, fn=fn: (fn(args[0]), *args[1:])) for (layer, site), fn in fns.items()]
    try:
        ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
        return loaded.hf(input_ids=ids).logits[0, -1]
    finally:
        for h in handles:
            h.remove()


def _metric(logits: torch.Tensor, answer: int, candidates: np.ndarray, metric: str) -> torch.Tensor:
    lg = logits.double()
    if metric == "log_prob":
        return lg[answer] - lg.logsumexp(0)
    wrong = [int(c) for c in np.unique(candidates) if c != answer]
    return lg[answer] - lg[wrong].max()


def _means(loaded, texts) -> dict[tuple[int, str], torch.Tensor]:
    """Each site's mean over every position of the unpadded prompts."""
    seen: dict[tuple[int, str], list[torch.Tensor]] = {}

    def grab(key):
        def fn(x):
            seen.setdefault(key, []).append(x[0].detach().double())
            return x
        return fn

    keys = [(layer, site) for layer in range(loaded.shape.n_layers) for site in SITES]
    with torch.no_grad():
        for text in texts:
            _run(loaded, text, {key: grab(key) for key in keys})
    return {key: torch.cat(v).mean(0) for key, v in seen.items()}


def _ablated(x: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
    return torch.zeros_like(x) if mean is None else mean.to(x).expand_as(x)


def _atp_reference(loaded, text, answer, candidates, metric, means) -> dict[str, np.ndarray]:
    """-(a' - a) . grad per head [L, H] and neuron [L, F], and the attention and MLP outputs' own
    -(a' - a) . grad [L] from hooks on those outputs (not from the heads' and neurons' sums)."""
    shape, ad = loaded.shape, loaded.adapter
    kept: dict[tuple[int, str], torch.Tensor] = {}

    def keep(key):
        def fn(x):
            x.retain_grad()
            kept[key] = x
            return x
        return fn

    outs = [ad.attention_module(loaded.hf, layer) for layer in range(shape.n_layers)]
    outs += [ad.mlp_module(loaded.hf, layer) for layer in range(shape.n_layers)]
    names = [(layer, "attn") for layer in range(shape.n_layers)] + [(layer, "mlp") for layer in range(shape.n_layers)]

    def post(key):
        def fn(m, args, out):
            value = out[0] if isinstance(out, tuple) else out
            value.retain_grad()
            kept[key] = value
        return fn

    handles = [m.register_forward_hook(post(key)) for m, key in zip(outs, names)]
    try:
        logits = _run(loaded, text, {(layer, site): keep((layer, site))
                                     for layer in range(shape.n_layers) for site in SITES})
        _metric(logits, answer, candidates, metric).backward()
    finally:
        for h in handles:
            h.remove()
    loaded.hf.zero_grad(set_to_none=True)

    def est(key, mean):
        x = kept[key]
        return (-(_ablated(x, mean) - x) * x.grad)[0].sum(0).detach().double()

    heads = torch.stack([est((layer, "heads"), means.get((layer, "heads")))
                         for layer in range(shape.n_layers)]).view(shape.n_layers, shape.n_heads, -1).sum(-1)
    neurons = torch.stack([est((layer, "neurons"), means.get((layer, "neurons"))) for layer in range(shape.n_layers)])
    attn = torch.stack([est((layer, "attn"), means.get((layer, "attn"))).sum() for layer in range(shape.n_layers)])
    mlp = torch.stack([est((layer, "mlp"), means.get((layer, "mlp"))).sum() for layer in range(shape.n_layers)])
    return {"heads": heads.numpy(), "neurons": neurons.numpy(), "attn": attn.numpy(), "mlp": mlp.numpy()}


def _output_means(loaded, texts) -> dict[tuple[int, str], torch.Tensor]:
    """The attention and MLP outputs' means: their inputs' means through o_proj and down_proj (linear)."""
    means = _means(loaded, texts)
    out = {}
    for layer in range(loaded.shape.n_layers):
        for site, name in (("heads", "attn"), ("neurons", "mlp")):
            module = _module(loaded, layer, site)
            out[(layer, name)] = module.weight.detach().double() @ means[(layer, site)]
    return {**means, **out}


def _ids(loaded, answers):
    return answer_token_ids(loaded.tokenizer, answers)


# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("metric", ["logit_diff", "log_prob"])
def test_atp_matches_autograd_reference(loaded, ablation, metric):
    """steps=1 in left-padded batches equals -(a' - a) . grad of each prompt run alone, per prompt; the
    attention and MLP outputs' estimates (sums of heads and neurons) equal their own outputs'."""
    res = attribution_screen(loaded, PROMPTS, ANSWERS, ablation=ablation, metric=metric, steps=1,
                             reference=REFERENCE, batch_size=4, progress=False)
    means = {} if ablation == "zero" else _output_means(loaded, REFERENCE)
    answers, cands = _ids(loaded, ANSWERS), _ids(loaded, ANSWERS)
    for p, text in enumerate(PROMPTS):
        ref = _atp_reference(loaded, text, int(answers[p]), cands, metric, means)
        for kind in ("heads", "neurons", "attn", "mlp"):
            got = getattr(res, kind)[p]
            np.testing.assert_allclose(got, ref[kind], rtol=1e-3, atol=1e-4, err_msg=f"{kind} of prompt {p}")
        with torch.no_grad():
            clean = _metric(_run(loaded, text, {}), int(answers[p]), cands, metric)
        assert res.clean[p] == pytest.approx(float(clean), abs=1e-4)


def test_atp_sign_and_scale_by_finite_difference(loaded):
    """A drop estimate is the metric's loss per unit step towards the ablated value, at the clean run:
    (m(a) - m(a + eps (a' - a))) / eps, by central differences, for one head and one neuron."""
    res = attribution_screen(loaded, PROMPTS[:2], ANSWERS[:2], ablation="mean", reference=REFERENCE,
                             metric="log_prob", steps=1, progress=False)
    means = _means(loaded, REFERENCE)
    hd = loaded.shape.head_dim
    answers = _ids(loaded, ANSWERS)
    for p, text in enumerate(PROMPTS[:2]):
        for layer, site, cols, got in ((1, "heads", slice(2 * hd, 3 * hd), res.heads[p, 1, 2]),
                                       (0, "neurons", slice(7, 8), res.neurons[p, 0, 7])):
            def moved(eps, layer=layer, site=site, cols=cols):
                def fn(x):
                    x = x.clone()
                    x[..., cols] += eps * (means[(layer, site)][cols].to(x) - x[..., cols])
                    return x
                with torch.no_grad():
                    return float(_metric(_run(loaded, text, {(layer, site): fn}), int(answers[p]), answers, "log_prob"))

            eps = 1e-2
            fd = (moved(-eps) - moved(eps)) / (2 * eps)
            assert got == pytest.approx(fd, rel=1e-2, abs=1e-4)


def _exact_joint_drop(loaded, text, answer, candidates, metric, site, columns, means) -> float:
    """Clean metric minus the metric with the given columns of ``site`` ablated in every layer at once
    (``columns[layer]``: indices into the site's width)."""
    def fn(layer):
        def ablate(x):
            x = x.clone()
            x[..., columns[layer]] = _ablated(x, means.get((layer, site)))[..., columns[layer]]
            return x
        return ablate

    fns = {(layer, site): fn(layer) for layer in range(loaded.shape.n_layers)}
    with torch.no_grad():
        clean = _metric(_run(loaded, text, {}), answer, candidates, metric)
        ablated = _metric(_run(loaded, text, fns), answer, candidates, metric)
    return float(clean - ablated)


def _group_columns(loaded, groups: int, seed: int, site: str, g: int) -> dict[int, np.ndarray]:
    """Columns of ``site`` in every layer whose unit is dealt to group ``g`` (a head: its head_dim slice)."""
    deal = unit_groups(loaded.shape, groups, seed)[site]
    hd = loaded.shape.head_dim if site == "heads" else 1
    return {layer: np.concatenate([np.arange(u * hd, (u + 1) * hd) for u in np.flatnonzero(deal[layer] == g)] or
                                  [np.zeros(0, dtype=int)]) for layer in range(loaded.shape.n_layers)}


def test_unit_groups_deal_every_layer_evenly(loaded):
    deal = unit_groups(loaded.shape, 3, seed=5)
    assert deal["heads"].shape == (loaded.shape.n_layers, loaded.shape.n_heads)
    assert deal["neurons"].shape == (loaded.shape.n_layers, loaded.shape.ffn)
    for layer in range(loaded.shape.n_layers):
        counts = np.bincount(deal["neurons"][layer], minlength=3)
        assert counts.max() - counts.min() <= 1  # round-robin: sizes differ by at most one
    np.testing.assert_array_equal(deal["neurons"], unit_groups(loaded.shape, 3, seed=5)["neurons"])
    assert not np.array_equal(deal["neurons"], unit_groups(loaded.shape, 3, seed=6)["neurons"])
    assert (unit_groups(loaded.shape, 1)["heads"] == 0).all()


@pytest.mark.parametrize("ablation", ["zero", "mean"])
@pytest.mark.parametrize("metric, steps, groups, tol", [("log_prob", 128, 1, 0.01), ("log_prob", 128, 2, 0.01),
                                                        ("logit_diff", 512, 1, 0.03)])
def test_ig_completeness(loaded, ablation, metric, steps, groups, tol):
    """With many steps the attributions of one path's units sum to the exact drop of ablating exactly
    those units jointly, per prompt: for each group, its heads in every layer, and its neurons in every
    layer (with one group: every head, every neuron). The midpoint rule converges slower on logit_diff:
    the best wrong candidate switches along the path (a kink), and on these random models the metric
    turns sharply near full ablation. Measured with one group: log_prob's error falls as 1/S^2 (2.2%,
    0.8%, 0.2%, 0.05% of the largest drop at 64, 128, 256, 512 steps), logit_diff's slower (7.6%, 4.9%,
    4.1%, 2.4%)."""
    res = attribution_screen(loaded, PROMPTS, ANSWERS, ablation=ablation, metric=metric, steps=steps,
                             groups=groups, seed=3, reference=REFERENCE, batch_size=4, max_rows=4096, progress=False)
    means = {} if ablation == "zero" else _means(loaded, REFERENCE)
    answers = _ids(loaded, ANSWERS)
    deal = unit_groups(loaded.shape, groups, seed=3)
    for site, per_unit in (("heads", res.heads), ("neurons", res.neurons.astype(np.float64))):
        for g in range(groups):
            columns = _group_columns(loaded, groups, 3, site, g)
            exact = np.array([_exact_joint_drop(loaded, text, int(answers[p]), answers, metric, site, columns, means)
                              for p, text in enumerate(PROMPTS)])
            total = (per_unit * (deal[site] == g)[None]).sum((1, 2))
            scale = np.abs(exact).max()
            assert scale > 0.1, "the tiny model's joint ablation must do something for the test to mean anything"
            np.testing.assert_allclose(total, exact, atol=tol * scale, err_msg=f"{site}, group {g}")
    np.testing.assert_allclose(res.attn, res.heads.sum(-1))
    np.testing.assert_allclose(res.mlp, res.neurons.sum(-1, dtype=np.float64), rtol=1e-6)


def test_atp_is_not_complete(loaded):
    """The reason for the IG variant: at the clean point alone the joint drop is missed (tiny random
    models are far from linear under a whole kind's ablation)."""
    res = attribution_screen(loaded, PROMPTS, ANSWERS, steps=1, metric="log_prob", progress=False)
    answers = _ids(loaded, ANSWERS)
    every_head = _group_columns(loaded, 1, 0, "heads", 0)
    exact = np.array([_exact_joint_drop(loaded, text, int(answers[p]), answers, "log_prob", "heads", every_head, {})
                      for p, text in enumerate(PROMPTS)])
    assert np.abs(res.heads.sum((1, 2)) - exact).max() > 0.05 * np.abs(exact).max()


@pytest.mark.parametrize("steps", [1, 3])
def test_pad_and_chunk_invariance(loaded, steps):
    """A prompt's estimate is the same alone, in a left-padded batch, and with one copy per pass."""
    batched = attribution_screen(loaded, PROMPTS, ANSWERS, steps=steps, groups=3, batch_size=6, progress=False)
    tiny_passes = attribution_screen(loaded, PROMPTS, ANSWERS, steps=steps, groups=3, batch_size=2, max_rows=1,
                                     progress=False)
    for p in (1, 3):  # short prompts: padded by up to 5 positions in the batch
        alone = attribution_screen(loaded, [PROMPTS[p]], [ANSWERS[p]], candidates=ANSWERS, steps=steps,
                                   groups=3, progress=False)
        for kind in ("heads", "attn", "mlp", "neurons", "clean"):
            np.testing.assert_allclose(getattr(batched, kind)[p], getattr(alone, kind)[0], rtol=1e-3, atol=1e-4,
                                       err_msg=kind)
    for kind in ("heads", "neurons", "clean"):
        np.testing.assert_allclose(getattr(batched, kind), getattr(tiny_passes, kind), rtol=1e-3, atol=1e-4)


def test_shapes_metadata_and_clean_metric(loaded):
    shape = loaded.shape
    res = attribution_screen(loaded, PROMPTS, ANSWERS, steps=3, groups=2, seed=4, progress=False)
    n = len(PROMPTS)
    assert res.heads.shape == (n, shape.n_layers, shape.n_heads)
    assert res.attn.shape == res.mlp.shape == (n, shape.n_layers)
    assert res.neurons.shape == (n, shape.n_layers, shape.ffn) and res.neurons.dtype == np.float32
    assert (res.method, res.steps, res.groups, res.seed, res.metric, res.ablation) == ("ig", 3, 2, 4, "logit_diff", "zero")
    atp = attribution_screen(loaded, PROMPTS[:1], ANSWERS[:1], candidates=ANSWERS, steps=1, groups=5, progress=False)
    assert (atp.method, atp.groups) == ("atp", 1)  # groups are IG's paths: attribution patching has none
    sweep = ablation_sweep(loaded, PROMPTS, ANSWERS, [], progress=False)
    np.testing.assert_allclose(res.clean, sweep.clean.logit_diff, atol=1e-5)
    logp = attribution_screen(loaded, PROMPTS, ANSWERS, metric="log_prob", groups=2, progress=False)
    np.testing.assert_allclose(logp.clean, np.log(sweep.clean.prob), atol=1e-5)


def test_estimates_of_targets(loaded):
    res = attribution_screen(loaded, PROMPTS, ANSWERS, groups=2, progress=False)
    targets = standard_targets(loaded.shape) + [Target("set", "neurons", 1, neurons=(3, 10, 40))]
    est = res.estimates(targets)
    assert est.shape == (len(PROMPTS), len(targets))
    col = {t.id: est[:, i] for i, t in enumerate(targets)}
    np.testing.assert_allclose(col["head-L1H2"], res.heads[:, 1, 2])
    np.testing.assert_allclose(col["attn-L0"], res.attn[:, 0])
    np.testing.assert_allclose(col["mlp-L1"], res.mlp[:, 1])
    np.testing.assert_allclose(col["set"], res.neurons[:, 1, [3, 10, 40]].sum(1), rtol=1e-6)


def test_weights_untouched(loaded):
    """The screen freezes the weights for its passes and restores them; no weight gradient is left."""
    flags = [p.requires_grad for p in loaded.hf.parameters()]
    attribution_screen(loaded, PROMPTS[:2], ANSWERS[:2], steps=2, groups=2, progress=False)
    assert [p.requires_grad for p in loaded.hf.parameters()] == flags
    assert all(p.grad is None for p in loaded.hf.parameters())


@pytest.mark.parametrize("kwargs, message", [
    ({"prompts": []}, "no prompts"),
    ({"answers": ["w1"]}, "2 prompts but 1 answers"),
    ({"ablation": "resample"}, "unknown ablation"),
    ({"metric": "accuracy"}, "unknown metric"),
    ({"steps": 0}, "steps must be"),
    ({"groups": 0}, "groups must be"),
    ({"reference": []}, "reference prompt set"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_input(loaded, kwargs, message):
    args = {"prompts": PROMPTS[:2], "answers": ANSWERS[:2], **kwargs}
    with pytest.raises(CircuitgateError, match=message):
        attribution_screen(loaded, args.pop("prompts"), args.pop("answers"), progress=False, **args)


def test_zero_ablation_refuses_a_biased_o_proj(tiny_qwen_dir):
    """Zero-ablating every head leaves an o_proj bias in place, so the attention output would not be the
    sum of its heads: refused, while mean ablation (where the identity holds) runs."""
    model = load_model(resolve(str(tiny_qwen_dir)), device="cpu", dtype="float32", progress=False)
    o_proj = model.adapter.o_proj_module(model.hf, 1)
    o_proj.bias = torch.nn.Parameter(torch.zeros(o_proj.out_features))
    with pytest.raises(CircuitgateError, match="o_proj without a bias"):
        attribution_screen(model, PROMPTS[:2], ANSWERS[:2], progress=False)
    assert isinstance(attribution_screen(model, PROMPTS[:2], ANSWERS[:2], ablation="mean", steps=1, progress=False),
                      Attribution)


def test_the_screen_refuses_a_remote_model_in_one_line(loaded):
    from dataclasses import replace

    with pytest.raises(CircuitgateError, match="the attribution screen runs on local weights only"):
        attribution_screen(replace(loaded, remote="local"), ["w5 w7"], ["w9"])
