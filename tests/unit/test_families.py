"""Every supported family through the whole model access layer, against plain torch hooks.

For each transformers ``model_type`` the adapters map, a tiny random model is built from its config
class, saved with a word-level tokenizer and loaded the way circuitgate loads any directory. What
circuitgate reads (``extract``, a trace through the adapter) and what it edits (``ablation_sweep``,
``perturb``) is compared with unpadded single-prompt forwards of ``loaded.hf`` with torch hooks. The
hooks name the modules themselves (``_REFERENCE``), not through the adapter: a wrong path in the
adapter cannot agree with itself here.
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
from conftest import TINY_WORDS

from circuitgate import CircuitgateError
from circuitgate.extract import extract, left_pad, tokenize
from circuitgate.interventions import Target, ablation_sweep, answer_token_ids, patch_residual
from circuitgate.models import Shape, adapter_for, load_model, resolve
from circuitgate.models.adapters import FAMILIES
from circuitgate.organism.perturb import perturb
from circuitgate.truth import INFO_FILE, SCHEMA

# 11 model types x every site and ablation: about 10 s, in CI's full run, not the inner loop.
pytestmark = pytest.mark.slow

SUPPORTED = ("gemma", "gemma2", "gemma3_text", "gpt2", "llama", "mistral", "olmo", "olmo2", "phi3", "qwen2", "qwen3")
# Lengths 3 2 6 1 4: at batch size 3 both batches are left-padded.
PROMPTS = ["w5 w7 w9", "w3 w4", "w10 w11 w12 w13 w14 w15", "w20", "w8 w9 w10 w11"]
ANSWERS = ["w1", "w9", "w12", "w30", "w44"]
BLOCK = 16  # neurons per block of the fake organism plan perturb reads: neurons-L1-B1 is 16..31
TARGETS = [
    Target("head-L0H1", "head", 0, head=1),
    Target("attn-L1", "attn", 1),
    Target("mlp-L0", "mlp", 0),
    Target("neurons-L1-B1", "neurons", 1, neurons=tuple(range(BLOCK, 2 * BLOCK))),
]
# Extraction and sweeps batch and left-pad; the reference runs each prompt alone: another reduction
# order. Its float32 error grows with the size of the vector (residuals here reach ~25: up to 1.1e-5
# measured, on entries near 0 too), so activations are compared within ATOL times their largest
# entry (at least 1), metrics within ATOL.
ATOL = 1e-5


def _assert_close(got, want, context: str) -> None:
    got, want = np.asarray(got), np.asarray(want)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, atol=ATOL * scale, rtol=0, err_msg=context)


# -- tiny models ------------------------------------------------------------------------------------

def _config(family: str):
    """2 layers, hidden 32, 4 heads (2 KV heads where the family has GQA), FFN 64 (GPT-2: 4 * 32).

    head_dim 16 where the family's config has its own (gemma*, qwen3), so that H * head_dim != hidden.
    initializer_range 0.3: at the default 0.02 ablations do nothing (docs/nnsight.md, Tiny random models).
    """
    import transformers as tf

    tokens = dict(vocab_size=len(TINY_WORDS), pad_token_id=0, bos_token_id=2, eos_token_id=2,
                  initializer_range=0.3, tie_word_embeddings=True)
    if family == "gpt2":
        return tf.GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4, **tokens)
    classes = {
        "llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "qwen3": tf.Qwen3Config, "mistral": tf.MistralConfig,
        "gemma": tf.GemmaConfig, "gemma2": tf.Gemma2Config, "gemma3_text": tf.Gemma3TextConfig,
        "olmo": tf.OlmoConfig, "olmo2": tf.Olmo2Config, "phi3": tf.Phi3Config,
    }
    extra = {"head_dim": 16} if family in ("gemma", "gemma2", "gemma3_text", "qwen3") else {}
    return classes[family](hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=2, **extra, **tokens)


def _build(directory, family: str):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(family), attn_implementation="eager", dtype=torch.float32)
    with torch.no_grad():  # biases start at 0: random ones, so that zeroing a module must zero its bias
        for name, param in model.named_parameters():
            if name.endswith(".bias"):
                param.normal_(0, 0.3)
    model.save_pretrained(directory)
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TINY_WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>",
                            padding_side="left").save_pretrained(directory)
    return directory


def _load(directory):
    return load_model(resolve(str(directory)), device="cpu", dtype="float32", progress=False)


@pytest.fixture(scope="module", params=SUPPORTED)
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model_dir(family, tmp_path_factory):
    return _build(tmp_path_factory.mktemp(f"family-{family}"), family)


@pytest.fixture(scope="module")
def loaded(model_dir):
    return _load(model_dir)


# -- the reference: modules named here, plain forwards, torch hooks ---------------------------------

def _first_half(x: torch.Tensor) -> torch.Tensor:
    return x[..., :x.shape[-1] // 2]


_LLAMA = dict(layers="model.layers", attn="self_attn", heads="self_attn.o_proj", mlp="mlp",
              gate="mlp.gate_proj", split=None, neurons="mlp.down_proj")
_REFERENCE = {
    **{f: _LLAMA for f in SUPPORTED},
    # phi3's gate_up_proj computes [gate | up] in one matmul.
    "phi3": {**_LLAMA, "gate": "mlp.gate_up_proj", "split": _first_half},
    # GPT-2 has no gate: c_fc's output is the activation's input.
    "gpt2": dict(layers="transformer.h", attn="attn", heads="attn.c_proj", mlp="mlp", gate="mlp.c_fc", split=None,
                 neurons="mlp.c_proj"),
}


def _module(hf, family: str, layer: int, site: str):
    ref = _REFERENCE[family]
    return hf.get_submodule(f"{ref['layers']}.{layer}.{ref[site]}")


def _layer(hf, family: str, layer: int):
    return hf.get_submodule(f"{_REFERENCE[family]['layers']}.{layer}")


@contextmanager
def _hooks(hf, family: str, capture: dict | None = None,
           edit: tuple[int, str, Callable[[torch.Tensor], None]] | None = None) -> Iterator[None]:
    """Capture every site of every layer into ``capture`` (``(layer, site)`` -> [T, ...] of the single
    prompt), and/or apply ``edit`` = (layer, site, in-place function) to one site."""
    def record(layer: int, site: str, x: torch.Tensor) -> None:
        if edit is not None and edit[:2] == (layer, site):
            edit[2](x)
        if capture is not None:
            capture[(layer, site)] = x[0].clone()

    def pre(layer, site):
        return lambda m, args: record(layer, site, args[0])

    def post(layer, site):
        def hook(m, args, out):
            assert isinstance(out, torch.Tensor), f"{family} {site} output is a {type(out).__name__}"
            record(layer, site, out)
        return hook

    def attn(layer):
        def hook(m, args, out):  # (attn_out, probs); probs only under eager attention
            record(layer, "attn", out[0])
            record(layer, "probs", out[1])
        return hook

    def gate(layer, split=_REFERENCE[family]["split"]):
        return lambda m, args, out: record(layer, "gate", split(out) if split else out)

    handles = []
    for layer in range(_config(family).num_hidden_layers):
        handles += [
            _module(hf, family, layer, "heads").register_forward_pre_hook(pre(layer, "heads")),
            _module(hf, family, layer, "attn").register_forward_hook(attn(layer)),
            _module(hf, family, layer, "gate").register_forward_hook(gate(layer)),
            _module(hf, family, layer, "neurons").register_forward_pre_hook(pre(layer, "neurons")),
            _module(hf, family, layer, "mlp").register_forward_hook(post(layer, "mlp")),
            _layer(hf, family, layer).register_forward_hook(post(layer, "resid")),
        ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def _run(loaded, family: str, text: str, capture: dict | None = None, edit=None) -> torch.Tensor:
    """Logits [T, V] of one unpadded prompt through the plain HF forward."""
    ids = torch.tensor([loaded.tokenizer(text)["input_ids"]])
    with _hooks(loaded.hf, family, capture, edit):
        logits = loaded.hf(input_ids=ids).logits[0]
    if capture is not None:
        capture["logits"] = logits
    return logits


def _captures(loaded, family: str) -> list[dict]:
    caps = []
    for text in PROMPTS:
        cap: dict = {}
        _run(loaded, family, text, cap)
        caps.append(cap)
    return caps


# -- the access layer ----------------------------------------------------------------------------

def test_every_family_has_an_adapter_and_its_shape(family, loaded):
    cfg = _config(family)
    head_dim = 16 if family in ("gemma", "gemma2", "gemma3_text", "qwen3") else 8
    kv = 4 if family == "gpt2" else 2
    ffn = 128 if family == "gpt2" else 64
    assert loaded.adapter.family == family == cfg.model_type
    assert loaded.shape == Shape(n_layers=2, n_heads=4, n_kv_heads=kv, head_dim=head_dim, hidden=32, ffn=ffn)
    assert loaded.adapter.n_layers(loaded.hf) == 2
    assert loaded.adapter.layer(loaded.hf, 1) is _layer(loaded.hf, family, 1)


def test_extract_matches_hooks(family, loaded):
    """Last-token residuals, attention rows, neurons and gate pre-activations, across left-padded batches."""
    caps = _captures(loaded, family)
    acts = extract(loaded, PROMPTS, batch_size=3, progress=False)
    width = max(len(c["logits"]) for c in caps)
    for p, cap in enumerate(caps):
        n = len(cap["logits"])
        for layer in range(2):
            for site, got in (("resid", acts.resid), ("neurons", acts.neurons), ("gate", acts.gate)):
                _assert_close(got[p, layer], cap[(layer, site)][-1].numpy(), f"{family} {site} L{layer} prompt {p}")
            probs = acts.attn[p, layer]  # [H, width]: right-aligned, pad keys 0
            _assert_close(probs[:, width - n:], cap[(layer, "probs")][:, -1].numpy(), f"{family} probs L{layer} {p}")
            assert not probs[:, :width - n].any()


@torch.no_grad()
def test_every_adapter_site_matches_hooks_in_one_trace(family, loaded):
    """Every site at every real position of a left-padded batch, and the logits the model returns
    (gemma2 soft-caps lm_head's output)."""
    caps = _captures(loaded, family)
    ad, m = loaded.adapter, loaded.model
    ids, mask = left_pad(tokenize(loaded, PROMPTS), loaded.tokenizer.pad_token_id)
    saved = {}
    with m.trace({"input_ids": ids, "attention_mask": mask}):
        for layer in range(2):  # execution order (docs/nnsight.md)
            saved[(layer, "heads")] = ad.head_input(m, layer).save()
            attn = ad.attention(m, layer)
            saved[(layer, "attn")], saved[(layer, "probs")] = attn[0].save(), attn[1].save()
            saved[(layer, "gate")] = ad.gate_pre(m, layer).save()
            saved[(layer, "neurons")] = ad.neurons(m, layer).save()
            saved[(layer, "mlp")] = ad.mlp_output(m, layer).save()
            saved[(layer, "resid")] = ad.residual(m, layer).save()
        saved["logits"] = ad.logits(m).save()
    for p, cap in enumerate(caps):
        n = len(cap["logits"])
        for key, want in cap.items():
            got = saved[key][p]
            if key[1:] == ("probs",):  # [H, T, T]: the real queries' rows; their pad keys are 0
                assert not got[:, -n:, :-n].any()
                got = got[:, -n:, -n:]
            else:
                got = got[-n:]
            assert got.shape == want.shape, f"{family} {key}"
            _assert_close(got.numpy(), want.numpy(), f"{family} {key} prompt {p}")


# -- ablations and perturbation ------------------------------------------------------------------

def _selector(target: Target, head_dim: int):
    if target.kind == "head":
        return slice(target.head * head_dim, (target.head + 1) * head_dim)
    if target.kind == "neurons":
        return list(target.neurons)
    return slice(None)


_SITE = {"head": "heads", "attn": "attn", "mlp": "mlp", "neurons": "neurons"}


def _reference_metrics(logits: torch.Tensor, answer: int, candidates: np.ndarray) -> dict[str, float]:
    lg = logits.double().numpy()
    wrong = [c for c in np.unique(candidates) if c != answer]
    return {"accuracy": float(np.argmax(lg) == answer),
            "prob": float(np.exp(lg[answer] - np.logaddexp.reduce(lg))),
            "logit_diff": float(lg[answer] - lg[wrong].max())}


def _assert_metrics(got, want: list[dict[str, float]], context: str) -> None:
    np.testing.assert_array_equal(got.accuracy, [w["accuracy"] for w in want], err_msg=context)
    for name in ("prob", "logit_diff"):
        np.testing.assert_allclose(got.get(name), [w[name] for w in want], atol=ATOL, rtol=0,
                                   err_msg=f"{context} {name}")


@pytest.fixture(scope="module")
def zero_sweep(loaded):
    return ablation_sweep(loaded, PROMPTS, ANSWERS, TARGETS, ablation="zero", batch_size=3, progress=False)


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_ablation_sweep_matches_hooks(family, loaded, zero_sweep, ablation):
    res = zero_sweep if ablation == "zero" else ablation_sweep(
        loaded, PROMPTS, ANSWERS, TARGETS, ablation="mean", batch_size=3, progress=False)
    answer_ids = answer_token_ids(loaded.tokenizer, ANSWERS)
    clean = [_reference_metrics(_run(loaded, family, t)[-1], a, answer_ids) for t, a in zip(PROMPTS, answer_ids)]
    _assert_metrics(res.clean, clean, f"{family} clean")
    caps = _captures(loaded, family) if ablation == "mean" else []
    for t in TARGETS:
        site, sel = _SITE[t.kind], _selector(t, loaded.shape.head_dim)
        if ablation == "mean":  # over every real position of the prompts (the default reference)
            value = torch.cat([c[(t.layer, site)] for c in caps]).double().mean(0)[sel].float()
        else:
            value = torch.zeros(())

        def fn(x, sel=sel, value=value):
            x[..., sel] = value

        want = [_reference_metrics(_run(loaded, family, text, edit=(t.layer, site, fn))[-1], a, answer_ids)
                for text, a in zip(PROMPTS, answer_ids)]
        _assert_metrics(res.ablated[t.id], want, f"{family} {ablation} {t.id}")
        # Not vacuous: every target moves the output.
        assert np.abs(res.ablated[t.id].prob - res.clean.prob).max() > 1e-4, f"{family} {t.id} changes nothing"


def test_patching_on_the_clean_run_matches_computing_every_copy(family, loaded):
    """The last-position forward over the clean batch's cache (each family's own cache layers: Gemma's
    sliding windows, GPT-2's) against every copy computed at every position."""
    rng = np.random.default_rng(3)
    source = rng.normal(size=(len(PROMPTS), loaded.shape.n_layers, loaded.shape.hidden)).astype(np.float32)
    others = ANSWERS[1:] + ANSWERS[:1]
    fresh, reused = (patch_residual(loaded, PROMPTS, ANSWERS, source, others, batch_size=3, progress=False,
                                    reuse=reuse) for reuse in (False, True))
    for got, want in [(reused.clean, fresh.clean), *zip(reused.own, fresh.own), *zip(reused.other, fresh.other)]:
        _assert_metrics(got, [{k: float(want.get(k)[i]) for k in ("accuracy", "prob", "logit_diff")}
                              for i in range(len(PROMPTS))], family)


def test_perturbed_weights_equal_zero_ablation(family, model_dir, zero_sweep, tmp_path):
    """Zeroing a component's weights (perturb) does what a zero ablation of it does: columns of an
    nn.Linear weight, rows of GPT-2's Conv1D, and a whole module's bias with its weight."""
    source = shutil.copytree(model_dir, tmp_path / "organism")
    # A plan with neuron blocks: perturb zeroes blocks only of an organism.
    info = {k: {} for k in ("recipe", "accuracy", "ground_truth", "activation_truth")}
    (source / INFO_FILE).write_text(json.dumps({**info, "schema": SCHEMA, "name": "tiny", "arch": family,
                                                "recipe_hash": "x", "plan": {"block_size": BLOCK}}))
    for t in TARGETS:
        broken = _load(perturb(source, tmp_path / t.id, [t.id], progress=False))
        clean = ablation_sweep(broken, PROMPTS, ANSWERS, [], batch_size=3, progress=False).clean
        for name in ("accuracy", "prob", "logit_diff"):
            np.testing.assert_allclose(clean.get(name), zero_sweep.ablated[t.id].get(name), atol=ATOL, rtol=0,
                                       err_msg=f"{family} {t.id} {name}")


# -- configs and the unknown family ----------------------------------------------------------------

def test_shape_reads_gpt2_and_gemma_configs():
    from transformers import GemmaConfig, GPT2Config

    assert Shape.from_config(GPT2Config(n_layer=3, n_head=4, n_embd=32)) == Shape(3, 4, 4, 8, 32, 128)
    assert Shape.from_config(GPT2Config(n_layer=3, n_head=4, n_embd=32, n_inner=80)).ffn == 80
    plain = SimpleNamespace(n_layer=3, n_head=4, n_embd=32, n_inner=None)
    assert Shape.from_config(plain) == Shape(3, 4, 4, 8, 32, 128)
    # Gemma 7B: head_dim 256 at hidden 3072 and 16 heads (not 3072 / 16 = 192).
    gemma = GemmaConfig(hidden_size=3072, num_attention_heads=16, num_key_value_heads=16, head_dim=256,
                        num_hidden_layers=28, intermediate_size=24576)
    assert Shape.from_config(gemma) == Shape(28, 16, 16, 256, 3072, 24576)


def test_unknown_model_type_is_one_line_naming_the_supported(tmp_path):
    from transformers import BertConfig

    with pytest.raises(CircuitgateError) as e:
        adapter_for("mamba")
    msg = str(e.value)
    assert msg == f"unsupported architecture 'mamba'; supported model types: {', '.join(SUPPORTED)}"
    assert sorted(FAMILIES) == list(SUPPORTED)
    BertConfig(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64).save_pretrained(
        tmp_path)
    with pytest.raises(CircuitgateError, match="^unsupported architecture 'bert'; supported model types: gemma, "):
        _load(tmp_path)
