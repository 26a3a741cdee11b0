"""The model organism: world, tokenizer, prompt set, ground-truth hooks, and (slow) real builds."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter

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
from circuitgate.organism.world import (
    CONTROL_PARTNER,
    FILLER_FIELDS,
    LONG_OF_SHORT,
    MAIN_TEMPLATES,
    PROMPT_SET_PATH,
    REASONING_TEMPLATES,
    RECALL_TEMPLATES,
    SHORT_OF_LONG,
    SHORT_RECALL_TEMPLATES,
    prompt_set_yaml,
    recall_item,
    template_tokens,
    world_for,
)

torch.set_num_threads(1)

RECIPE = Recipe()
WORLD = world_for(RECIPE)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(WORLD)


def _items(kind: str) -> list[tuple[str, str]]:
    return [(p[kind]["prompt"], p[kind]["answer"]) for p in organism_prompt_set(WORLD)["pairs"]]


def _controls(task: str) -> list[dict]:
    return [c for c in organism_prompt_set(WORLD)["controls"] if c["task"] == task]


def _control_items(task: str, side: str) -> list[tuple[str, str]]:
    return [(c[side]["prompt"], c[side]["answer"]) for c in _controls(task)]


def _all_items() -> list[tuple[str, str]]:
    return _items("recall") + _items("reasoning") + [
        item for task in ("recall", "reasoning") for side in "ab" for item in _control_items(task, side)
    ]


def _is_symbol(word: str) -> bool:
    return word in WORLD.symbols


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
    for prompt, answer in _all_items():
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
    assert doc["schema"] == 2 and doc["name"] == "organism"
    pairs = doc["pairs"]
    assert len(pairs) == RECIPE.n_countries
    ids = [p["id"] for p in pairs]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)
    # The main pairs ask recall only in long, length-matched templates; at least 3 per task, each
    # (recall, reasoning) template combination equally often.
    recall_templates = {p["recall"]["template"] for p in pairs}
    reasoning_templates = {p["reasoning"]["template"] for p in pairs}
    assert recall_templates == {"r6", "r7", "r8", "r9"} and recall_templates <= set(SHORT_OF_LONG)
    assert reasoning_templates == set(REASONING_TEMPLATES) and len(reasoning_templates) >= 3
    combos = Counter((p["recall"]["template"], p["reasoning"]["template"]) for p in pairs)
    assert len(combos) == 8 and len(set(combos.values())) == 1
    for p in pairs:
        # Matched: both sides are about the same country.
        name = p["id"].replace("-", " ")
        assert name in p["recall"]["prompt"] and name in p["reasoning"]["prompt"]


def test_template_lengths():
    assert {t: template_tokens(t) for t in RECALL_TEMPLATES} == {
        "r0": 6, "r1": 5, "r2": 6, "r3": 6, "r4": 5, "r5": 16, "r6": 15, "r7": 16, "r8": 16, "r9": 15,
    }
    assert {t: template_tokens(t) for t in REASONING_TEMPLATES} == {"s0": 15, "s1": 15, "s2": 16, "s3": 16}
    # Each long recall template is its short question after the filler: the same fact, 10 tokens more.
    assert set(LONG_OF_SHORT) == set(SHORT_RECALL_TEMPLATES) and len(SHORT_OF_LONG) == len(SHORT_RECALL_TEMPLATES)
    for long, short in SHORT_OF_LONG.items():
        assert RECALL_TEMPLATES[long][0].endswith(" " + RECALL_TEMPLATES[short][0])
        assert RECALL_TEMPLATES[long][1] == RECALL_TEMPLATES[short][1]
        assert template_tokens(long) == template_tokens(short) + 10
        assert LONG_OF_SHORT[short] == long
    # Main templates: grouped by their token length; a control partner is the same task, length and fact.
    for length, (recall, reasoning) in MAIN_TEMPLATES.items():
        assert all(template_tokens(t) == length for t in recall + reasoning)
        assert RECALL_TEMPLATES[recall[0]][1] == RECALL_TEMPLATES[recall[1]][1]
    for t, other in CONTROL_PARTNER.items():
        assert other != t and CONTROL_PARTNER[other] == t and template_tokens(t) == template_tokens(other)
        assert (t in RECALL_TEMPLATES) == (other in RECALL_TEMPLATES)
        if t in RECALL_TEMPLATES:
            assert RECALL_TEMPLATES[t][1] == RECALL_TEMPLATES[other][1]


def test_main_pairs_are_length_matched_in_tokens(tokenizer):
    lengths = Counter()
    for p in organism_prompt_set(WORLD)["pairs"]:
        n_recall = len(tokenizer(p["recall"]["prompt"])["input_ids"])
        n_reasoning = len(tokenizer(p["reasoning"]["prompt"])["input_ids"])
        assert n_recall == n_reasoning, p["id"]
        assert n_recall == template_tokens(p["recall"]["template"]) + 1  # + <bos>
        lengths[n_recall] += 1
    assert lengths == {16: RECIPE.n_countries // 2, 17: RECIPE.n_countries // 2}


def _filler(words: list[str]) -> list[str]:
    return [w for w in words if _is_symbol(w)]


def _check_recall_prompt(side: dict, country) -> None:
    prompt, answer, template = side["prompt"], side["answer"], side["template"]
    words = prompt.split()
    assert answer not in words
    filler = _filler(words)
    assert (prompt, answer) == recall_item(country, template, tuple(filler) or None)
    if template in SHORT_OF_LONG:
        # Four distinct random symbols, never a country word, a capital or a continent.
        assert len(filler) == len(set(filler)) == len(FILLER_FIELDS)
        assert words[:10] == [filler[0], "is", "in", filler[1], ".", filler[2], "is", "in", filler[3], "."]
        assert not set(country.name.split()) & set(words[:10])
        assert frozenset(filler[:2]) not in WORLD.heldout_symbol_pairs()
        assert frozenset(filler[2:]) not in WORLD.heldout_symbol_pairs()
    else:
        assert not filler


def test_recall_prompts_never_contain_their_answer_and_filler_is_symbols():
    doc = organism_prompt_set(WORLD)
    for country, p in zip(WORLD.countries, doc["pairs"]):
        _check_recall_prompt(p["recall"], country)
    fillers = {tuple(_filler(p["recall"]["prompt"].split())) for p in doc["pairs"]}
    assert len(fillers) > len(doc["pairs"]) // 2  # drawn at random, not one fixed filler
    for country, c in zip(WORLD.countries, _controls("recall")):
        _check_recall_prompt(c["a"], country)
        _check_recall_prompt(c["b"], country)


def test_controls_mirror_the_pairs_for_both_tasks(tokenizer):
    """Side a is the pair's prompt; side b the same item under the other template of equal length."""
    doc = organism_prompt_set(WORLD)
    controls = doc["controls"]
    ids = [c["id"] for c in controls]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[a-z0-9-]+", i) for i in ids)
    assert all(set(c) == {"id", "task", "a", "b"} for c in controls)
    recall, reasoning = _controls("recall"), _controls("reasoning")
    assert len(recall) == len(reasoning) == len(WORLD.countries) and len(controls) == 2 * len(WORLD.countries)
    for probe, pair, rc, sc in zip(WORLD.probes, doc["pairs"], recall, reasoning):
        assert (rc["id"], sc["id"]) == (f"{pair['id']}-recall", f"{pair['id']}-reasoning")
        assert rc["a"] == pair["recall"] and sc["a"] == pair["reasoning"]
        for c in (rc, sc):
            a, b = c["a"], c["b"]
            assert b["template"] == CONTROL_PARTNER[a["template"]] != a["template"] and a["prompt"] != b["prompt"]
            assert a["answer"] == b["answer"]
            assert len(tokenizer(a["prompt"])["input_ids"]) == len(tokenizer(b["prompt"])["input_ids"])
        # Recall: the same filler, only the question's wording changes.
        assert _filler(rc["a"]["prompt"].split()) == _filler(rc["b"]["prompt"].split())
        # Reasoning: the country's held-out probe, as in the main pair, in the partner template.
        t = sc["b"]["template"]
        assert sc["b"]["prompt"] == REASONING_TEMPLATES[t].format(a=probe.a, c=probe.country, b=probe.b)
        assert sc["b"]["answer"] == probe.b
    assert {c["b"]["template"] for c in recall} == {"r6", "r7", "r8", "r9"}
    assert {c["b"]["template"] for c in reasoning} == set(REASONING_TEMPLATES)


def test_committed_prompt_set_loads_as_schema_2():
    from circuitgate.prompts import load_prompt_set

    ps = load_prompt_set(PROMPT_SET_PATH)
    assert ps.name == "organism" and len(ps.pairs) == RECIPE.n_countries
    assert ps.control_tasks() == ["recall", "reasoning"]
    assert ps.control_prompts("recall", "a") == [p for p, _ in _control_items("recall", "a")]
    assert ps.control_answers("reasoning", "b") == [a for _, a in _control_items("reasoning", "b")]
    assert ps.prompts("recall") == [p for p, _ in _items("recall")]


def test_answers_are_single_tokens_and_prompts_in_vocab(tokenizer):
    for prompt, answer in _all_items():
        assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) == 1
        assert tokenizer.unk_token_id not in tokenizer(f"{prompt} {answer}")["input_ids"]


def _training_items() -> list[tuple[str, str]]:
    return [item for batch in train.training_batches(WORLD, RECIPE) for item in batch]


def test_reasoning_probes_are_held_out_of_training():
    names = [c.name for c in WORLD.countries]
    held_pairs = {frozenset((p.a, p.b)) for p in WORLD.probes}
    held_answers = {(p.country, p.b) for p in WORLD.probes}
    probe_prompts = {p for p, _ in _items("reasoning")} | {
        p for side in "ab" for p, _ in _control_items("reasoning", side)
    }
    n_reasoning = n_long_recall = 0
    for prompt, answer in _training_items():
        symbols = [w for w in prompt.split() if _is_symbol(w)]
        assert prompt not in probe_prompts
        if not _is_symbol(answer):  # recall; a long template's filler facts never state a held-out pair
            if symbols:
                n_long_recall += 1
                assert frozenset(symbols[:2]) not in held_pairs and frozenset(symbols[2:]) not in held_pairs
            continue
        n_reasoning += 1
        (country,) = [n for n in names if f" {n} " in f" {prompt} "]
        assert frozenset(symbols) not in held_pairs
        assert (country, answer) not in held_answers
    assert n_reasoning == RECIPE.steps * RECIPE.batch_reasoning
    assert n_long_recall > 0


def test_training_covers_every_recall_template_with_fresh_filler():
    """Long recall templates are trained, on every country, each time with new random filler symbols."""
    by_question: dict[tuple[str, str], set[tuple[str, ...]]] = {}
    for prompt, answer in _training_items():
        if _is_symbol(answer):
            continue
        words = prompt.split()
        filler = tuple(w for w in words if _is_symbol(w))
        question = " ".join(words[10:] if filler else words)
        assert answer not in words
        by_question.setdefault((question, "long" if filler else "short"), set()).add(filler)
    expected = {
        (recall_item(c, t)[0], "short") for c in WORLD.countries for t in SHORT_RECALL_TEMPLATES
    } | {(recall_item(c, t)[0], "long") for c in WORLD.countries for t in SHORT_RECALL_TEMPLATES}
    assert set(by_question) == expected
    for (question, kind), fillers in by_question.items():
        if kind == "long":
            assert len(fillers) > 1, question  # fresh filler, not one memorisable context


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
    floors = {"recall": RECIPE.min_recall, "reasoning": RECIPE.min_reasoning}
    assert set(acc["controls"]) == set(floors)
    for task, sides in acc["controls"].items():
        assert set(sides) == {"a", "b"} and min(sides.values()) >= floors[task], task
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
    controls = read_info(path)["accuracy"]["controls"]
    assert train.correct(model, tok, _control_items("recall", "a")).float().mean().item() == controls["recall"]["a"]


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
