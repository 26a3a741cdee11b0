"""Training an organism to its plan: model construction, the data stream, the losses, and accuracy.

Every training condition sits in one batch, one forward and one backward per step, with a per-row
ablation (``circuitgate.organism.ablate``):
- **clean** rows of both tasks: the answer (cross-entropy), the planted attention patterns
  (``plan.Prev``/``Last``/``Uniform``, KL to the pattern), and the planted activation differences;
- **invariance** rows: a task stays correct with random subsets of the *other* task's own units
  ablated (zero, mean or resample), so those units are not needed by it;
- **necessity** rows: one unit the task needs, ablated on its own (zero, mean or resample), must push the task
  towards a uniform choice among its *wrong* answers (towards uniform over all answers leaves the
  argmax intact while costing nats; ablated one at a time, or a set becomes redundant within itself;
  under mean ablation too, or a unit becomes a constant bias that zero-ablation breaks and
  mean-ablation does not; and resampled from another prompt of the task, or a unit needed only as a
  bias carries none of the prompt's content (the interchange intervention of SIIT): docs/organism.md).
Pruned heads and neurons (everything outside the plan) start at zero and get no gradient.

Determinism: the weights come from ``torch.manual_seed(recipe.seed)`` and the data from a
``random.Random`` seeded from the recipe, on one CPU thread, so a rebuild is bit-identical.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from circuitgate.progress import progress_bar
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

from circuitgate.ids import parse_component
from circuitgate.models.adapters import adapter_for
from circuitgate.organism.ablate import Component, RowEdit, ablating, recording
from circuitgate.organism.plan import PLANS, Block, Head, Last, Plan, Prev, Uniform
from circuitgate.organism.recipe import Recipe
from circuitgate.organism.world import (
    FACTS,
    N_FILLER,
    RECALL_TEMPLATES,
    RELATION_WORDS,
    Item,
    World,
    draw_symbols,
    reasoning_item,
    recall_item,
)
from circuitgate.vocabulary import ABLATIONS, OTHER_SKILL, SKILLS

_ARCH = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
SELF_SHARE = 0.2  # of a taught pattern on the position itself: attention there is what H2's "focus" reads
BLOCK_MIN_ACT = 0.25  # a planted block's neurons on their own task: at least this active at the last token
H1_MARGIN = 2.0  # planted layers' residual norm and mean: the tasks this many pooled sds apart
# The last row of a positional head counts this many times more: with its KL averaged like any other
# row, layer 0 still moved a third of its last row onto the recall question's country, a channel
# around the planted recall head (measured on the Llama twin).
LAST_ROW_WEIGHT = 5.0
NORM_CAP = 20.0  # residual norms above this are penalised (planted units otherwise grow to hundreds)


def make_model(recipe: Recipe, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> PreTrainedModel:
    config_cls, model_cls = _ARCH[recipe.arch]
    config = config_cls(
        vocab_size=vocab_size,
        hidden_size=recipe.hidden,
        intermediate_size=recipe.ffn,
        num_hidden_layers=recipe.n_layers,
        num_attention_heads=recipe.n_heads,
        num_key_value_heads=recipe.n_heads,
        max_position_embeddings=64,
        initializer_range=recipe.initializer_range,
        tie_word_embeddings=True,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        use_cache=False,
        # Attention weights are read later (H2) and taught here; only eager attention returns them.
        attn_implementation="eager",
    )
    torch.manual_seed(recipe.seed)
    return model_cls(config)


def prune(model: PreTrainedModel, plan: Plan, recipe: Recipe) -> None:
    """Zero every head and neuron outside the plan and keep them zero (their gradients are masked).

    A pruned head's query, key and value are zero, so it attends uniformly and writes nothing; a pruned
    neuron's gate, up and down weights are zero, so it is silent and writes nothing."""
    ad = adapter_for(model.config.model_type)
    hd = recipe.hidden // recipe.n_heads
    live_heads = plan.live_heads()
    live_neurons = plan.live_neurons(recipe.block_size, recipe.ffn)
    with torch.no_grad():
        for layer in range(recipe.n_layers):
            attn = ad.attention_module(model, layer)
            heads = torch.zeros(recipe.n_heads * hd)
            for h in range(recipe.n_heads):
                if (layer, h) in live_heads:
                    heads[h * hd:(h + 1) * hd] = 1
            neurons = torch.zeros(recipe.ffn)
            for lo, hi in live_neurons.get(layer, []):
                neurons[lo:hi] = 1
            mlp = ad.mlp_module(model, layer)
            masks = [(attn.q_proj.weight, heads[:, None]), (attn.k_proj.weight, heads[:, None]),
                     (attn.v_proj.weight, heads[:, None]), (attn.o_proj.weight, heads[None, :]),
                     (mlp.gate_proj.weight, neurons[:, None]), (mlp.up_proj.weight, neurons[:, None]),
                     (mlp.down_proj.weight, neurons[None, :])]
            masks += [(lin.bias, heads) for lin in (attn.q_proj, attn.k_proj, attn.v_proj) if lin.bias is not None]
            for param, mask in masks:
                mask = mask.expand_as(param).clone()
                param.mul_(mask)
                param.register_hook(lambda grad, mask=mask: grad * mask)


# -- data -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    item: Item
    task: str  # recall | reasoning
    condition: str  # clean | invariance | necessity
    ablate: tuple[tuple[str, str], ...] = ()  # (unit id, zero | mean | resample)


def random_recall(rng: random.Random, world: World) -> Item:
    """A recall question; capitals and continents asked equally often (three templates ask for a capital,
    two for a continent: drawn uniformly, the continents were learned last)."""
    country = rng.choice(world.countries)
    fact = rng.choice(RELATION_WORDS)
    template = rng.choice([t for t, (_, f) in RECALL_TEMPLATES.items() if f == fact])
    return recall_item(country, template, tuple(draw_symbols(rng, world, 2 * N_FILLER)))


def random_reasoning(rng: random.Random, world: World) -> Item:
    """A chain that is no probe: its (a, b) pair and its (country, b) combination are held out."""
    held_pairs, held_answers = world.heldout_symbol_pairs(), world.heldout_country_answers()
    while True:
        a, b = rng.sample(world.symbols, 2)
        country = rng.choice(world.countries).name
        if frozenset((a, b)) not in held_pairs and (country, b) not in held_answers:
            break
    distractors = tuple(draw_symbols(rng, world, 4, exclude=(a, b)))
    order = tuple(rng.sample(FACTS, len(FACTS)))
    return reasoning_item(a, country, b, distractors, order, rng.random() < 0.5)


def training_batches(world: World, recipe: Recipe, plan: Plan) -> Iterator[list[Row]]:
    """One list of rows per step: clean, invariance and necessity rows of both tasks."""
    rng = random.Random(f"organism-training-{recipe.seed}")
    make = {"recall": random_recall, "reasoning": random_reasoning}
    n = {"recall": recipe.rows_recall, "reasoning": recipe.rows_reasoning}
    necessity = {task: [(u.id, kind) for u in plan.needed(task) for kind in ABLATIONS] for task in n}
    for step in range(recipe.steps):
        rows = [Row(make[t](rng, world), t, "clean") for t in SKILLS for _ in range(n[t])]
        for task in SKILLS:
            foreign = plan.only(OTHER_SKILL[task])
            # (the null has no unit of one skill only: nothing to be invariant to, no rows)
            for _ in range(n[task] // 2 if foreign else 0):
                chosen = tuple((u.id, rng.choice(ABLATIONS)) for u in foreign if rng.random() < 0.5)
                rows.append(Row(make[task](rng, world), task, "invariance", chosen))
        # Every needed unit under every ablation, each step: drawn at random, the one a path could
        # bypass most easily came up too rarely to stay needed (measured: a middle block of the
        # reasoning path ended unneeded on one of two architectures; so did it, and a reasoning head
        # hurt recall, with half of them each step and the other half the next).
        # (none before the necessity loss counts: they would cost a forward and a backward for nothing)
        for task in SKILLS if step >= recipe.shape_from else ():
            rows += [Row(make[task](rng, world), task, "necessity", (pair,)) for pair in necessity[task]]
        yield rows


# -- tensors --------------------------------------------------------------------------------------
@dataclass
class Batch:
    ids: torch.Tensor  # [B, T], left-padded, <bos> first
    mask: torch.Tensor  # [B, T]
    positions: torch.Tensor  # [B, T]
    offset: torch.Tensor  # [B] index of <bos> in each row
    answers: torch.Tensor  # [B]

    @property
    def real(self) -> torch.Tensor:
        return self.mask.bool()


def encode_items(items: Sequence[Item], vocab: dict[str, int], bos: int, pad: int) -> Batch:
    rows = [[bos] + [vocab[w] for w in it.words] for it in items]
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    # Positions count real tokens only, as nnsight supplies them for left-padded batches.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    offset = width - torch.tensor([len(r) for r in rows])
    answers = torch.tensor([vocab[it.answer] for it in items])
    return Batch(ids, mask, positions, offset, answers)


def forward(model: PreTrainedModel, batch: Batch, **kwargs):
    return model(input_ids=batch.ids, attention_mask=batch.mask, position_ids=batch.positions, **kwargs)


# -- attention targets ----------------------------------------------------------------------------
def prev_targets(starts: Sequence[int], width: int,
                 offsets_per_row: Sequence[tuple[int, ...]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T, T] target rows for a Prev pattern (row b's <bos> at ``starts[b]``, its own offsets) and the
    [B, T] positions they apply to (those whose every source is a real position)."""
    n = len(starts)
    idx = torch.arange(width)
    start = torch.as_tensor(starts)[:, None]  # [B, 1]
    deepest = torch.tensor([max(o) for o in offsets_per_row])[:, None]
    valid = idx[None, :] - deepest >= start  # [B, T]
    target = torch.zeros(n, width, width)
    target[:, idx, idx] = SELF_SHARE
    for k in range(max(len(o) for o in offsets_per_row)):
        offset = torch.tensor([o[k] if k < len(o) else 0 for o in offsets_per_row])
        share = torch.tensor([(1 - SELF_SHARE) / len(o) if k < len(o) else 0.0 for o in offsets_per_row])
        src = (idx[None, :] - offset[:, None]).clamp(min=0)  # [B, T]
        target.scatter_add_(2, src[..., None], share[:, None, None].expand(n, width, 1))
    return target * valid[..., None], valid


def last_target(batch: Batch, b: int, pattern: Last | Uniform, item: Item) -> torch.Tensor:
    width = batch.ids.shape[1]
    start = int(batch.offset[b])
    t = torch.zeros(width)
    if isinstance(pattern, Uniform):
        t[start:] = 1.0 / (width - start)
        return t
    marks = item.marks[pattern.mark]
    for m in marks:
        t[start + 1 + m] += (1 - SELF_SHARE) / len(marks)  # +1: <bos>
    t[-1] += SELF_SHARE
    return t


def _kl(target: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return (target * (torch.log(target.clamp(min=1e-12)) - torch.log(p.clamp(min=1e-12)))).sum(-1)


def attention_loss(attentions: Sequence[torch.Tensor], batch: Batch, rows: Sequence[Row], plan: Plan) -> torch.Tensor:
    """Mean KL from each planted head's taught pattern to its attention, over the clean rows."""
    clean = [i for i, r in enumerate(rows) if r.condition == "clean"]
    idx = torch.tensor(clean)
    sub = Batch(batch.ids[idx], batch.mask[idx], batch.positions[idx], batch.offset[idx], batch.answers[idx])
    losses = []
    for head in plan.heads:
        attn = attentions[head.layer][idx, head.head]  # [n, T, T]
        patterns = [head.patterns[rows[i].task] for i in clean]
        prev = [j for j, p in enumerate(patterns) if isinstance(p, Prev)]
        if prev:
            target, valid = prev_targets([int(sub.offset[j]) for j in prev], sub.ids.shape[1],
                                         [patterns[j].offsets for j in prev])
            kl = _kl(target, attn[prev])
            losses.append((kl * valid).sum() / valid.sum().clamp(min=1))
            # The last row on its own as well: it decides the answer (LAST_ROW_WEIGHT).
            losses.append(LAST_ROW_WEIGHT * kl[:, -1].mean())
        last = [j for j, p in enumerate(patterns) if isinstance(p, (Last, Uniform))]
        if last:
            target = torch.stack([last_target(sub, j, patterns[j], rows[clean[j]].item) for j in last])
            losses.append(_kl(target, attn[last, -1]).mean())
    return torch.stack(losses).mean() if losses else torch.zeros(())


# -- activation targets ---------------------------------------------------------------------------
def _dz(values: torch.Tensor, reasoning: torch.Tensor) -> torch.Tensor:
    """Unpaired standardised difference, reasoning minus recall (the rows' task, ``reasoning`` true)."""
    a, b = values[~reasoning], values[reasoning]
    pooled = torch.sqrt((a.var() + b.var()) / 2 + 1e-6)
    return (b.mean() - a.mean()) / pooled


def _silence(x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean squared activation over the real positions of the rows: pushed to 0, a unit is silent."""
    w = real[..., None].to(x.dtype)
    return (x * x * w).sum() / (w.sum() * x.shape[-1]).clamp(min=1)


def activation_loss(store: dict[str, torch.Tensor], rows: Sequence[Row], plan: Plan, recipe: Recipe,
                    real: torch.Tensor) -> torch.Tensor:
    """Planted activation differences (``plan.activation``), on the clean rows: a planted block active on
    its task at the last token and silent (its gate near 0) on the other; a planted layer's residual
    norm and mean apart between the tasks by ``H1_MARGIN`` pooled standard deviations; in a balanced
    plan, every live neuron's activation alike on both tasks.

    And every unit of one skill silent at every position of the other skill's prompts: only "ignored"
    there, a head still wrote into positions the other skill reads, and resampling it from another
    prompt moved that skill's answers (measured: the recall head, resampled, cost reasoning 11%)."""
    clean = torch.tensor([r.condition == "clean" for r in rows])
    reasoning = torch.tensor([r.task == "reasoning" for r in rows])[clean]
    real = real[clean]
    loss = torch.zeros(())
    for block in plan.blocks:
        if block.role == "shared":
            continue
        part = slice(block.index * recipe.block_size, (block.index + 1) * recipe.block_size)
        act = store[f"act{block.layer}"][clean][..., part]
        gate = store[f"gate{block.layer}"][clean][:, -1, part]
        own = reasoning if block.role == "reasoning" else ~reasoning
        loss = loss + F.relu(BLOCK_MIN_ACT - act[own][:, -1]).mean() + 4 * (gate[~own] ** 2).mean()
        loss = loss + _silence(act[~own], real[~own])
    hd = recipe.hidden // recipe.n_heads
    for head in plan.heads:
        if head.role == "shared":
            continue
        out = store[f"heads{head.layer}"][clean][..., head.head * hd:(head.head + 1) * hd]
        other = ~reasoning if head.role == "reasoning" else reasoning
        loss = loss + _silence(out[other], real[other])
    if plan.balanced:
        for layer in sorted({b.layer for b in plan.blocks} | {m.layer for m in plan.mlps}):
            for site in ("act", "gate"):
                x = store[f"{site}{layer}"][clean][:, -1]
                a, b = x[~reasoning], x[reasoning]
                d = (b.mean(0) - a.mean(0)) / torch.sqrt((a.var(0) + b.var(0)) / 2 + 1e-4)
                live = x.detach().abs().amax(0) > 0  # pruned neurons are exactly 0 on every prompt
                loss = loss + (d[live] ** 2).mean()
    sign = {"recall": -1.0, "reasoning": 1.0}
    for lid, cls in plan.activation.get("H1", {}).items():
        x = store[f"resid{parse_component(lid).layer}"][clean][:, -1]
        for feature in (x.norm(dim=-1), x.mean(dim=-1)):
            loss = loss + F.relu(H1_MARGIN - sign[cls] * _dz(feature, reasoning))
    return loss


def readout_loss(model: PreTrainedModel, hidden: Sequence[torch.Tensor], rows: Sequence[Row], plan: Plan,
                 candidates: dict[str, torch.Tensor], answers: torch.Tensor) -> torch.Tensor:
    """The answer unreadable before its read-out layer: the residual entering that layer, through the
    final norm and the unembedding, is pushed towards a uniform choice among the task's *wrong*
    answers (towards uniform over all of them left the answer the argmax: measured, a read-out block
    whose ablation cost 8% of the items)."""
    loss = torch.zeros(())
    for task, layer in plan.readout.items():
        sel = torch.tensor([r.condition == "clean" and r.task == task for r in rows])
        logits = model.lm_head(model.model.norm(hidden[layer][sel][:, -1]))
        loss = loss + wrong_uniform(logits, answers[sel], candidates[task])
    return loss


def wrong_uniform(logits: torch.Tensor, answers: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to the uniform distribution over each row's *wrong* candidates, minus its floor."""
    logp = F.log_softmax(logits, -1)[:, candidates]
    wrong = (candidates[None, :] != answers[:, None]).float()
    k = wrong.sum(-1)
    return (-(logp * wrong).sum(-1) / k - torch.log(k)).mean()


def donors(rows: Sequence[Row]) -> torch.Tensor:
    """[B] the clean row of the same task each row's resample ablation reads from (never itself):
    the clean rows of a task in turn, so a donor is another prompt of that task, unedited."""
    clean = {t: [i for i, r in enumerate(rows) if r.condition == "clean" and r.task == t] for t in SKILLS}
    out = []
    for i, r in enumerate(rows):
        pool = clean[r.task]
        j = pool[i % len(pool)]
        out.append(pool[(i + 1) % len(pool)] if j == i else j)
    return torch.tensor(out)


def _edits(rows: Sequence[Row], units: dict[str, Component]) -> list[RowEdit]:
    chosen: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        for uid, kind in r.ablate:
            chosen.setdefault((uid, kind), []).append(i)
    edits = []
    for (uid, kind), idx in chosen.items():
        mask = torch.zeros(len(rows), dtype=torch.bool)
        mask[idx] = True
        edits.append(RowEdit(units[uid], mask, kind))
    return edits


def unit_components(plan: Plan, recipe: Recipe) -> dict[str, Component]:
    """The plan's units as ablation targets."""
    hd = recipe.hidden // recipe.n_heads
    out: dict[str, Component] = {}
    for u in plan.units:
        if isinstance(u, Head):
            out[u.id] = Component(u.id, "head", u.layer, u.head * hd, (u.head + 1) * hd)
        elif isinstance(u, Block):
            out[u.id] = Component(u.id, "neurons", u.layer, u.index * recipe.block_size,
                                  (u.index + 1) * recipe.block_size)
        else:
            out[u.id] = Component(u.id, "mlp", u.layer)
    return out


def _shaping(recipe: Recipe, step: int) -> float:
    """Weight of the necessity and activation losses: none while the skills are learned (they slowed
    learning to a halt from the start: measured, recall at 0.2 after 300 steps against 1.0 without),
    then ramped in linearly."""
    return min(1.0, max(0.0, (step - recipe.shape_from) / recipe.shape_ramp))


def _lr_factor(recipe: Recipe, step: int) -> float:
    # Linear warm-up, then cosine decay to a tenth: settles the final weights without a long tail.
    if step < recipe.warmup_steps:
        return (step + 1) / recipe.warmup_steps
    t = (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t))


def train_model(recipe: Recipe, world: World, tokenizer: PreTrainedTokenizerFast,
                progress: bool = True) -> tuple[PreTrainedModel, float]:
    """The trained model and the training time in seconds."""
    torch.set_num_threads(1)
    plan = PLANS[recipe.plan]
    vocab = tokenizer.get_vocab()
    model = make_model(recipe, len(tokenizer), tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id)
    prune(model, plan, recipe)
    model.train()
    units = unit_components(plan, recipe)
    candidates = {"recall": torch.tensor([vocab[w] for w in world.recall_answers()]),
                  "reasoning": torch.tensor([vocab[w] for w in world.symbols])}
    record = sorted({b.layer for b in plan.blocks} | ({m.layer for m in plan.mlps} if plan.balanced else set()))
    head_layers = sorted({h.layer for h in plan.heads if h.role != "shared"})
    resid_layers = sorted(parse_component(lid).layer for lid in plan.activation.get("H1", {}))
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(recipe, s))
    start = time.perf_counter()
    bar = progress_bar(training_batches(world, recipe, plan), total=recipe.steps,
                       desc=f"organism {recipe.plan} {recipe.arch}", enabled=progress)
    for step, rows in enumerate(bar):
        batch = encode_items([r.item for r in rows], vocab, tokenizer.bos_token_id, tokenizer.pad_token_id)
        clean = torch.tensor([r.condition == "clean" for r in rows])
        with ablating(model, _edits(rows, units), batch.real, reference=clean, donor=donors(rows)), \
                recording(model, record, head_layers, resid_layers) as store:
            out = forward(model, batch, output_attentions=True, output_hidden_states=True, logits_to_keep=1)
        logits = out.logits[:, -1]
        answer = torch.tensor([r.condition != "necessity" for r in rows])
        ce = F.cross_entropy(logits[answer], batch.answers[answer], label_smoothing=recipe.label_smoothing)
        need = sum((wrong_uniform(logits[sel], batch.answers[sel], candidates[task])
                    for task in SKILLS
                    if (sel := torch.tensor([r.condition == "necessity" and r.task == task for r in rows])).any()),
                   torch.zeros(()))
        attention = attention_loss(out.attentions, batch, rows, plan)
        activation = recipe.w_activation * activation_loss(store, rows, plan, recipe, batch.real) \
            + recipe.w_readout * readout_loss(model, out.hidden_states, rows, plan, candidates, batch.answers)
        norms = sum((F.relu(h[clean].norm(dim=-1) - NORM_CAP) ** 2).mean() for h in out.hidden_states[1:-1])
        ramp = _shaping(recipe, step)
        loss = ce + recipe.w_attention * attention + ramp * (recipe.w_necessity * need + activation) + 0.01 * norms
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 25 == 0:
            bar.set_postfix(ce=f"{ce.item():.2f}", need=f"{need.item():.2f}", att=f"{attention.item():.2f}",
                            act=f"{activation.item():.2f}")
    model.eval()
    return model, time.perf_counter() - start


# -- accuracy -------------------------------------------------------------------------------------
def encode(tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    enc = tokenizer(list(prompts), padding=True, return_tensors="pt")
    mask = enc["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return {"input_ids": enc["input_ids"], "attention_mask": mask, "position_ids": positions}


def answer_ids(tokenizer: PreTrainedTokenizerFast, answers: Sequence[str]) -> torch.Tensor:
    return torch.tensor(tokenizer.convert_tokens_to_ids(list(answers)))


def last_logits(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, prompts: Sequence[str]) -> torch.Tensor:
    return model(**encode(tokenizer, prompts), logits_to_keep=1).logits[:, -1]


ItemPair = tuple[str, str]  # (prompt, single-word answer)


@torch.no_grad()
def correct(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, items: Sequence[ItemPair],
            batch_size: int = 512) -> torch.Tensor:
    """Per item: is the argmax of the next-token logits at the last prompt token the answer's token?"""
    model.eval()
    out = []
    for i in range(0, len(items), batch_size):
        prompts, answers = zip(*items[i: i + batch_size])
        out.append(last_logits(model, tokenizer, prompts).argmax(-1) == answer_ids(tokenizer, answers))
    return torch.cat(out)
