"""The organism family: world, tasks, prompt set, plan, training data, ablation hooks, and (slow) real
builds whose measured ground truth is their plan."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace

import pytest
import torch
import yaml

from circuitgate import CircuitgateError
from circuitgate.organism import (
    VARIANTS,
    Recipe,
    is_organism_dir,
    load_tokenizer,
    make_world,
    organism_prompt_set,
    read_info,
    recipe_of,
)
from circuitgate.organism import groundtruth, train
from circuitgate.organism.ablate import Component, RowEdit, ablating, components
from circuitgate.organism.builder import organism_dir
from circuitgate.organism.plan import NULL, PLANTED
from circuitgate.organism.tokenizer import build_tokenizer
from circuitgate.organism.world import (
    CONTROL_PARTNER,
    FACT_TEXT,
    MAIN_TEMPLATES,
    N_FILLER,
    PROMPT_SET_PATH,
    REASONING_TEMPLATES,
    RECALL_TEMPLATES,
    prompt_set_yaml,
    probe_items,
    recall_item,
    template_tokens,
)

from organisms import RECIPE, SHAPE, WORLD, pair_items

torch.set_num_threads(1)



@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(WORLD)


def _doc() -> dict:
    return organism_prompt_set(WORLD)


def _controls(task: str) -> list[dict]:
    return [c for c in _doc()["controls"] if c["task"] == task]


def _all_items() -> list[tuple[str, str]]:
    return pair_items("recall") + pair_items("reasoning") + [
        (c[side]["prompt"], c[side]["answer"]) for task in ("recall", "reasoning") for c in _controls(task)
        for side in "ab"
    ]


def _is_symbol(word: str) -> bool:
    return word in WORLD.symbols


# --- world, tokenizer --------------------------------------------------------------------------------


def test_world_is_deterministic_in_its_seed():
    assert make_world(0) == make_world(0)
    assert make_world(0) != make_world(1)


def test_world_words_are_unique_and_names_are_two_words():
    words = WORLD.words()
    assert len(words) == len(set(words))
    assert len(WORLD.countries) == RECIPE.n_countries
    assert len({c.name for c in WORLD.countries}) == len({c.capital for c in WORLD.countries}) == len(WORLD.countries)
    assert all(len(c.name.split()) == 2 for c in WORLD.countries)
    assert WORLD.recall_answers() == [*(c.capital for c in WORLD.countries), *WORLD.continents]


def test_tokenizer_round_trip_and_single_token_answers(tokenizer):
    for prompt, answer in _all_items():
        ids = tokenizer(f"{prompt} {answer}")["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids, skip_special_tokens=True) == f"{prompt} {answer}"
        assert len(tokenizer(answer, add_special_tokens=False)["input_ids"]) == 1


def test_tokenizer_pads_left_and_reloads_with_the_same_ids(tokenizer, tmp_path):
    enc = tokenizer(["the capital of " + WORLD.countries[0].name + " is", "x"], padding=True)
    assert enc["attention_mask"][1][0] == 0 and enc["attention_mask"][1][-1] == 1
    tokenizer.save_pretrained(tmp_path)
    # A qwen2 config beside it is what makes AutoTokenizer swap in Qwen2Tokenizer; ours must not care.
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    loaded = load_tokenizer(tmp_path)
    prompts = [p for p, _ in pair_items("reasoning")[:5]]
    assert loaded(prompts, padding=True)["input_ids"] == tokenizer(prompts, padding=True)["input_ids"]
    assert loaded.get_vocab() == tokenizer.get_vocab() and loaded.padding_side == "left"


# --- the two tasks and the prompt set ------------------------------------------------------------------


def test_committed_prompt_set_matches_generation_and_loads():
    from circuitgate.prompts import load_prompt_set

    assert PROMPT_SET_PATH.read_text() == prompt_set_yaml(WORLD), "regenerate: python -m circuitgate.organism"
    assert yaml.safe_load(PROMPT_SET_PATH.read_text()) == _doc()
    ps = load_prompt_set(PROMPT_SET_PATH)
    assert ps.name == "organism" and len(ps.pairs) == RECIPE.n_countries
    assert ps.control_tasks() == ["recall", "reasoning"]
    assert ps.prompts("recall") == [p for p, _ in pair_items("recall")]


def test_template_lengths_and_partners():
    assert {t: template_tokens(t) for t in RECALL_TEMPLATES} == {"r0": 26, "r1": 25, "r2": 26, "r3": 26, "r4": 25}
    assert {t: template_tokens(t) for t in REASONING_TEMPLATES} == {"s0": 25, "s1": 25, "s2": 26, "s3": 26}
    for length, (recall, reasoning) in MAIN_TEMPLATES.items():
        assert all(template_tokens(t) == length for t in recall + reasoning)
        assert RECALL_TEMPLATES[recall[0]][1] == RECALL_TEMPLATES[recall[1]][1]
    for t, other in CONTROL_PARTNER.items():
        assert other != t and CONTROL_PARTNER[other] == t and template_tokens(t) == template_tokens(other)
        assert (t in RECALL_TEMPLATES) == (other in RECALL_TEMPLATES)
    # every reasoning template orders all four facts; half end with "so a is in"
    assert all(sorted(order) == sorted(FACT_TEXT) for order, _ in REASONING_TEMPLATES.values())


def test_pairs_are_matched_length_matched_and_balanced(tokenizer):
    pairs = _doc()["pairs"]
    assert len({p["id"] for p in pairs}) == len(pairs) and all(re.fullmatch(r"[a-z0-9-]+", p["id"]) for p in pairs)
    combos = Counter((p["recall"]["template"], p["reasoning"]["template"]) for p in pairs)
    assert len(combos) == 8 and len(set(combos.values())) == 1
    lengths = Counter()
    for p in pairs:
        name = p["id"].replace("-", " ")
        assert name in p["recall"]["prompt"] and name in p["reasoning"]["prompt"]  # the same country
        n = len(tokenizer(p["recall"]["prompt"])["input_ids"])
        assert n == len(tokenizer(p["reasoning"]["prompt"])["input_ids"]) == template_tokens(p["recall"]["template"]) + 1
        lengths[n] += 1
    assert lengths == {26: RECIPE.n_countries // 2, 27: RECIPE.n_countries // 2}


def test_recall_prompts_are_filler_then_a_question_with_the_answer_stored_only():
    held = WORLD.heldout_symbol_pairs()
    for country, p in zip(WORLD.countries, _doc()["pairs"]):
        words = p["recall"]["prompt"].split()
        filler = words[:5 * N_FILLER]
        symbols = [w for w in filler if _is_symbol(w)]
        assert len(symbols) == len(set(symbols)) == 2 * N_FILLER
        assert filler == [w for i in range(0, 8, 2) for w in (symbols[i], "is", "in", symbols[i + 1], ".")]
        assert all(frozenset(symbols[i:i + 2]) not in held for i in range(0, 8, 2))
        assert p["recall"]["answer"] not in words and not set(country.name.split()) & set(filler)
        assert recall_item(country, p["recall"]["template"], tuple(symbols)).prompt == p["recall"]["prompt"]


def test_reasoning_prompts_have_no_surface_shortcut():
    """Every symbol but the query's is seen once, and b is one of three objects of "is in": what picks b
    is the country before it, a relation between positions."""
    for probe, p in zip(WORLD.probes, _doc()["pairs"]):
        words, answer = p["reasoning"]["prompt"].split(), p["reasoning"]["answer"]
        assert answer == probe.b
        symbols = Counter(w for w in words if _is_symbol(w))
        assert symbols[probe.a] == 2 and all(n == 1 for s, n in symbols.items() if s != probe.a)
        objects = [words[i + 1] for i in range(len(words) - 1) if words[i] == "in" and _is_symbol(words[i + 1])]
        assert answer in objects and len(objects) == 3
        assert f"{probe.country} is in {probe.b} ." in p["reasoning"]["prompt"]
        assert f"{probe.a} is in {probe.country} ." in p["reasoning"]["prompt"]


def test_controls_mirror_the_pairs(tokenizer):
    """Side a is the pair's prompt; side b the same item (filler, probe, distractors) under the partner
    template of equal length."""
    doc = _doc()
    recall, reasoning = _controls("recall"), _controls("reasoning")
    assert len(recall) == len(reasoning) == len(doc["pairs"]) and len(doc["controls"]) == 2 * len(doc["pairs"])
    for pair, rc, sc in zip(doc["pairs"], recall, reasoning):
        assert (rc["id"], sc["id"]) == (f"{pair['id']}-recall", f"{pair['id']}-reasoning")
        assert rc["a"] == pair["recall"] and sc["a"] == pair["reasoning"]
        for c in (rc, sc):
            a, b = c["a"], c["b"]
            assert b["template"] == CONTROL_PARTNER[a["template"]] and a["answer"] == b["answer"]
            assert len(tokenizer(a["prompt"])["input_ids"]) == len(tokenizer(b["prompt"])["input_ids"])
        assert rc["a"]["prompt"].split()[:20] == rc["b"]["prompt"].split()[:20]  # the same filler
        # the same facts and query, in the partner's order
        assert Counter(sc["a"]["prompt"].split()) == Counter(sc["b"]["prompt"].split())


def test_items_mark_what_the_planted_heads_read():
    for country, (recall, _, reasoning, _) in zip(WORLD.countries, probe_items(WORLD)):
        gathered = [recall.words[i] for i in recall.marks["gather"]]
        relation = [w for w in gathered if w in ("capital", "continent")]
        assert [w for w in gathered if w not in relation] == country.name.split() and len(relation) <= 1
        assert [reasoning.words[i] for i in reasoning.marks["select"]] == [reasoning.answer]
        (q,) = reasoning.marks["query"]
        assert reasoning.words[q + 1:] == ("is", "in") and reasoning.words.count(reasoning.words[q]) == 2


# --- the plan ----------------------------------------------------------------------------------------


PLANTED_CLASSES = {
    "attn-L0": "mixed", "mlp-L0": "mixed", "head-L0H0": "mixed", "head-L0H1": "reasoning",
    "attn-L1": "recall", "mlp-L1": "recall", "head-L1H0": "recall", "neurons-L1-B0": "recall",
    "attn-L2": "reasoning", "mlp-L2": "reasoning", "head-L2H1": "reasoning", "neurons-L2-B0": "reasoning",
    "attn-L3": "none", "mlp-L3": "reasoning", "neurons-L3-B0": "reasoning",
}


def test_planted_plan_classes():
    classes = PLANTED.classes(**SHAPE)
    assert {t: c for t, c in classes.items() if c != "none" or t in PLANTED_CLASSES} == PLANTED_CLASSES
    # pruned heads and blocks measure nothing
    assert classes["head-L3H2"] == classes["neurons-L1-B1"] == classes["head-L0H3"] == "none"
    assert len(classes) == 4 * 2 + 16 + 3 * 2
    assert PLANTED.activation["H2"] == {"L01H00": "recall", "L02H01": "reasoning"}


def test_null_plan_has_the_same_units_all_shared():
    assert [u.id for u in NULL.units] == [u.id for u in PLANTED.units]
    assert {u.role for u in NULL.units} == {"shared"} and not NULL.activation and not NULL.only("recall")
    classes = NULL.classes(**SHAPE)
    assert {c for t, c in classes.items() if t in PLANTED_CLASSES} == {"mixed"} | (
        {"none"} if classes["attn-L3"] == "none" else set())


def test_reasoning_needs_two_attention_layers_by_plan():
    layers = {u.layer for u in PLANTED.needed("reasoning") if u.id.startswith("head-")}
    assert len(layers) >= 2


# --- recipe and cache --------------------------------------------------------------------------------


def test_recipe_hash_and_family():
    assert Recipe().hash() == Recipe().hash()
    assert len({r.hash() for r in VARIANTS.values()}) == 3
    assert recipe_of("organism-null").plan == "null" and recipe_of("organism-llama").arch == "llama"
    with pytest.raises(CircuitgateError, match="unknown organism 'x'; the family is organism, organism-llama"):
        recipe_of("x")
    with pytest.raises(CircuitgateError):
        Recipe(arch="gpt2")
    with pytest.raises(CircuitgateError):
        Recipe(plan="half")


def test_cache_dir_names_arch_and_plan(monkeypatch, tmp_path):
    monkeypatch.setenv("CIRCUITGATE_CACHE", str(tmp_path))
    assert organism_dir(RECIPE) == tmp_path / "organism" / f"qwen2-planted-{RECIPE.hash()[:12]}"


def test_incomplete_dirs_are_not_trusted(tmp_path):
    assert not is_organism_dir(tmp_path)
    (tmp_path / "organism.json").write_text('{"schema": 3, "arch": "qwen2"')  # truncated write
    assert not is_organism_dir(tmp_path)
    (tmp_path / "organism.json").write_text('{"schema": 3, "arch": "qwen2"}')  # no ground truth
    assert not is_organism_dir(tmp_path)
    with pytest.raises(CircuitgateError):
        read_info(tmp_path)


# --- training data -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batches():
    return list(train.training_batches(WORLD, replace(RECIPE, steps=40), PLANTED))


def test_reasoning_probes_and_held_out_pairs_stay_out_of_training(batches):
    held_pairs, held_answers = WORLD.heldout_symbol_pairs(), WORLD.heldout_country_answers()
    probe_prompts = {p for p, _ in pair_items("reasoning")}
    n = 0
    for row in (r for b in batches for r in b):
        words = row.item.words
        facts = [words[i:i + 5] for i in range(len(words) - 4) if words[i + 1:i + 3] == ("is", "in")
                 and _is_symbol(words[i]) and _is_symbol(words[i + 3])]
        assert all(frozenset((f[0], f[3])) not in held_pairs for f in facts)  # no fact states a probe pair
        if row.task == "reasoning":
            n += 1
            assert row.item.prompt not in probe_prompts
            country = " ".join(words[words.index(row.item.answer) - 4:words.index(row.item.answer) - 2])
            assert (country, row.item.answer) not in held_answers
    assert n == 40 * (RECIPE.rows_reasoning * 3 // 2)  # clean and invariance rows: no necessity rows yet


def test_training_asks_capitals_and_continents_alike_with_fresh_filler(batches):
    recall = [r.item for b in batches for r in b if r.task == "recall"]
    facts = Counter("capital" if any(c.capital == it.answer for c in WORLD.countries) else "continent" for it in recall)
    assert abs(facts["capital"] - facts["continent"]) < 0.1 * len(recall)
    questions = Counter(" ".join(it.words[20:]) for it in recall)
    fillers = {it.words[:20] for it in recall}
    assert len(fillers) > 0.95 * len(recall)  # drawn afresh, not a memorisable context
    assert len(questions) > RECIPE.n_countries * 2


def test_every_step_has_every_condition():
    """Clean and invariance rows from the start; necessity rows once their loss counts: then every
    needed unit under every ablation kind, each step."""
    steps = list(train.training_batches(WORLD, replace(RECIPE, steps=RECIPE.shape_from + 2), PLANTED))
    for step, rows in enumerate(steps):
        conditions = Counter((r.condition, r.task) for r in rows)
        assert conditions[("clean", "recall")] == RECIPE.rows_recall
        assert conditions[("clean", "reasoning")] == RECIPE.rows_reasoning
        assert conditions[("invariance", "recall")] == RECIPE.rows_recall // 2
        necessity = Counter((r.task, r.ablate) for r in rows if r.condition == "necessity")
        if step < RECIPE.shape_from:
            assert not necessity
        else:
            assert necessity == {(t, ((u.id, k),)): 1 for t in ("recall", "reasoning") for u in PLANTED.needed(t)
                                 for k in ("zero", "mean", "resample")}
        for r in rows:
            if r.condition == "invariance":  # only the other task's own units
                other = "reasoning" if r.task == "recall" else "recall"
                assert {uid for uid, _ in r.ablate} <= {u.id for u in PLANTED.only(other)}
    # the null has no unit of one skill only: no invariance rows
    null = next(iter(train.training_batches(WORLD, replace(RECIPE, plan="null", steps=1), NULL)))
    assert not [r for r in null if r.condition == "invariance"]


# --- model, pruning, ablation hooks -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def pruned(tokenizer):
    model = train.make_model(RECIPE, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id,
                             tokenizer.eos_token_id)
    train.prune(model, PLANTED, RECIPE)
    return model.eval()


def test_pruned_heads_attend_uniformly_write_nothing_and_stay_pruned(pruned, tokenizer):
    prompts = [p for p, _ in pair_items("reasoning")[:3]]
    with torch.no_grad():
        out = pruned(**train.encode(tokenizer, prompts), output_attentions=True)
    a = out.attentions[3][:, 2, -1]  # head L3H2: pruned
    real = train.encode(tokenizer, prompts)["attention_mask"].bool()
    assert torch.allclose(a[real], (1.0 / real.sum(-1, keepdim=True)).expand_as(a)[real])
    o = pruned.model.layers[3].self_attn.o_proj.weight
    assert not o.any() and not pruned.model.layers[2].mlp.down_proj.weight[:, 128:].any()
    # a gradient step leaves them zero
    loss = pruned(**train.encode(tokenizer, prompts)).logits.sum()
    loss.backward()
    assert not o.grad.any() and not pruned.model.layers[1].mlp.gate_proj.weight.grad[128:].any()
    pruned.zero_grad()


@pytest.fixture(scope="module")
def random_model(tokenizer):
    model = train.make_model(replace(RECIPE, initializer_range=0.3), len(tokenizer), tokenizer.pad_token_id,
                             tokenizer.bos_token_id, tokenizer.eos_token_id)
    return model.eval()


def test_component_ids():
    ids = [c.id for c in components(4, 4, 16, 128, [1, 2, 3], 256)]
    assert ids[:6] == ["attn-L0", "mlp-L0", "head-L0H0", "head-L0H1", "head-L0H2", "head-L0H3"]
    assert "neurons-L0-B0" not in ids and ids[-1] == "neurons-L3-B1" and len(ids) == 30


@torch.no_grad()
def test_zero_hooks_match_zeroed_weights(random_model, tokenizer):
    prompts = [p for p, _ in pair_items("reasoning")[:4]]
    enc = train.encode(tokenizer, prompts)
    real = enc["attention_mask"].bool()
    rows = torch.ones(len(prompts), dtype=torch.bool)
    layer = random_model.model.layers[1]
    cases = {Component("head-L1H2", "head", 1, 32, 48): (layer.self_attn.o_proj, slice(32, 48)),
             Component("attn-L1", "attn", 1): (layer.self_attn.o_proj, slice(None)),
             Component("neurons-L1-B1", "neurons", 1, 128, 256): (layer.mlp.down_proj, slice(128, 256)),
             Component("mlp-L1", "mlp", 1): (layer.mlp.down_proj, slice(None))}
    clean = random_model(**enc).logits[:, -1]
    for comp, (module, cols) in cases.items():
        with ablating(random_model, [RowEdit(comp, rows, "zero")], real):
            hooked = random_model(**enc).logits[:, -1]
        saved = module.weight.clone()
        module.weight[:, cols] = 0
        zeroed = random_model(**enc).logits[:, -1]
        module.weight.copy_(saved)
        assert torch.allclose(hooked, zeroed, atol=1e-6), comp.id
        assert not torch.allclose(hooked, clean), comp.id
    assert torch.equal(random_model(**enc).logits[:, -1], clean)  # the hooks came off


@torch.no_grad()
def test_mean_and_resample_hooks_and_per_row_edits(random_model, tokenizer):
    prompts = [p for p, _ in pair_items("recall")[:4]]
    enc = train.encode(tokenizer, prompts)
    real = enc["attention_mask"].bool()
    comp = Component("neurons-L2-B0", "neurons", 2, 0, 128)
    seen = {}
    hook = random_model.model.layers[2].mlp.down_proj.register_forward_pre_hook(
        lambda m, a: seen.__setitem__("x", a[0].clone()))
    random_model(**enc)
    hook.remove()
    x = seen["x"][..., :128]
    mean = (x * real[..., None]).sum((0, 1)) / real.sum()
    only = torch.tensor([True, False, False, True])
    donor = torch.tensor([2, 0, 1, 1])
    for kind in ("mean", "resample"):
        got = {}
        with ablating(random_model, [RowEdit(comp, only, kind)], real, donor=donor):
            h = random_model.model.layers[2].mlp.down_proj.register_forward_pre_hook(
                lambda m, a: got.__setitem__("x", a[0][..., :128].clone()), prepend=False)
            random_model(**enc)
            h.remove()
        assert torch.equal(got["x"][~only], x[~only])  # rows without the edit are untouched
        if kind == "mean":
            assert torch.allclose(got["x"][only], mean.expand_as(got["x"][only]))
        else:
            want = torch.where(real[donor][..., None], x[donor], mean)[only]
            assert torch.allclose(got["x"][only], want)


def _truth(clean: str, rows: dict[str, tuple[str, str]]) -> dict:
    """A ground-truth section with the given clean and per-target bits (recall = reasoning clean)."""
    table = {t: {"recall_correct": r, "reasoning_correct": s} for t, (r, s) in rows.items()}
    return {"clean_correct": {"recall": clean, "reasoning": clean}, "targets": list(rows),
            "ablations": {"zero": table}}


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
    assert ids == truth["targets"] and recall.shape == reasoning.shape == (20, 4)
    assert recall[:, 0].mean() == 0.5 and reasoning[:, 0].sum() == 0
    assert groundtruth.bits(torch.tensor([True, False, True])) == "101"
