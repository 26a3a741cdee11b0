"""Training the organism: model construction, the deterministic data stream, the loop, and accuracy.

Determinism: the weights come from ``torch.manual_seed(recipe.seed)`` and the data order from a
``random.Random`` seeded from the recipe, on one CPU thread, so a rebuild is bit-identical.
"""

from __future__ import annotations

import math
import random
import time
from typing import Iterator, Sequence

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from circuitgate.organism.recipe import Recipe
from circuitgate.organism.world import (
    RECALL_TEMPLATES,
    REASONING_TEMPLATES,
    SHORT_OF_LONG,
    World,
    draw_filler,
    reasoning_item,
    recall_item,
)

Item = tuple[str, str]  # (prompt, single-word answer)

_ARCH = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}


def make_model(recipe: Recipe, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    config_cls, model_cls = _ARCH[recipe.arch]
    config = config_cls(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden,
        intermediate_size=recipe.ffn,
        num_hidden_layers=recipe.n_layers,
        num_attention_heads=recipe.n_heads,
        num_key_value_heads=recipe.n_heads,
        max_position_embeddings=64,
        initializer_range=recipe.initializer_range,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        use_cache=False,
        # Attention weights are read later (H2); only eager attention returns them.
        attn_implementation="eager",
    )
    torch.manual_seed(recipe.seed)
    return model_cls(config)


def recall_keys(world: World) -> list[tuple[int, str]]:
    """Every (country index, recall template): the short questions and their long, filler-led forms."""
    return [(i, t) for i in range(len(world.countries)) for t in RECALL_TEMPLATES]


def training_batches(world: World, recipe: Recipe) -> Iterator[list[Item]]:
    """One list of items per step: a shuffled pass over all recall questions, plus fresh reasoning items.

    Recall covers every template, short (r0-r3) and long (r4-r7); a long one gets fresh random filler
    symbols each time it is drawn, so the filler cannot be memorised and carries no answer. Reasoning
    items never use a probe's symbol pair or a probe's (country, answer) combination, and filler facts
    never state a probe's symbol pair, so the held-out probes can only be answered by reading the context.
    """
    rng = random.Random(recipe.seed + 1)
    keys = recall_keys(world)
    held_pairs, held_answers = world.heldout_symbol_pairs(), world.heldout_country_answers()
    names, templates = [c.name for c in world.countries], list(REASONING_TEMPLATES)
    order: list[tuple[int, str]] = []
    for _ in range(recipe.steps):
        batch = []
        while len(batch) < recipe.batch_recall:
            if not order:
                order = rng.sample(keys, len(keys))
            country, template = order.pop()
            filler = draw_filler(rng, world) if template in SHORT_OF_LONG else None
            batch.append(recall_item(world.countries[country], template, filler))
        while len(batch) < recipe.batch_recall + recipe.batch_reasoning:
            a, b = rng.sample(world.symbols, 2)
            country = rng.choice(names)
            if frozenset((a, b)) in held_pairs or (country, b) in held_answers:
                continue
            batch.append(reasoning_item(a, country, b, rng.choice(templates)))
        yield batch


def encode(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(prompts), padding=True, return_tensors="pt")
    mask = enc["attention_mask"]
    # Positions count real tokens only, as nnsight supplies them for left-padded batches.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": enc["input_ids"], "attention_mask": mask, "position_ids": positions}


def answer_ids(tokenizer: PreTrainedTokenizerFast, answers: Sequence[str]) -> torch.Tensor:
    return torch.tensor(tokenizer.convert_tokens_to_ids(list(answers)))


def last_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> torch.Tensor:
    return model(**encode(tokenizer, prompts), logits_to_keep=1).logits[:, -1]


@torch.no_grad()
def correct(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, items: Sequence[Item], batch_size: int = 512
) -> torch.Tensor:
    """Per item: is the argmax of the next-token logits at the last prompt token the answer's token?"""
    model.eval()
    out = []
    for i in range(0, len(items), batch_size):
        prompts, answers = zip(*items[i : i + batch_size])
        out.append(last_logits(model, tokenizer, prompts).argmax(-1) == answer_ids(tokenizer, answers))
    return torch.cat(out)


def _lr_factor(recipe: Recipe, step: int) -> float:
    # Linear warm-up, then cosine decay to a tenth: settles the final weights without a long tail.
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    t = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


def train_model(
    recipe: Recipe, world: World, tokenizer: PreTrainedTokenizerFast, progress: bool = True
) -> tuple[PreTrainedModel, float]:
    """The trained model and the training time in seconds. The loss is on the answer token only."""
    torch.set_num_threads(1)
    model = make_model(recipe, tokenizer)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(recipe, s))
    start = time.perf_counter()
    bar = tqdm(training_batches(world, recipe), total=recipe.steps, desc=f"organism {recipe.arch}", disable=not progress)
    for step, batch in enumerate(bar):
        prompts, answers = zip(*batch)
        loss = torch.nn.functional.cross_entropy(
            last_logits(model, tokenizer, prompts), answer_ids(tokenizer, answers)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return model, time.perf_counter() - start
