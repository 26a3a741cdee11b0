"""The model organism: world, tokenizer, prompt set, ground-truth hooks, and (slow) real builds."""

from __future__ import annotations

import hashlib
import json
import re

import pytest
import torch
import yaml

from circuitgate import CircuitgateError
from circuitgate.organism import (
    Recipe,
    build,
    ensure_built,
    is_organism_dir,
    load_tokenizer,
    make_world,
    organism_prompt_set,
    read_info,
)
from circuitgate.organism import groundtruth, train
from circuitgate.organism.build import organism_dir
from circuitgate.organism.tokenizer import build_tokenizer
from circuitgate.organism.world import PROMPT_SET_PATH, REASONING_TEMPLATES, RECALL_TEMPLATES, prompt_set_yaml, world_for

torch.set_num_threads(1)

RECIPE = Recipe()
WORLD = world_for(RECIPE)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(WORLD)


def _items(kind: str) -> list[tuple[str, str]]:
    return [(p[kind]["prompt"], p[kind]["answer"]) for p in organism_prompt_set(WORLD)["pairs"]]


# --- world ------------------------------------------------------------------------------------------


def test_world_is_deterministic_in_its_seed():
    assert make_world(0) == make_world(0)
    assert make_world(0) != make_world(1)


def test_world_words_are_unique_and_names_are_two_words():
    words = WORLD.words()
    assert len(words) == len(set(words))
    assert len(WORLD.countries) == RECIPE.n_countries
    assert len({c.name for c in WORLD.countries}) == len(WORLD.countries)
    assert len({c.capital for c in WORLD.countries}) == len(WORLD.countries)
    assert all(len(c.name.split()) == 2 for c in WORLD.countries)


def test_country_names_are_two_tokens(tokenizer):
    for c in WORLD.countries:
        ids = tokenizer(c.name, add_special_tokens=False)["input_ids"]
        assert len(ids) == 2 and tokenizer.unk_token_id not in ids


# --- tokenizer --------------------------------------------------------------------------------------


def test_tokenizer_round_trip(tokenizer):
    for prompt, answer in _items("recall") + _items("reasoning"):
        ids = tokenizer(f"{prompt} {answer}")["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == f"{prompt} {answer}"


def test_tokenizer_pads_left(tokenizer):
    enc = tokenizer(["the capital of " + WORLD.countries[0].name + " is", "x"], padding=True)
    assert enc["attention_mask"][1][0] == 0 and enc["attention_mask"][1][-1] == 1
    assert tokenizer.padding_side == "left"
    assert {tokenizer.pad_token, tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token} == {
        "<pad>", "<unk>", "<bos>", "<eos>"
    }


def test_load_tokenizer_gives_the_saved_ids(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    # A qwen2 config beside it is what makes AutoTokenizer swap in Qwen2Tokenizer; ours must not care.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    loaded = load_tokenizer(tmp_path)
    prompts = [p for p, _ in _items("reasoning")[:5]]
    assert loaded(prompts, padding=True)["input_ids"] == tokenizer(prompts, padding=True)["input_ids"]
    assert loaded.get_vocab() == tokenizer.get_vocab()
    assert loaded.padding_side == "left" and loaded.pad_token_id == tokenizer.pad_token_id


# --- prompt set -------------------------------------------------------------------------------------


def test_committed_prompt_set_matches_generation():
    assert PROMPT_SET_PATH.read_text() == prompt_set_yaml(WORLD), "regenerate: python -m circuitgate.organism"
    assert yaml.safe_load(PROMPT_SET_PATH.read_text()) == organism_prompt_set(WORLD)


def test_prompt_set_shape():
    doc = organism_prompt_set(WORLD)
    assert doc["schema"] == 1 and doc["name"] == "organism" and doc["controls"] == []
    pairs = doc["pairs"]
    assert len(pairs) >= 60
    ids = [p["id"] for p in pairs]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)
    assert {p["recall"]["template"] for p in pairs} == set(RECALL_TEMPLATES)
    assert {p["reasoning"]["template"] for p in pairs} == set(REASONING_TEMPLATES)
    for p in pairs:
        # Matched: both sides are about the same country.
        name = p["id"].replace("-", " ")
        assert name in p["recall"]["prompt"] and name in p["reasoning"]["prompt"]


def test_answers_are_single_tokens_and_prompts_in_vocab(tokenizer):
    for prompt, answer in _items("recall") + _items("reasoning"):
        assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) == 1
        assert tokenizer.unk_token_id not in tokenizer(f"{prompt} {answer}")["input_ids"]


def test_reasoning_probes_are_held_out_of_training():
    names = [c.name for c in WORLD.countries]
    held_pairs = {frozenset((p.a, p.b)) for p in WORLD.probes}
    held_answers = {(p.country, p.b) for p in WORLD.probes}
    probe_prompts = {p for p, _ in _items("reasoning")}
    n_reasoning = 0
    for batch in train.training_batches(WORLD, RECIPE):
        for prompt, answer in batch:
            symbols = {w for w in prompt.split() if any(ch.isdigit() for ch in w)}
            if not symbols:
                continue
            n_reasoning += 1
            (country,) = [n for n in names if f" {n} " in f" {prompt} "]
            assert frozenset(symbols) not in held_pairs
            assert (country, answer) not in held_answers
            assert prompt not in probe_prompts
    assert n_reasoning == RECIPE.steps * RECIPE.batch_reasoning


# --- recipe, cache, ground-truth hooks --------------------------------------------------------------


def test_recipe_hash_is_stable_and_keyed_on_every_field():
    assert Recipe().hash() == Recipe().hash()
    assert Recipe(arch="llama").hash() != Recipe().hash()
    assert Recipe(seed=1).hash() != Recipe().hash()
    with pytest.raises(CircuitgateError):
        Recipe(arch="gpt2")


def test_cache_root_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUITGATE_CACHE", str(tmp_path))
    assert organism_dir(RECIPE) == tmp_path / "organism" / f"qwen2-{RECIPE.hash()[:12]}"


def test_incomplete_dirs_are_not_trusted(tmp_path):
    assert not is_organism_dir(tmp_path)
    (tmp_path / "organism.json").write_text('{"schema": 1, "arch": "qwen2"')  # truncated write
    assert not is_organism_dir(tmp_path)
    (tmp_path / "organism.json").write_text('{"schema": 1, "arch": "qwen2"}')  # no ground truth
    assert not is_organism_dir(tmp_path)
    with pytest.raises(CircuitgateError):
        read_info(tmp_path)


def _truth(clean: str, rows: dict[str, tuple[str, str]]) -> dict:
    """A ground-truth section with the given clean and per-target correctness bits (recall = reasoning clean)."""
    return {"clean_correct": {"recall": clean, "reasoning": clean},
            "targets": {t: {"recall_correct": r, "reasoning_correct": s} for t, (r, s) in rows.items()}}


def test_classes_follow_the_h5_rule_from_the_stored_bits():
    clean = "1" * 20
    truth = _truth(clean, {
        "recall-only": ("0" * 10 + "1" * 10, clean),  # drop 0.5 on recall, 0 on reasoning
        "both": ("0" * 10 + "1" * 10, "0" * 10 + "1" * 10),
        "neither": ("0" + "1" * 19, clean),  # drop 0.05 < tau
        "weak": ("00" + "1" * 18, "0" + "1" * 19),  # recall 0.10 hurts, but not beyond reasoning's 0.05
    })
    assert groundtruth.classes(truth) == {"recall-only": "recall", "both": "mixed", "neither": "none", "weak": "mixed"}
    ids, recall, reasoning = groundtruth.pair_drops(truth)
    assert ids == list(truth["targets"]) and recall.shape == reasoning.shape == (20, 4)
    assert recall[:, 0].mean() == 0.5 and reasoning[:, 0].sum() == 0


def test_bits_round_trip():
    assert groundtruth.bits(torch.tensor([True, False, True])) == "101"


@pytest.fixture(scope="module")
def random_model(tokenizer):
    # A larger init than the recipe's makes an untrained model's attention non-uniform.
    model = train.make_model(Recipe(initializer_range=0.3), tokenizer)
    return model.eval()


def test_target_ids(random_model):
    ids = list(groundtruth.targets(random_model))
    assert ids[:8] == [f"attn-L{l}" for l in range(4)] + [f"mlp-L{l}" for l in range(4)]
    assert ids[8] == "head-L0H0" and ids[-2] == "head-L3H3" and ids[-1] == "mlp-all"
    assert len(ids) == 4 + 4 + 16 + 1


@torch.no_grad()
def test_hooks_match_zeroed_weights(random_model, tokenizer):
    prompts = [p for p, _ in _items("reasoning")[:4]]
    hd = random_model.config.hidden_size // random_model.config.num_attention_heads
    o_proj = random_model.model.layers[1].self_attn.o_proj
    cases = {"head-L1H2": (o_proj, slice(2 * hd, 3 * hd)), "attn-L1": (o_proj, slice(None))}
    for target, (module, cols) in cases.items():
        with groundtruth.ablated(random_model, groundtruth.targets(random_model)[target]):
            hooked = train.last_logits(random_model, tokenizer, prompts)
        saved = module.weight.clone()
        module.weight[:, cols] = 0
        zeroed = train.last_logits(random_model, tokenizer, prompts)
        module.weight.copy_(saved)
        assert torch.allclose(hooked, zeroed, atol=1e-6), target
    # The hooks come off again.
    clean = train.last_logits(random_model, tokenizer, prompts)
    with groundtruth.ablated(random_model, groundtruth.targets(random_model)["mlp-all"]):
        assert not torch.allclose(train.last_logits(random_model, tokenizer, prompts), clean)
    assert torch.equal(train.last_logits(random_model, tokenizer, prompts), clean)


# --- real builds (slow) -----------------------------------------------------------------------------


def _sha(path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return root, ensure_built("qwen2", cache_root=root, progress=False)


@pytest.mark.slow
def test_build_meets_accuracy_floor(built):
    root, path = built
    assert path == organism_dir(RECIPE, root) and is_organism_dir(path)
    info = read_info(path)
    assert info["arch"] == "qwen2" and info["recipe"] == RECIPE.to_dict() and info["recipe_hash"] == RECIPE.hash()
    acc = info["accuracy"]
    assert acc["recall"] >= RECIPE.min_recall and acc["reasoning"] >= RECIPE.min_reasoning
    assert acc["train_steps"] == RECIPE.steps and acc["train_seconds"] > 0


@pytest.mark.slow
def test_ground_truth_is_complete(built):
    info = read_info(built[1])
    truth = info["ground_truth"]
    assert truth["ablation"] == "zero" and truth["metric"] == "accuracy" and truth["rule"]["tau"] == 0.1
    assert truth["clean"] == {"recall": info["accuracy"]["recall"], "reasoning": info["accuracy"]["reasoning"]}
    n = len(_items("recall"))
    assert len(truth["clean_correct"]["recall"]) == len(truth["clean_correct"]["reasoning"]) == n
    expected = (
        [f"attn-L{l}" for l in range(4)]
        + [f"mlp-L{l}" for l in range(4)]
        + [f"head-L{l}H{h}" for l in range(4) for h in range(4)]
        + ["mlp-all"]
    )
    assert list(truth["targets"]) == expected
    stored = groundtruth.classes(truth)
    for target, row in truth["targets"].items():
        assert set(row) == {"recall", "reasoning", "recall_drop", "reasoning_drop", "recall_correct",
                            "reasoning_correct", "class"}
        assert row["class"] == stored[target]
        assert row["recall_drop"] == pytest.approx(truth["clean"]["recall"] - row["recall"])
        assert row["recall"] == pytest.approx(row["recall_correct"].count("1") / n)


@pytest.mark.slow
def test_saved_model_reloads_with_its_accuracy(built):
    from transformers import AutoModelForCausalLM

    path = built[1]
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager")
    tok = load_tokenizer(path)
    clean = read_info(path)["ground_truth"]["clean"]
    assert train.correct(model, tok, _items("recall")).float().mean().item() == clean["recall"]
    assert train.correct(model, tok, _items("reasoning")).float().mean().item() == clean["reasoning"]


@pytest.mark.slow
def test_ensure_built_reuses_and_rebuild_is_bit_identical(built):
    root, path = built
    before = _sha(path)
    mtime = (path / "organism.json").stat().st_mtime_ns
    assert ensure_built("qwen2", cache_root=root, progress=False) == path
    assert (path / "organism.json").stat().st_mtime_ns == mtime
    assert build("qwen2", cache_root=root, force=True, progress=False) == path
    assert _sha(path) == before
    assert not [p for p in path.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow
def test_interrupted_build_leaves_nothing_trusted(tmp_path, monkeypatch):
    real = train.training_batches

    def interrupted(world, recipe):
        for step, batch in enumerate(real(world, recipe)):
            if step == 3:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(train, "training_batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build("qwen2", cache_root=tmp_path, progress=False)
    target = organism_dir(RECIPE, tmp_path)
    assert not target.exists() and not is_organism_dir(target)
    assert not [p for p in target.parent.iterdir() if ".tmp-" in p.name]


@pytest.mark.slow
def test_llama_twin_builds(tmp_path_factory):
    path = ensure_built("llama", cache_root=tmp_path_factory.mktemp("cache"), progress=False)
    info = read_info(path)
    assert info["arch"] == "llama" and path.name.startswith("llama-")
    assert info["accuracy"]["recall"] >= RECIPE.min_recall and info["accuracy"]["reasoning"] >= RECIPE.min_reasoning
    assert len(info["ground_truth"]["targets"]) == 25
