"""Batched interventions through nnsight agree with plain torch hooks on the HF model, one run at a time.

The references below never touch nnsight or the engine's tracing code: each prompt runs alone and
unpadded through ``loaded.hf`` with a hook on the module the adapter names, and the mean and donor
activations they substitute are captured the same way.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
import torch

from circuitgate import CircuitgateError
from circuitgate.interventions import (
    Metrics, Target, ablation_sweep, answer_metrics, answer_token_ids, metrics_from_logits, patch_residual,
    plan_batches, resample_donors, standard_targets,
)
from circuitgate.models import load_model, resolve
from circuitgate.vocabulary import ABLATIONS

# Lengths 3 2 6 1 4 3 2: ties (sorting must be stable) and, at batch size 2 or 3, a trailing singleton
# that resample merges into the batch before.
PROMPTS = ["w5 w7 w9", "w3 w4", "w10 w11 w12 w13 w14 w15", "w20", "w8 w9 w10 w11", "w30 w31 w32", "w40 w41"]
REFERENCE = ["w50 w51 w52 w53", "w6", "w22 w23 w24"]
SITES = ("heads", "attn", "neurons", "mlp", "resid")
SITE_OF_KIND = {"head": "heads", "attn": "attn", "neurons": "neurons", "mlp": "mlp"}


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    return load_model(resolve(str(tiny_model_dir)), device="cpu", dtype="float32")


@pytest.fixture(scope="module")
def qwen(tiny_qwen_dir):
    return load_model(resolve(str(tiny_qwen_dir)), device="cpu", dtype="float32")


def _targets(shape) -> list[Target]:
    return standard_targets(shape) + [
        Target("neurons-L0-a", "neurons", 0, neurons=(3, 10, 40)),
        Target("neurons-L1-b", "neurons", 1, neurons=tuple(range(0, 64, 3))),
    ]


# ---------------------------------------------------------------------------------------------------
# The reference: plain HF forwards of single unpadded prompts, with torch hooks.

def _hook(loaded, layer: int, site: str, fn: Callable[[torch.Tensor], torch.Tensor]):
    """Hook ``fn`` (activation [1, T, W] -> replacement) onto a site; modules come from the adapter."""
    ad, hf = loaded.adapter, loaded.hf
    if site in ("heads", "neurons"):
        module = ad.o_proj_module(hf, layer) if site == "heads" else ad.down_proj_module(hf, layer)
        return module.register_forward_pre_hook(lambda m, args: (fn(args[0]), *args[1:]))
    module = {"attn": ad.attention_module, "mlp": ad.mlp_module, "resid": ad.layer}[site](hf, layer)

    def post(m, args, out):
        return (fn(out[0]), *out[1:]) if isinstance(out, tuple) else fn(out)

    return module.register_forward_hook(post)


def _run(loaded, text: str, hooks: list[tuple[int, str, Callable]] = ()) -> np.ndarray:
    """Last-token logits of one unpadded prompt, float64."""
    handles = [_hook(loaded, layer, site, fn) for layer, site, fn in hooks]
    try:
        with torch.no_grad():
            ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
            return loaded.hf(input_ids=ids).logits[0, -1].double().numpy()
    finally:
        for h in handles:
            h.remove()


def _capture(loaded, text: str) -> dict[tuple[int, str], np.ndarray]:
    """Every site's clean activation of one prompt, [T, W] float64."""
    out: dict[tuple[int, str], np.ndarray] = {}

    def grab(key):
        def fn(x):
            out[key] = x[0].double().numpy().copy()
            return x
        return fn

    keys = [(layer, site) for layer in range(loaded.shape.n_layers) for site in SITES]
    _run(loaded, text, [(layer, site, grab((layer, site))) for layer, site in keys])
    return out


def _means(loaded, texts) -> dict[tuple[int, str], np.ndarray]:
    caps = [_capture(loaded, t) for t in texts]
    return {key: np.concatenate([c[key] for c in caps]).mean(0) for key in caps[0]}


def _selector(target: Target, hd: int):
    if target.kind == "head":
        return slice(target.head * hd, (target.head + 1) * hd)
    if target.kind == "neurons":
        return list(target.neurons)
    return slice(None)


def _replace(sel, value: np.ndarray) -> Callable[[torch.Tensor], torch.Tensor]:
    """A hook function that writes ``value`` (broadcast to [T, W_sel]) into the selected columns."""
    def fn(x):
        x = x.clone()
        x[0][:, sel] = torch.as_tensor(np.broadcast_to(value, x[0][:, sel].shape).copy(), dtype=x.dtype)
        return x
    return fn


def _reference_metrics(logits: np.ndarray, answer: int, candidates: np.ndarray) -> dict[str, float]:
    lse = np.log(np.exp(logits - logits.max()).sum()) + logits.max()
    cands = np.unique(candidates)
    wrong = [c for c in cands if c != answer] if len(cands) >= 2 else [v for v in range(len(logits)) if v != answer]
    return {
        "accuracy": float(np.argmax(logits) == answer),
        "prob": float(np.exp(logits[answer] - lse)),
        "logit_diff": float(logits[answer] - logits[wrong].max()),
    }


def _assert_metrics(got: Metrics, want: list[dict[str, float]], context: str) -> None:
    np.testing.assert_array_equal(got.accuracy, [w["accuracy"] for w in want], err_msg=context)
    # Batched, left-padded float32 against one unpadded prompt: another reduction order. Measured here:
    # prob within 5e-7, logit_diff within 5e-6 (its logits reach ~5).
    np.testing.assert_allclose(got.prob, [w["prob"] for w in want], atol=1e-6, rtol=0, err_msg=context)
    np.testing.assert_allclose(got.logit_diff, [w["logit_diff"] for w in want], atol=1e-5, rtol=0, err_msg=context)


@pytest.fixture(scope="module")
def answers(loaded) -> list[str]:
    """The clean top word for every other prompt, a fixed word for the rest: accuracy is not all 0."""
    words = [loaded.tokenizer.convert_ids_to_tokens(int(np.argmax(_run(loaded, p)))) for p in PROMPTS]
    return [w if i % 2 == 0 else f"w{40 + i}" for i, w in enumerate(words)]


# ---------------------------------------------------------------------------------------------------
# Sweeps against the reference.

@pytest.mark.parametrize("ablation,batch_size,max_rows,reference", [
    ("zero", 16, 512, False), ("zero", 3, 4, False),
    ("mean", 2, 512, True), ("mean", 16, 40, False),
    ("resample", 2, 512, False), ("resample", 3, 7, False), ("resample", 16, 512, True),
])
def test_sweep_matches_hooks(loaded, answers, ablation, batch_size, max_rows, reference):
    targets = _targets(loaded.shape)
    ref_texts = REFERENCE if reference else None
    res = ablation_sweep(loaded, PROMPTS, answers, targets, ablation=ablation, reference=ref_texts,
                         batch_size=batch_size, max_rows=max_rows, progress=False)
    assert res.ablation == ablation and list(res.ablated) == [t.id for t in targets]
    answer_ids = answer_token_ids(loaded.tokenizer, answers)
    clean = [_reference_metrics(_run(loaded, p), a, answer_ids) for p, a in zip(PROMPTS, answer_ids)]
    _assert_metrics(res.clean, clean, "clean")

    means = _means(loaded, ref_texts or PROMPTS)
    caps = [_capture(loaded, p) for p in PROMPTS]
    donors = resample_donors([len(c[(0, "attn")]) for c in caps], batch_size) if ablation == "resample" else None
    moved = 0
    for t in targets:
        key, sel = (t.layer, SITE_OF_KIND[t.kind]), _selector(t, loaded.shape.head_dim)
        want = []
        for p, text in enumerate(PROMPTS):
            if ablation == "zero":
                value = np.zeros(1)
            elif ablation == "mean":
                value = means[key][sel]
            else:
                # Right-aligned: position -k of the receiver takes the donor's -k, or the mean before
                # the donor's first token.
                donor, n = caps[donors[p]][key], len(caps[p][key])
                value = np.stack([donor[len(donor) - (n - i)] if n - i <= len(donor) else means[key]
                                  for i in range(n)])[:, sel]
            logits = _run(loaded, text, [(t.layer, key[1], _replace(sel, value))])
            want.append(_reference_metrics(logits, answer_ids[p], answer_ids))
        _assert_metrics(res.ablated[t.id], want, f"{ablation} {t.id}")
        moved += np.abs(res.ablated[t.id].prob - res.clean.prob).max() > 1e-4
    assert moved >= len(targets) - 2  # the comparison is not vacuous: ablations change the output


@pytest.mark.parametrize("ablation", ABLATIONS)
def test_many_targets_per_forward_equal_one_at_a_time(loaded, answers, ablation):
    targets = _targets(loaded.shape)
    # Every copy computed at every layer (reuse=False): the rows of one forward, nothing left out.
    together = ablation_sweep(loaded, PROMPTS, answers, targets, ablation=ablation, batch_size=3, progress=False,
                              reuse=False)
    for t in targets:
        alone = ablation_sweep(loaded, PROMPTS, answers, [t], ablation=ablation, batch_size=3, progress=False,
                               reuse=False)
        # The same rows, but CPU matmuls block a [16 x 3, T] batch differently from a [2 x 3, T] one: the
        # float32 logits may differ in their last bit (measured: 2.4e-7 relative), never more.
        for got, want in ((together.ablated[t.id], alone.ablated[t.id]), (together.clean, alone.clean)):
            np.testing.assert_array_equal(got.accuracy, want.accuracy)
            np.testing.assert_allclose(got.prob, want.prob, rtol=1e-6, atol=0)
            np.testing.assert_allclose(got.logit_diff, want.logit_diff, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("max_rows", [9, 512])
@pytest.mark.parametrize("ablation", ABLATIONS)
def test_ablations_on_the_clean_run_change_nothing(loaded, answers, ablation, max_rows):
    """Each copy computed only from its target's layer on, the clean copy's rows standing in below it.
    Lower layers then run on fewer rows, another float32 blocking: measured within 1.7e-6 relative on
    prob (2e-4, a log-prob of -8.4) and 1e-6 on logit_diff. max_rows 9: passes of 2 copies; 512: one."""
    targets = _targets(loaded.shape)
    fresh = ablation_sweep(loaded, PROMPTS, answers, targets, ablation=ablation, batch_size=3, max_rows=max_rows,
                           progress=False, reuse=False)
    staggered = ablation_sweep(loaded, PROMPTS, answers, targets, ablation=ablation, batch_size=3,
                               max_rows=max_rows, progress=False)
    for got, want in [(staggered.clean, fresh.clean),
                      *((staggered.ablated[t.id], fresh.ablated[t.id]) for t in targets)]:
        np.testing.assert_array_equal(got.accuracy, want.accuracy)
        np.testing.assert_allclose(np.log(got.prob), np.log(want.prob), rtol=0, atol=5e-6)
        np.testing.assert_allclose(got.logit_diff, want.logit_diff, rtol=1e-6, atol=5e-6)


@pytest.mark.parametrize("path", ["last token", "staggered"])
def test_patching_on_the_clean_run_changes_nothing(loaded, answers, path, monkeypatch):
    """A patch computed on the last position only, over the clean batch's keys and values of the
    others; and, where those cannot be had, each copy from its layer on: both equal every copy
    computed everywhere, within float32 blocking (as above)."""
    import circuitgate.interventions as iv

    if path == "staggered":
        monkeypatch.setattr(iv, "_prefix_cache", lambda *a: None)
    rng = np.random.default_rng(1)
    source = rng.normal(size=(len(PROMPTS), loaded.shape.n_layers, loaded.shape.hidden)).astype(np.float32)
    others = answers[1:] + answers[:1]
    fresh, reused = (patch_residual(loaded, PROMPTS, answers, source, others, batch_size=3, max_rows=6,
                                    progress=False, reuse=reuse) for reuse in (False, True))
    pairs = [(reused.clean, fresh.clean), (reused.clean_other, fresh.clean_other),
             *zip(reused.own, fresh.own), *zip(reused.other, fresh.other)]
    for got, want in pairs:
        np.testing.assert_array_equal(got.accuracy, want.accuracy)
        np.testing.assert_allclose(np.log(got.prob), np.log(want.prob), rtol=0, atol=5e-6)
        np.testing.assert_allclose(got.logit_diff, want.logit_diff, rtol=1e-6, atol=5e-6)
    moved = [np.abs(m.prob - fresh.clean.prob).max() for m in fresh.own]
    assert min(moved) > 1e-4  # not vacuous: every layer's patch changes the output


def test_copies_out_of_layer_order_are_refused(loaded):
    from circuitgate.interventions import _staggered

    with pytest.raises(ValueError, match="ordered by their first edited layer"):
        with _staggered(loaded, [1, 0], 3):
            pass


def test_order_and_batching_do_not_change_results(loaded, answers):
    targets = _targets(loaded.shape)
    runs = [ablation_sweep(loaded, PROMPTS, answers, targets, ablation="mean", batch_size=bs, max_rows=mr,
                           progress=False) for bs, mr in [(1, 512), (2, 5), (3, 512), (16, 17)]]
    for other in runs[1:]:
        for tid in runs[0].ablated:
            np.testing.assert_allclose(other.ablated[tid].prob, runs[0].ablated[tid].prob, atol=1e-5, rtol=1e-5)
    # Prompts given in another order come back in that order.
    perm = [4, 0, 6, 2, 1, 5, 3]
    shuffled = ablation_sweep(loaded, [PROMPTS[i] for i in perm], [answers[i] for i in perm], targets,
                              ablation="mean", batch_size=3, progress=False)
    np.testing.assert_allclose(shuffled.clean.prob, runs[2].clean.prob[perm], atol=1e-6)
    np.testing.assert_allclose(shuffled.ablated["head-L1H2"].prob, runs[2].ablated["head-L1H2"].prob[perm], atol=1e-6)


def test_no_targets_gives_clean_metrics(loaded, answers):
    res = ablation_sweep(loaded, PROMPTS, answers, [], progress=False)
    assert res.ablated == {} and res.clean.prob.shape == (len(PROMPTS),)


def test_only_last_position_logits_are_computed(qwen):
    """logits_to_keep=1 reaches the HF forward through nnsight 0.8.1: lm_head sees one position per row."""
    shapes = []
    handle = qwen.hf.get_output_embeddings().register_forward_hook(lambda m, a, out: shapes.append(out.shape))
    try:
        ablation_sweep(qwen, PROMPTS, ["w1"] * len(PROMPTS), [Target("attn-L0", "attn", 0)], ablation="mean",
                       batch_size=16, progress=False)
    finally:
        handle.remove()
    assert [s[1] for s in shapes] == [1, 1]  # the means pass and the sweep pass


def test_patch_residual_matches_hooks(loaded, answers):
    rng = np.random.default_rng(0)
    source = rng.normal(0, 3, size=(len(PROMPTS), loaded.shape.n_layers, loaded.shape.hidden)).astype(np.float32)
    others = [f"w{20 + i}" for i in range(len(PROMPTS))]
    res = patch_residual(loaded, PROMPTS, answers, source, others, batch_size=3, max_rows=6, progress=False)
    own_ids = answer_token_ids(loaded.tokenizer, answers)
    other_ids = answer_token_ids(loaded.tokenizer, others)
    cands = np.concatenate([own_ids, other_ids])  # the default: both answer lists
    clean_logits = [_run(loaded, p) for p in PROMPTS]
    _assert_metrics(res.clean, [_reference_metrics(lg, a, cands) for lg, a in zip(clean_logits, own_ids)], "clean")
    _assert_metrics(res.clean_other, [_reference_metrics(lg, a, cands) for lg, a in zip(clean_logits, other_ids)],
                    "clean other")
    assert len(res.own) == len(res.other) == loaded.shape.n_layers
    for layer in range(loaded.shape.n_layers):
        logits = []
        for p, text in enumerate(PROMPTS):
            def last(x, v=torch.as_tensor(source[p, layer])):
                x = x.clone()
                x[0, -1] = v
                return x
            logits.append(_run(loaded, text, [(layer, "resid", last)]))
        _assert_metrics(res.own[layer], [_reference_metrics(lg, a, cands) for lg, a in zip(logits, own_ids)],
                        f"own L{layer}")
        _assert_metrics(res.other[layer], [_reference_metrics(lg, a, cands) for lg, a in zip(logits, other_ids)],
                        f"other L{layer}")
        assert np.abs(res.own[layer].prob - res.clean.prob).max() > 1e-4


# ---------------------------------------------------------------------------------------------------
# Pieces: metrics, answer tokens, targets, batching.

def test_metrics_hand_computed():
    logits = np.array([
        [2.0, 1.0, 0.0, 3.0, 0.0],  # answer 0: top is 3 (wrong), best other candidate 1 -> 2 - 1
        [0.0, 4.0, 1.0, 0.0, 0.0],  # answer 1: top, best other candidate 0 or 2 -> 4 - 1
    ])
    m = metrics_from_logits(logits, np.array([0, 1]), np.array([0, 1, 2, 1]))
    np.testing.assert_array_equal(m.accuracy, [0.0, 1.0])
    z0, z1 = np.exp(logits[0]).sum(), np.exp(logits[1]).sum()
    np.testing.assert_allclose(m.prob, [np.exp(2) / z0, np.exp(4) / z1], rtol=1e-6)
    np.testing.assert_allclose(m.logit_diff, [1.0, 3.0], rtol=1e-6)
    assert m.prob.dtype == m.accuracy.dtype == m.logit_diff.dtype == np.float64
    # One distinct candidate: the best wrong answer is the whole vocabulary's top but the answer.
    m = metrics_from_logits(logits, np.array([0, 1]), np.array([1, 1]))
    np.testing.assert_allclose(m.logit_diff, [2.0 - 3.0, 4.0 - 1.0], rtol=1e-6)
    np.testing.assert_array_equal(m.get("accuracy"), [0.0, 1.0])
    with pytest.raises(CircuitgateError, match="unknown metric 'acc'"):
        m.get("acc")


def test_whole_answer_metrics_hand_computed():
    # Two positions; row 0 has a two-token answer (3 then 1), row 1 a one-token answer (2, right-aligned).
    logits = np.array([
        [[0.0, 1.0, 0.0, 2.0], [0.0, 3.0, 1.0, 0.0]],  # row 0: 3 is top at position 0, 1 is top at 1
        [[9.0, 9.0, 9.0, 9.0], [1.0, 0.0, 2.5, 2.0]],  # row 1: position 0 is not its answer's
    ])
    answers = np.array([[3, 1], [-1, 2]])
    m = answer_metrics(logits, answers, np.array([3, 2, 0]))
    np.testing.assert_array_equal(m.accuracy, [1.0, 1.0])
    lse = lambda v: np.log(np.exp(v).sum())  # noqa: E731
    np.testing.assert_allclose(m.prob, [np.exp(2.0 - lse(logits[0, 0]) + 3.0 - lse(logits[0, 1])),
                                        np.exp(2.5 - lse(logits[1, 1]))], rtol=1e-6)
    # row 0: first token against the other candidates' first tokens (2, 0): 2 - 0; later token 1 against
    # the best other token (2): 3 - 1; the smaller. row 1: 2.5 against candidates 3 and 0: 2.5 - 2.
    np.testing.assert_allclose(m.logit_diff, [min(2.0 - 0.0, 3.0 - 1.0), 0.5], rtol=1e-6)
    # A wrong second token makes the whole answer wrong.
    m = answer_metrics(logits, np.array([[3, 2], [-1, 2]]), np.array([3, 2, 0]))
    np.testing.assert_array_equal(m.accuracy, [0.0, 1.0])
    np.testing.assert_allclose(m.logit_diff[0], 1.0 - 3.0, rtol=1e-6)


def test_sweep_scores_multi_token_answers_whole(qwen):
    """Clean and zero-ablated metrics of two-token answers equal a plain forward of prompt + first
    answer token, read at the last two positions."""
    prompts, answers = ["w5 w7 w9", "w3 w4", "w10 w11 w12 w13"], ["w20 w21", "w22", "w23 w24"]
    target = Target("mlp-L1", "mlp", 1)
    res = ablation_sweep(qwen, prompts, answers, [target], batch_size=2, progress=False)
    tok = qwen.tokenizer
    cands = answer_token_ids(tok, answers)
    for ablated, got in ((False, res.clean), (True, res.ablated["mlp-L1"])):
        hooks = [(1, "mlp", lambda x: torch.zeros_like(x))] if ablated else []
        for i, (p, a) in enumerate(zip(prompts, answers)):
            want = tok(a, add_special_tokens=False)["input_ids"]
            handles = [_hook(qwen, layer, site, fn) for layer, site, fn in hooks]
            try:
                with torch.no_grad():
                    ids = torch.tensor([tok(p)["input_ids"] + want[:-1]])
                    lg = qwen.hf(input_ids=ids).logits[0, -len(want):].double().numpy()
            finally:
                for h in handles:
                    h.remove()
            logp = [lg[k, w] - np.log(np.exp(lg[k]).sum()) for k, w in enumerate(want)]
            first = _reference_metrics(lg[0], want[0], cands)
            later = [lg[k, w] - np.delete(lg[k], w).max() for k, w in enumerate(want)][1:]
            assert got.accuracy[i] == float(all(lg[k].argmax() == w for k, w in enumerate(want))), (ablated, i)
            np.testing.assert_allclose(got.prob[i], np.exp(sum(logp)), atol=1e-6)
            np.testing.assert_allclose(got.logit_diff[i], min([first["logit_diff"], *later]), atol=1e-5)


def test_answer_token_ids(qwen):
    np.testing.assert_array_equal(answer_token_ids(qwen.tokenizer, ["w7", "w12 w13"]),
                                  qwen.tokenizer.convert_tokens_to_ids(["w7", "w12"]))
    with pytest.raises(CircuitgateError, match="answer 'Paris' tokenises to the unknown token"):
        answer_token_ids(qwen.tokenizer, ["w7", "Paris"])
    with pytest.raises(CircuitgateError, match="answer ' ' tokenises to nothing"):
        answer_token_ids(qwen.tokenizer, [" "])


def test_standard_targets(qwen):
    ids = [t.id for t in standard_targets(qwen.shape)]
    assert ids == ["attn-L0", "mlp-L0", "head-L0H0", "head-L0H1", "head-L0H2", "head-L0H3",
                   "attn-L1", "mlp-L1", "head-L1H0", "head-L1H1", "head-L1H2", "head-L1H3"]
    assert Target("n", "neurons", 0, neurons=np.array([4, 2])).neurons == (4, 2)


@pytest.mark.parametrize("kwargs,message", [
    ({"kind": "embed"}, "unknown kind 'embed'"),
    ({"kind": "head"}, "head index is given exactly when kind is 'head'"),
    ({"kind": "attn", "head": 1}, "head index is given exactly when kind is 'head'"),
    ({"kind": "neurons"}, "needs a non-empty neuron list"),
    ({"kind": "neurons", "neurons": ()}, "needs a non-empty neuron list"),
    ({"kind": "mlp", "neurons": (1,)}, "neurons are given only for kind 'neurons'"),
])
def test_target_validation(kwargs, message):
    with pytest.raises(CircuitgateError, match=message):
        Target("x", layer=0, **kwargs)


def test_batches_and_donors_hand_computed():
    lengths = [3, 1, 3, 2, 5]
    # Stable sort by length: 1, 3, 0, 2, 4; at batch size 2 the trailing singleton [4] joins [0, 2].
    assert [b.tolist() for b in plan_batches(lengths, 2)] == [[1, 3], [0, 2], [4]]
    assert [b.tolist() for b in plan_batches(lengths, 2, resample=True)] == [[1, 3], [0, 2, 4]]
    assert resample_donors(lengths, 2).tolist() == [2, 3, 4, 1, 0]
    assert resample_donors(lengths, 16).tolist() == [2, 3, 4, 0, 1]
    donors = resample_donors([len(p.split()) for p in PROMPTS], 3)
    assert (donors != np.arange(len(PROMPTS))).all()
    with pytest.raises(CircuitgateError, match="needs at least 2 prompts"):
        resample_donors([4], 2)
    with pytest.raises(CircuitgateError, match="needs batch_size >= 2"):
        resample_donors(lengths, 1)


# ---------------------------------------------------------------------------------------------------
# Errors.

@pytest.mark.parametrize("call,message", [
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [], ablation="noise"), "unknown ablation 'noise'"),
    (lambda m: ablation_sweep(m, [], [], []), "no prompts to intervene on"),
    (lambda m: ablation_sweep(m, ["w1", "w2"], ["w2"], []), "2 prompts but 1 answers"),
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [], batch_size=0), "batch_size must be >= 1, got 0"),
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [], max_rows=0), "max_rows must be >= 1, got 0"),
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [Target("attn-L2", "attn", 2)]),
     "target 'attn-L2': layer 2 out of range"),
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [Target("h", "head", 1, head=4)]), "target 'h': head 4 out of range"),
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [Target("n", "neurons", 1, neurons=(1, 64))]),
     "target 'n': neuron 64 out of range"),
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [Target("a", "attn", 0), Target("a", "mlp", 0)]),
     "target id 'a' is given twice"),
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [], ablation="resample"), "needs at least 2 prompts"),
    (lambda m: ablation_sweep(m, ["w1", "w3"], ["w2", "w2"], [], ablation="resample", batch_size=1),
     "needs batch_size >= 2"),
    (lambda m: ablation_sweep(m, ["w1"], ["w2"], [], ablation="mean", reference=[]), "reference prompt set"),
    (lambda m: ablation_sweep(m, ["w1"], ["Paris"], []), "answer 'Paris' tokenises to the unknown token"),
    (lambda m: patch_residual(m, ["w1"], ["w2"], np.zeros((1, 2, 32)), []), "1 prompts but 0 other answers"),
    (lambda m: patch_residual(m, ["w1"], ["w2"], np.zeros((1, 3, 32)), ["w3"]),
     r"patch source has shape \(1, 3, 32\), expected \(1, 2, 32\)"),
    (lambda m: patch_residual(m, ["w1"], ["w2"], np.full((1, 2, 32), np.nan), ["w3"]), "non-finite values"),
])
def test_errors(qwen, call, message):
    with pytest.raises(CircuitgateError, match=message):
        call(qwen)


def test_non_finite_logits_are_one_line_errors(qwen):
    handle = qwen.adapter.mlp_module(qwen.hf, 1).register_forward_hook(lambda m, a, out: out * float("nan"))
    try:
        with pytest.raises(CircuitgateError, match=r"non-finite logits in the clean run of prompt 'w1'") as e:
            ablation_sweep(qwen, ["w1", "w2"], ["w2", "w3"], [Target("attn-L0", "attn", 0)], progress=False)
        assert "\n" not in str(e.value)
    finally:
        handle.remove()
