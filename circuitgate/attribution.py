"""Attribution screen: every target's ablation drop estimated from forward and backward passes.

The exact H5 sweep runs one forward per target; over every head, sublayer and single neuron of a real
model that is hours on a CPU. The screen estimates all of them at once, per prompt, so that only its
top targets need exact confirmation (``ablation_sweep``).

Estimate (attribution patching, Nanda 2023 "Attribution patching"): for a unit with activation ``a``,
ablated value ``a'`` (0, or the reference mean) and gradient ``g`` of the metric,

    drop ~= -(a' - a) . g          summed over real positions (and head_dim for a head),

with the H5 sign convention: drop = clean metric minus ablated metric, > 0 where the ablation hurts.
``steps=1`` is that first-order estimate at the clean run (AtP). It fails where a unit's effect is
not linear in its activation: saturated attention and large activations (Nanda 2023; Kramár et al.
2024, "AtP*"). On the organism (docs/organism.md) that is the rule: a needed neuron's drop is flat at
the clean run and steep near full ablation (measured, a top recall neuron's mean log-prob drop: 0.03
at half ablation, 0.24 at full). Measured there (benchmarks/validate_screen.py, zero ablation): AtP
put 43-71% of the planted components and 55-70% of the exact top-20 neurons in its top-2k.

The fix used here is integrated gradients (Hanna et al. 2024, "EAP-IG"). AtP*'s two fixes do not fit
these units. Its QK fix recomputes a head's attention softmax exactly when the patched nodes are that
head's queries or keys; the units here are a head's output (after its softmax) and MLP neurons, so
ablating one never moves its own head's pattern. Where a unit's ablation shifts later heads'
patterns, those later softmaxes are nonlinear in it, and IG walks through them. GradDrop (its
second fix, against direct and indirect effects cancelling at the clean point) costs one backward
per layer; IG's path away from the clean point addresses the same blind spot and was measured to
recover every planted component (below). ``steps=S > 1`` walks a path from clean (alpha = 0) to ablated
(alpha = 1), unit <- unit + alpha (a' - unit), and averages each unit's -(a' - a(alpha)) . g(alpha)
over the S Riemann midpoints of alpha. Downstream activations are recomputed at every point, so
``a(alpha)`` is the unit's unedited value there, not the clean one; with it the attributions of one
path's units sum, up to the discretisation, to the exact drop of ablating them together
(completeness, checked by tests/unit/test_attribution.py). A unit's attribution is its share of that
joint ablation, so which units share a path decides what it measures. One path for every unit of a
kind (EAP-IG's, and the research prototype's) credits the earliest needed unit with what its
ablation destroys downstream: measured on the organism's reasoning task, layer 0's MLP got 3.2 and
layer 3's -0.2 (each one's own drop: 1.1); a planted MLP fell out of the top-2k on both planted
organisms, and 30% of the reasoning top-20 neurons were found. So the units are dealt at random to
``groups`` paths per site kind (``unit_groups``: 1/groups of every layer's heads, and of its neurons,
per path), heads and neurons on paths of their own: a unit shares its path with few others, and its
share approaches its own ablation effect. Measured with 32 groups and 4 steps (the defaults): every
planted component and 95-100% of the top-20 neurons within the top-2k on the three organisms; 2
steps did alike (95-100%), 16 groups found 90%. Cost: 2 x groups x steps + 1 forward and backward
rows per prompt for IG (257 by default, about one plain forward and backward each), whatever the
model's number of neurons; 1 for AtP.

An attention output is o_proj of its heads and an MLP output down_proj of its neurons, both linear,
so a sublayer's estimate is the sum of its heads' (neurons') estimates: exactly the sublayer's own
AtP, and under IG the sum of its units' shares. For zero ablation this needs o_proj and down_proj
without a bias (a bias would survive zeroing the heads), which is checked.

Gradients come from nnsight (docs/nnsight.md): inside the trace each site is read (and edited in
place), the metric is built from the last-position logits, and ``with metric.backward():`` serves
every site's gradient in reverse execution order. All paths and steps are copies of the prompt batch
in one forward (rows never interact: docs/nnsight.md, "Many ablations in one forward"). The model's
weights are frozen for the pass and the first layer's input is made to require a gradient instead:
the weights' gradients would cost as much again as the activations' and a model's size in memory.
Batches are left-padded (position -1 is every row's last token); pad positions are masked out of
every product.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from circuitgate import CircuitgateError
from circuitgate.extract import left_pad, tokenize
from circuitgate.interventions import (Target, _chunks, _inputs, _site_means, _site_value, answer_token_ids,
                                       plan_batches)
from circuitgate.models.adapters import Shape
from circuitgate.models.loading import LoadedModel
from circuitgate.progress import progress_bar

SCREEN_ABLATIONS = ("zero", "mean")
SCREEN_METRICS = ("logit_diff", "log_prob")

# The sites the screen reads and a path interpolates, in execution order within a layer (docs/nnsight.md):
# the o_proj input (heads) runs before the down_proj input (neurons). Gradients are read in reverse.
_SITES = ("heads", "neurons")


@dataclass(frozen=True)
class Attribution:
    """Per-prompt estimated drops (clean metric minus ablated metric; > 0: the ablation hurts) of every
    head, attention output, MLP output and single neuron, in the original prompt order."""

    heads: np.ndarray  # [P, L, H] float64
    attn: np.ndarray  # [P, L] float64: the sum of the layer's heads (see the module docstring)
    mlp: np.ndarray  # [P, L] float64: the sum of the layer's neurons
    neurons: np.ndarray  # [P, L, F] float32: 530k per prompt on a 7B model
    clean: np.ndarray  # [P] float64: the metric of the clean run
    metric: str  # "logit_diff" or "log_prob"
    ablation: str  # "zero" or "mean"
    steps: int  # 1: attribution patching at the clean run; > 1: integrated gradients with this many steps
    groups: int  # IG paths (``unit_groups``); 1 for attribution patching
    seed: int  # of the units' deal to the groups

    @property
    def method(self) -> str:
        return "atp" if self.steps == 1 else "ig"

    def estimates(self, targets: Sequence[Target]) -> np.ndarray:
        """Per-prompt estimated drop of each target, [P, len(targets)]. A neuron set's estimate is the
        sum of its neurons', as a sublayer's is (module docstring): an additive score to rank by, which
        exact ablation confirms."""
        cols = []
        for t in targets:
            if t.kind == "head":
                cols.append(self.heads[:, t.layer, t.head])
            elif t.kind == "attn":
                cols.append(self.attn[:, t.layer])
            elif t.kind == "mlp":
                cols.append(self.mlp[:, t.layer])
            else:
                cols.append(self.neurons[:, t.layer, list(t.neurons)].sum(axis=1, dtype=np.float64))
        return np.stack(cols, axis=1) if cols else np.zeros((len(self.clean), 0))


def unit_groups(shape: Shape, groups: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The IG path of every head and neuron: ``{"heads": [L, H], "neurons": [L, F]}`` group indices.

    Each layer's units are dealt round-robin in a seeded random order, so a group holds about 1/groups
    of every layer's heads (at most one per layer when groups >= H) and of its neurons, and the units
    of one block spread over all groups. Heads and neurons walk separate paths: group g of the heads
    and group g of the neurons are two paths.
    """
    rng = np.random.default_rng(seed)
    return {site: np.stack([rng.permutation(width) % groups for _ in range(shape.n_layers)])
            for site, width in (("heads", shape.n_heads), ("neurons", shape.ffn))}


@dataclass(frozen=True)
class _Copy:
    """One copy of a prompt batch in a pass: the path it walks (a site's group of units) at one alpha.
    ``group`` is _ALL for attribution patching's clean copy (every unit read, none edited) and _NONE for
    IG's clean copy (the clean metric only)."""

    site: str | None
    group: int
    alpha: float


_ALL, _NONE = -1, -2


def _copies(steps: int, groups: int) -> list[_Copy]:
    """The clean copy, then for IG each path's Riemann midpoints alpha = (s + 0.5) / S: the heads'
    groups, then the neurons'."""
    if steps == 1:
        return [_Copy(None, _ALL, 0.0)]
    return [_Copy(None, _NONE, 0.0)] + [_Copy(site, g, (s + 0.5) / steps)
                                       for site in _SITES for g in range(groups) for s in range(steps)]


def _metric_rows(logits: torch.Tensor, answer: torch.Tensor, candidates: torch.Tensor, metric: str) -> torch.Tensor:
    """Differentiable per-row metric of last-position logits [N, V], as ``metrics_from_logits``
    defines logit_diff (answer minus the best wrong candidate, the whole vocabulary when fewer than two
    distinct candidates), or the answer's log-probability."""
    lg = logits.float()
    answer, candidates = answer.to(lg.device), candidates.to(lg.device)
    target = lg.gather(1, answer[:, None])[:, 0]
    if metric == "log_prob":
        return target - lg.logsumexp(1)
    if len(candidates) >= 2:
        wrong = lg[:, candidates].masked_fill(candidates[None, :] == answer[:, None], float("-inf"))
    else:
        wrong = lg.scatter(1, answer[:, None], float("-inf"))
    return target - wrong.max(1).values


@contextmanager
def _weights_frozen(module: torch.nn.Module) -> Iterator[None]:
    """No weight gradients during the pass (they would double the backward and cost a model's size)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def _check_bias_free(loaded: LoadedModel) -> None:
    ad, hf = loaded.adapter, loaded.hf
    for layer in range(loaded.shape.n_layers):
        for name, module in (("o_proj", ad.o_proj_module(hf, layer)), ("down_proj", ad.down_proj_module(hf, layer))):
            if getattr(module, "bias", None) is not None:
                raise CircuitgateError(f"zero-ablation attribution needs {name} without a bias (layer {layer} "
                                       "has one); use ablation='mean'")


def _pass(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, copies: Sequence[_Copy],
          unit_group: dict[str, np.ndarray], means: dict[tuple[int, str], torch.Tensor], answer: torch.Tensor,
          candidates: torch.Tensor, metric: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward and backward of the batch repeated once per copy.

    Returns the metric of every row [copies * B] and, per site, sum_t (a' - a) . g over the units each
    reading row's copy reads (0 elsewhere), [reading copies * B, L, W] (W: the site's width), reading
    copies in order: those walking one of the site's paths, or attribution patching's clean copy.
    """
    m, ad, shape = loaded.model, loaded.adapter, loaded.shape
    b, device = ids.shape[0], loaded.device
    real = mask.bool()[..., None].to(device)  # [B, T, 1]
    plan = {}
    for site in _SITES:
        index = [i for i, c in enumerate(copies) if c.site == site or c.group == _ALL]
        reading = [copies[i] for i in index]
        rows = torch.tensor([i * b + j for i in index for j in range(b)], dtype=torch.long, device=device)
        group = torch.tensor([c.group for c in reading], device=device).repeat_interleave(b)[:, None]
        alpha = torch.tensor([c.alpha for c in reading], device=device).repeat_interleave(b)[:, None]
        # Group of every column of the site: a head's group over its head_dim slice.
        columns = torch.as_tensor(unit_group[site], device=device)
        if site == "heads":
            columns = columns.repeat_interleave(shape.head_dim, 1)
        plan[site] = (rows, group, alpha, columns)
    held: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}
    products: dict[tuple[int, str], torch.Tensor] = {}
    inputs = _inputs(loaded, ids.repeat(len(copies), 1), mask.repeat(len(copies), 1))
    with _weights_frozen(loaded.hf), torch.enable_grad():
        with m.trace(inputs, logits_to_keep=1):
            ad.layer(m, 0).input.requires_grad_(True)
            for layer in range(shape.n_layers):
                for site in _SITES:
                    if not len(plan[site][0]):
                        continue
                    x = _site_value(loaded, layer, site)
                    # Under device_map="auto" layers sit on several GPUs: indices go where the value is.
                    rows, group, alpha, columns = (t.to(x.device) for t in plan[site])
                    mean = means.get((layer, site))
                    read = (columns[layer][None, :] == group) | (group == _ALL)  # [rows, W]
                    # The drop direction a' - a from the unedited value, before the edit below; only
                    # the units a row reads, at real positions (a row's prompt is row % B).
                    here = x[rows].detach()
                    delta = -here if mean is None else mean.to(x) - here
                    keep = read[:, None, :] & real.to(x.device).repeat(len(rows) // b, 1, 1)
                    held[(layer, site)] = (x, torch.where(keep, delta, 0.0))
                    if bool((alpha > 0).any()):
                        # Through the live value: upstream gradients must see the (1 - alpha) scaling.
                        a = (alpha * read).to(x)[:, None, :]
                        kept = x[rows] * (1 - a)
                        x[rows] = kept if mean is None else kept + a * mean.to(x)
            logits = ad.logits(m)[:, -1, :]
            values = _metric_rows(logits, answer, candidates, metric)
            saved_values = values.detach().save()
            with values.sum().backward():
                for layer in reversed(range(shape.n_layers)):
                    for site in reversed(_SITES):
                        if (layer, site) in held:
                            x, delta = held[(layer, site)]
                            grad = x.grad[plan[site][0].to(x.device)]
                            products[(layer, site)] = (delta.float() * grad.float()).sum(1).to(device).save()
    out = {site: torch.stack([products[(layer, site)] for layer in range(shape.n_layers)], dim=1)
           for site in _SITES if len(plan[site][0])}
    return saved_values, out


def attribution_screen(
    loaded: LoadedModel, prompts: Sequence[str], answers: Sequence[str], *, ablation: str = "zero",
    reference: Sequence[str] | None = None, candidates: Sequence[str] | None = None, metric: str = "logit_diff",
    steps: int = 4, groups: int = 32, seed: int = 0, batch_size: int = 16, max_rows: int = 512,
    progress: bool = True, desc: str = "attribution",
) -> Attribution:
    """Estimated per-prompt drop of every head, attention output, MLP output and single neuron under
    ``ablation`` (zero, or the mean over the real positions of ``reference``, default ``prompts``).

    ``metric``: logit_diff (answer logit minus the best wrong candidate among ``candidates``, default
    ``answers``, as in ``ablation_sweep``) or log_prob (of the answer's first token), both at the last
    prompt token. ``steps``: 1 for attribution patching, S > 1 for integrated gradients over S steps
    along ``groups`` paths, units dealt to them by ``unit_groups(shape, groups, seed)`` (module
    docstring). A pass holds as many copies of a batch as fit in ``max_rows``, at least one.
    """
    if loaded.remote:
        # The screen reads gradients through torch hooks and frozen local weights (module docstring);
        # a remote model has neither here.
        raise CircuitgateError("the attribution screen runs on local weights only: under --remote set h5.screen: exact")
    if not prompts:
        raise CircuitgateError("no prompts to screen")
    if len(prompts) != len(answers):
        raise CircuitgateError(f"{len(prompts)} prompts but {len(answers)} answers")
    if ablation not in SCREEN_ABLATIONS:
        raise CircuitgateError(f"unknown ablation {ablation!r} for the screen (use {', '.join(SCREEN_ABLATIONS)})")
    if metric not in SCREEN_METRICS:
        raise CircuitgateError(f"unknown metric {metric!r} for the screen (use {', '.join(SCREEN_METRICS)})")
    for name, value in (("steps", steps), ("groups", groups), ("batch_size", batch_size), ("max_rows", max_rows)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise CircuitgateError(f"{name} must be an integer >= 1, got {value!r}")
    if reference is not None and not reference:
        raise CircuitgateError("the reference prompt set for mean activations is empty")
    if ablation == "zero":
        _check_bias_free(loaded)
    steps, groups = int(steps), int(groups)
    shape = loaded.shape
    rows = tokenize(loaded, prompts)
    answer_ids = answer_token_ids(loaded.tokenizer, answers)
    candidate_ids = torch.as_tensor(np.unique(answer_token_ids(
        loaded.tokenizer, answers if candidates is None else candidates)), device=loaded.device)
    keys = {(layer, site) for layer in range(shape.n_layers) for site in _SITES}
    means = {} if ablation == "zero" else _site_means(
        loaded, prompts if reference is None else reference, keys, batch_size, progress, desc)
    assignment = unit_groups(shape, groups, seed)

    n = len(prompts)
    sums = {"heads": np.zeros((n, shape.n_layers, shape.n_heads * shape.head_dim)),
            "neurons": np.zeros((n, shape.n_layers, shape.ffn), dtype=np.float32)}
    clean = np.full(n, np.nan)
    copies = _copies(steps, groups)
    batches = plan_batches([len(r) for r in rows], batch_size)
    plans = [(batch, _chunks(copies, len(batch), max_rows)) for batch in batches]
    with progress_bar(total=sum(len(c) for _, c in plans), desc=desc, unit="pass", enabled=progress,
                      leave=False) as bar:
        for batch, chunks in plans:
            b = len(batch)
            ids, mask = left_pad([rows[i] for i in batch], loaded.tokenizer.pad_token_id)
            for chunk in chunks:
                answer = torch.as_tensor(np.tile(answer_ids[batch], len(chunk)), device=loaded.device)
                values, out = _pass(loaded, ids, mask, chunk, assignment, means, answer, candidate_ids, metric)
                bad = ~torch.isfinite(values)
                if bool(bad.any()):
                    row = int(bad.nonzero()[0, 0]) % b
                    raise CircuitgateError(f"non-finite {metric} in the screen of prompt {prompts[batch[row]]!r}; "
                                           "try --dtype float32")
                if chunk[0].group in (_ALL, _NONE):
                    clean[batch] = values[:b].double().cpu().numpy()
                for site, prod in out.items():
                    # Every copy's rows [k * B, L, W] summed per prompt (a unit is read only on its own
                    # group's copies), averaged over the S steps of IG.
                    per_prompt = prod.reshape(-1, b, *prod.shape[1:]).sum(0).cpu().numpy() / steps
                    sums[site][batch] -= per_prompt.astype(sums[site].dtype)
                bar.update()
    heads = sums["heads"].reshape(n, shape.n_layers, shape.n_heads, shape.head_dim).sum(-1)
    neurons = sums["neurons"]
    return Attribution(heads=heads, attn=heads.sum(-1), mlp=neurons.sum(-1, dtype=np.float64), neurons=neurons,
                       clean=clean, metric=metric, ablation=ablation, steps=steps, groups=groups if steps > 1 else 1,
                       seed=seed)
