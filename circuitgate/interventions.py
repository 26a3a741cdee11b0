"""Causal interventions: ablation sweeps and residual patching, many interventions per forward pass.

An H5 sweep on a 7B model ablates hundreds of targets (every head, attention and MLP output) over
hundreds of prompts; one trace per target would spend its time in per-trace overhead. Instead a batch
of B prompts is repeated 1 + k times in one forward: copy 0 runs clean, copy j carries the j-th
intervention of the chunk. Rows of a batch never interact, so this equals k separate runs
(docs/nnsight.md, "Many ablations in one forward"), and the clean copy is the donor that resample
ablation reads from in the same pass.

Batches are left-padded (position -1 is the last prompt token of every row) and built from prompts
sorted by token length, so little is padded and a resample donor has about its receiver's length.
Only the answer's positions get logits (``logits_to_keep`` reaches the HF forward through nnsight): full
[rows, T, V] logits of a 152k vocabulary would dwarf everything else. Answers are scored whole
(``answer_metrics``): the prompt is followed by the answer's tokens but its last, so "North America" is
right only if both of its tokens are.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import nnsight
import numpy as np
import torch
from circuitgate.progress import progress_bar

from circuitgate import CircuitgateError
from circuitgate.extract import left_pad, tokenize
from circuitgate.ids import attn_target, head_target, mlp_target
from circuitgate.models.adapters import Shape
from circuitgate.models.loading import LoadedModel
from circuitgate.vocabulary import ABLATIONS, METRICS

KINDS = ("attn", "mlp", "head", "neurons")

# The activation each kind of target edits, and the order these run inside a layer: a trace must touch
# them in execution order (docs/nnsight.md). "resid" (the decoder layer output) is what patching edits.
_SITE_OF_KIND = {"head": "heads", "attn": "attn", "neurons": "neurons", "mlp": "mlp"}
_SITE_ORDER = ("heads", "attn", "neurons", "mlp", "resid")

_CLEAN = "in the clean run"

SiteKey = tuple[int, str]  # (layer, site)
Edit = Callable[[torch.Tensor], None]  # edits a site's activation in place, inside a trace


@dataclass(frozen=True)
class Target:
    """One thing to ablate: a layer's attention or MLP output, one head, or a set of MLP neurons."""

    id: str
    kind: str
    layer: int
    head: int | None = None
    neurons: tuple[int, ...] | None = None  # indices into the layer's MLP neurons (down_proj input)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise CircuitgateError(f"target {self.id!r}: unknown kind {self.kind!r} (use {', '.join(KINDS)})")
        if (self.head is not None) != (self.kind == "head"):
            raise CircuitgateError(f"target {self.id!r}: a head index is given exactly when kind is 'head'")
        if self.kind == "neurons":
            if self.neurons is None or len(self.neurons) == 0:
                raise CircuitgateError(f"target {self.id!r}: kind 'neurons' needs a non-empty neuron list")
            # A tuple of ints whatever the caller passed (a list, a numpy array): hashable and comparable.
            object.__setattr__(self, "neurons", tuple(int(n) for n in self.neurons))
        elif self.neurons is not None:
            raise CircuitgateError(f"target {self.id!r}: neurons are given only for kind 'neurons'")

    @property
    def site(self) -> str:
        return _SITE_OF_KIND[self.kind]


def standard_targets(shape: Shape) -> list[Target]:
    """Every layer's attention and MLP output and every head, by layer: the ids components use."""
    out: list[Target] = []
    for layer in range(shape.n_layers):
        out.append(Target(attn_target(layer), "attn", layer))
        out.append(Target(mlp_target(layer), "mlp", layer))
        out.extend(Target(head_target(layer, h), "head", layer, head=h) for h in range(shape.n_heads))
    return out


@dataclass(frozen=True)
class Metrics:
    """Per-prompt next-token metrics at the last prompt token, float64 arrays [P]."""

    accuracy: np.ndarray  # 1.0 where the top token is the answer's first token
    prob: np.ndarray  # softmax probability of the answer's first token
    logit_diff: np.ndarray  # answer logit minus the best wrong candidate's logit

    def get(self, name: str) -> np.ndarray:
        if name not in METRICS:
            raise CircuitgateError(f"unknown metric {name!r} (use {', '.join(METRICS)})")
        return getattr(self, name)


@dataclass(frozen=True)
class SweepResult:
    clean: Metrics
    ablated: dict[str, Metrics]  # target id -> the same prompts with that target ablated
    ablation: str


@dataclass(frozen=True)
class PatchResult:
    own: list[Metrics]  # per layer: scored against the prompts' own answers
    other: list[Metrics]  # per layer: the same runs scored against other_answers
    clean: Metrics  # unpatched, own answers
    clean_other: Metrics  # unpatched, other answers: the baseline that ``other`` is compared with


def answer_tokens(tokenizer: Any, answers: Sequence[str]) -> list[tuple[int, ...]]:
    """Every token of each answer as a continuation of the prompt (hence the leading space)."""
    if not answers:
        return []
    rows = tokenizer([" " + a for a in answers], add_special_tokens=False)["input_ids"]
    unk = getattr(tokenizer, "unk_token_id", None)
    for answer, row in zip(answers, rows):
        if not row:
            raise CircuitgateError(f"answer {answer!r} tokenises to nothing")
        if unk is not None and unk in row:
            raise CircuitgateError(f"answer {answer!r} tokenises to the unknown token; the model cannot name it")
    return [tuple(row) for row in rows]


def answer_token_ids(tokenizer: Any, answers: Sequence[str]) -> np.ndarray:
    """First token of each answer as a continuation of the prompt."""
    return np.array([row[0] for row in answer_tokens(tokenizer, answers)], dtype=np.int64)


def metrics_from_logits(
    logits: torch.Tensor | np.ndarray, answer_ids: np.ndarray, candidate_ids: np.ndarray
) -> Metrics:
    """Metrics of next-token logits [N, V] against one answer token per row (``answer_metrics`` with
    one-token answers)."""
    lg = torch.as_tensor(logits)
    return answer_metrics(lg[:, None, :], np.asarray(answer_ids)[:, None], candidate_ids)


def answer_metrics(logits: torch.Tensor | np.ndarray, answers: np.ndarray, candidate_ids: np.ndarray) -> Metrics:
    """Whole-answer metrics of teacher-forced logits [N, K, V] (position k predicts ``answers[:, k]``).

    ``answers`` [N, K] holds each row's answer tokens right-aligned, -1 before a shorter answer's first
    token. accuracy: greedy decoding gives every answer token (each is its position's argmax); prob: the
    probability of the whole answer (product over its tokens); logit_diff: the smallest margin along the
    answer: at its first token, the answer's logit minus the best wrong candidate's (the top logit among
    the distinct first tokens of ``candidate_ids`` other than the row's own; with fewer than two distinct
    candidates for some row, the whole vocabulary but the answer), and at each later token, its logit minus
    the best other token's. With one-token answers these are the first-token metrics exactly, so the
    organisms (one-token answers) score as before; multi-token answers ("North America", "New Delhi") are
    scored on all of their tokens. Reductions run where the logits are (a GPU for a big vocabulary); only
    [N, K] values come back and are combined in float64.
    """
    lg = torch.as_tensor(logits).float()
    n = lg.shape[0]
    ans = torch.as_tensor(np.asarray(answers), dtype=torch.long, device=lg.device)
    valid = ans >= 0
    safe = ans.clamp(min=0)
    rows = torch.arange(n, device=lg.device)
    first = (~valid).sum(1)  # the window position of each row's first answer token
    target = lg.gather(2, safe[..., None])[..., 0]  # [N, K]
    other = lg.scatter(2, safe[..., None], float("-inf")).max(2).values  # best token but the answer
    correct = ((lg.argmax(2) == safe) | ~valid).all(1)

    first_logits, first_answer = lg[rows, first], safe[rows, first][:, None]
    cands = torch.as_tensor(np.unique(candidate_ids), dtype=torch.long, device=lg.device)
    if len(cands) >= 2:
        wrong = first_logits[:, cands].masked_fill(cands[None, :] == first_answer, float("-inf"))
    else:
        wrong = first_logits.scatter(1, first_answer, float("-inf"))

    def host(t: torch.Tensor) -> np.ndarray:
        return t.double().cpu().numpy()

    is_valid = host(valid).astype(bool)
    later = is_valid.copy()
    later[np.arange(n), host(first).astype(int)] = False
    logp = np.where(is_valid, host(target) - host(lg.logsumexp(2)), 0.0).sum(1)
    margin_first = host(first_logits.gather(1, first_answer)[:, 0]) - host(wrong.max(1).values)
    margin_later = np.where(later, host(target) - host(other), np.inf).min(1)
    return Metrics(accuracy=host(correct), prob=np.exp(logp), logit_diff=np.minimum(margin_first, margin_later))


def right_aligned(answers: Sequence[Sequence[int]], width: int) -> np.ndarray:
    """[N, width] of each answer's tokens right-aligned, -1 before them (``answer_metrics``)."""
    out = np.full((len(answers), width), -1, dtype=np.int64)
    for i, a in enumerate(answers):
        out[i, width - len(a):] = a
    return out


def plan_batches(lengths: Sequence[int], batch_size: int, resample: bool = False) -> list[np.ndarray]:
    """Prompt indices of each batch: consecutive prompts in (stable) order of token length.

    For resample a trailing batch of one prompt is merged into the one before: a lone prompt has no
    donor but itself.
    """
    order = np.argsort(np.asarray(lengths), kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if resample and len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [np.concatenate(batches[-2:])]
    return batches


def resample_donors(lengths: Sequence[int], batch_size: int) -> np.ndarray:
    """donor[p]: the prompt whose clean activations prompt p receives under resample ablation.

    The next prompt of p's batch, cyclically, so a donor is never p itself and runs in p's forward.
    """
    if len(lengths) < 2:
        raise CircuitgateError("resample ablation needs at least 2 prompts (a prompt never donates to itself)")
    if batch_size < 2:
        raise CircuitgateError(
            f"resample ablation needs batch_size >= 2 (donors come from the same batch), got {batch_size}")
    donor = np.empty(len(lengths), dtype=np.int64)
    for batch in plan_batches(lengths, batch_size, resample=True):
        donor[batch] = np.roll(batch, -1)
    return donor


def _check_inputs(prompts: Sequence[str], answers: Sequence[str], batch_size: int, max_rows: int) -> None:
    if not prompts:
        raise CircuitgateError("no prompts to intervene on")
    if len(prompts) != len(answers):
        raise CircuitgateError(f"{len(prompts)} prompts but {len(answers)} answers")
    if batch_size < 1:
        raise CircuitgateError(f"batch_size must be >= 1, got {batch_size}")
    if max_rows < 1:
        raise CircuitgateError(f"max_rows must be >= 1, got {max_rows}")


def _check_targets(targets: Sequence[Target], shape: Shape) -> None:
    seen: set[str] = set()
    for t in targets:
        if t.id in seen:
            raise CircuitgateError(f"target id {t.id!r} is given twice")
        seen.add(t.id)
        if not 0 <= t.layer < shape.n_layers:
            raise CircuitgateError(f"target {t.id!r}: layer {t.layer} out of range (the model has {shape.n_layers})")
        if t.head is not None and not 0 <= t.head < shape.n_heads:
            raise CircuitgateError(f"target {t.id!r}: head {t.head} out of range (the model has {shape.n_heads})")
        if t.neurons is not None:
            bad = [n for n in t.neurons if not 0 <= n < shape.ffn]
            if bad:
                raise CircuitgateError(
                    f"target {t.id!r}: neuron {bad[0]} out of range (the model has {shape.ffn} per layer)")


def _site_value(loaded: LoadedModel, layer: int, site: str) -> Any:
    """The activation of a site inside a trace (a real tensor in nnsight 0.8): read it, or edit it in place."""
    m, ad = loaded.model, loaded.adapter
    if site == "heads":
        return ad.head_input(m, layer)
    if site == "attn":
        return ad.attention(m, layer)[0]
    if site == "neurons":
        return ad.neurons(m, layer)
    if site == "mlp":
        return ad.mlp_output(m, layer)
    return ad.residual(m, layer)


def _trace_order(key: SiteKey) -> tuple[int, int]:
    return key[0], _SITE_ORDER.index(key[1])


def _inputs(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"input_ids": ids.to(loaded.device), "attention_mask": mask.to(loaded.device)}


def _rows(value: Any, n: int, total: int) -> Any:
    """``value`` with every batch-major tensor (2-D or more, ``total`` rows) cut to its first ``n`` rows:
    the attention mask, position ids and rotary tables a decoder layer receives. 1-D tensors (cache
    positions) carry no batch; tuples, lists and dicts (Gemma 3's tables per layer type) are walked."""
    if isinstance(value, torch.Tensor):
        return value[:n] if value.ndim >= 2 and value.shape[0] == total else value
    if isinstance(value, (tuple, list)):
        return type(value)(_rows(v, n, total) for v in value)
    if isinstance(value, dict):
        return {k: _rows(v, n, total) for k, v in value.items()}
    return value


class _Staggered(torch.nn.Module):
    """Runs a decoder layer on the first ``active`` rows of the batch only: the clean copy and the copies
    whose first edit is at or below this layer. A copy edited higher up is still identical to the clean
    copy here, so it is not computed; it joins at its own layer with the clean copy's input (rows
    0..b-1). Rows never interact, so this is the same forward as computing every copy everywhere."""

    def __init__(self, layer: torch.nn.Module, active: int, total: int, b: int) -> None:
        super().__init__()
        self.layer, self.active, self.total, self.b = layer, active, total, b

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        have = hidden_states.shape[0]
        if have > self.active:
            hidden_states = hidden_states[:self.active]
        elif have < self.active:
            joining = (self.active - have) // self.b
            hidden_states = torch.cat([hidden_states, hidden_states[:self.b].repeat(joining, 1, 1)])
        return self.layer(hidden_states, *_rows(args, self.active, self.total),
                          **_rows(kwargs, self.active, self.total))


@contextmanager
def _staggered(loaded: LoadedModel, starts: Sequence[int], b: int) -> Iterator[None]:
    """Every decoder layer of ``loaded.hf`` wrapped in ``_Staggered`` for the duration: copy j (1-based)
    is computed from layer ``starts[j - 1]`` on, the clean copy 0 at every layer. ``starts`` ascending,
    so the rows a layer computes are always a prefix of the batch and the edits' row slices hold."""
    from bisect import bisect_right

    if any(a > c for a, c in zip(starts, starts[1:])):
        raise ValueError(f"copies must be ordered by their first edited layer, got {list(starts)}")
    layers = loaded.adapter.layers(loaded.hf)
    originals = list(layers)
    total = b * (1 + len(starts))
    for i, layer in enumerate(originals):
        layers[i] = _Staggered(layer, b * (1 + bisect_right(starts, i)), total, b)
    try:
        yield
    finally:
        for i, layer in enumerate(originals):
            layers[i] = layer


@torch.no_grad()
def _forward(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, copies: int,
             edits: dict[SiteKey, list[Edit]], keep: int = 1, starts: Sequence[int] | None = None) -> torch.Tensor:
    """Logits of the last ``keep`` positions [copies * B, keep, V] of the batch repeated ``copies``
    times, with edits applied. With ``starts`` (the first edited layer of copies 1.., ascending) each
    copy is computed only from its first edited layer on (``_staggered``): below it, it is the clean
    copy. A remote model has no local layers to wrap, so it computes every copy everywhere."""
    inputs = _inputs(loaded, ids.repeat(copies, 1), mask.repeat(copies, 1))
    stagger = _staggered(loaded, starts, len(ids)) if starts is not None and not loaded.remote else nullcontext()
    with stagger:
        return _edited_logits(loaded, inputs, edits, keep)


def _edited_logits(loaded: LoadedModel, inputs: dict[str, torch.Tensor], edits: dict[SiteKey, list[Edit]], keep: int,
                   **kwargs: Any) -> torch.Tensor:
    """One trace of ``inputs`` (``kwargs`` reach the HF forward) with the edits applied in execution
    order, and the logits of its last ``keep`` positions."""
    # Written for a remote trace too (docs/nnsight.md, Remote execution): the result is a named, saved
    # copy made inside the block.
    with loaded.trace(inputs, logits_to_keep=keep, **kwargs):
        for key in sorted(edits, key=_trace_order):
            x = _site_value(loaded, *key)
            for edit in edits[key]:
                edit(x)
        logits = loaded.adapter.logits(loaded.model)[:, -keep:, :].clone().save()
    return logits


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch, each row counted from its first real token: what nnsight
    supplies to a full forward of the batch (an absolute-position model such as GPT-2 needs them), and
    so what a forward split into a cached prefix and its last position must use to equal it."""
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _cached_rows(max_rows: int, shape: Shape) -> int:
    """Rows a last-position pass may hold in the memory ``max_rows`` rows of a full pass take: each row
    carries its own copy of every layer's keys and values (2 x n_kv_heads x head_dim a layer and token),
    where a full pass holds SWEEP_WIDTHS row widths a token of one layer at a time (``plan``)."""
    from circuitgate.plan import SWEEP_WIDTHS, row_width

    cached = 2 * shape.n_layers * shape.n_kv_heads * shape.head_dim
    return max(1, int(max_rows * min(1.0, SWEEP_WIDTHS * row_width(shape) / cached)))


@torch.no_grad()
def _prefix_cache(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    """The clean batch's keys and values at every position but the last, or None where that cannot be
    had (a remote model, a one-token batch, a cache without per-layer key and value tensors)."""
    if loaded.remote or ids.shape[1] < 2:
        return None
    out = loaded.hf(**_inputs(loaded, ids[:, :-1], mask[:, :-1]), position_ids=_positions(mask)[:, :-1].to(loaded.device),
                    use_cache=True, logits_to_keep=1)
    cache = getattr(out, "cache", None)
    layers = getattr(cache, "layers", None)
    if not layers or not all(isinstance(getattr(layer, "keys", None), torch.Tensor) for layer in layers):
        return None
    return cache


def _repeated(cache: Any, copies: int) -> Any:
    """A copy of a prefix cache with every layer's keys and values repeated once per copy of the batch
    (copy-major, as ``_forward`` repeats the batch); the forward appends to it, so each pass gets its own."""
    out = copy.copy(cache)
    out.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in out.layers:
        layer.keys, layer.values = layer.keys.repeat(copies, 1, 1, 1), layer.values.repeat(copies, 1, 1, 1)
    return out


@torch.no_grad()
def _last_token_forward(loaded: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, copies: int,
                        edits: dict[SiteKey, list[Edit]], cache: Any) -> torch.Tensor:
    """``_forward`` of the last position only, for edits that touch nothing but the last position: the
    other positions never attend to it, so every copy's keys and values there are the clean batch's
    (``cache``, from ``_prefix_cache``), and one position is computed per copy instead of all of them."""
    inputs = _inputs(loaded, ids[:, -1:].repeat(copies, 1), mask.repeat(copies, 1))
    last = _positions(mask)[:, -1:].repeat(copies, 1).to(loaded.device)
    return _edited_logits(loaded, inputs, edits, 1, cache=_repeated(cache, copies), use_cache=True, position_ids=last)


@torch.no_grad()
def _site_means(loaded: LoadedModel, texts: Sequence[str], keys: set[SiteKey], batch_size: int,
                progress: bool, desc: str) -> dict[SiteKey, torch.Tensor]:
    """Mean of each site's activation over all real token positions of ``texts``, in float64.

    Mask-weighted sums, so pad positions (garbage, docs/nnsight.md) never enter the mean.
    """
    rows = tokenize(loaded, texts)
    order = sorted(keys, key=_trace_order)
    sums: dict[SiteKey, torch.Tensor] = {}
    count = 0
    starts = range(0, len(rows), batch_size)
    for start in progress_bar(starts, desc=f"{desc} (means)", unit="batch", enabled=progress, leave=False):
        ids, mask = left_pad(rows[start:start + batch_size], loaded.tokenizer.pad_token_id)
        weight = mask.to(torch.float64)[..., None]
        # Made and saved inside the block, so that a remote trace returns it (docs/nnsight.md).
        with loaded.trace(_inputs(loaded, ids, mask), logits_to_keep=1):
            part = nnsight.save({})
            for key in order:
                x = _site_value(loaded, *key)
                part[key] = (x.double() * weight.to(x.device)).sum((0, 1))
        for key in order:
            sums[key] = sums[key] + part[key] if key in sums else part[key]
        count += int(mask.sum())
    return {key: s / count for key, s in sums.items()}


def _selector(target: Target, shape: Shape) -> slice | torch.Tensor:
    """The part of the last dimension of the target's site that the target owns."""
    if target.kind == "head":
        assert target.head is not None
        return slice(target.head * shape.head_dim, (target.head + 1) * shape.head_dim)
    if target.kind == "neurons":
        return torch.tensor(target.neurons, dtype=torch.long)
    return slice(None)


def _ablation_edit(target: Target, ablation: str, rows: slice, shape: Shape, means: dict[SiteKey, torch.Tensor],
                   donor: torch.Tensor, donor_real: torch.Tensor) -> Edit:
    """The edit that ablates ``target`` at every position of the given rows (one copy of the batch).

    ``donor`` indexes the clean copy's rows (copy 0, never edited), ``donor_real`` [B, T, 1] marks the
    donors' real positions; where a donor is padding its receiver gets the mean instead. Index tensors
    move to the activation's device inside the edit: under device_map="auto" layers sit on several GPUs.
    """
    sel = _selector(target, shape)
    mean = means[(target.layer, target.site)][sel] if ablation != "zero" else None

    def edit(x: torch.Tensor) -> None:
        idx = sel.to(x.device) if isinstance(sel, torch.Tensor) else sel
        if mean is None:
            x[rows, :, idx] = 0
        elif ablation == "mean":
            x[rows, :, idx] = mean.to(x)
        else:
            clean = x[donor.to(x.device)][:, :, idx]
            x[rows, :, idx] = torch.where(donor_real.to(x.device), clean, mean.to(x))
    return edit


def _patch_edit(rows: slice, value: torch.Tensor) -> Edit:
    """The edit that replaces the last-token residual of the given rows by ``value`` [B, hidden]."""
    def edit(x: torch.Tensor) -> None:
        x[rows, -1, :] = value.to(x)
    return edit


def _check_finite(logits: torch.Tensor, runs: list[str], prompts: Sequence[str], batch: np.ndarray) -> None:
    """One-line error naming the first run (``runs[copy]``) and prompt whose logits are not finite."""
    bad = ~torch.isfinite(logits.reshape(len(logits), -1)).all(1)
    if bool(bad.any()):
        copy, row = divmod(int(bad.nonzero()[0, 0]), len(batch))
        raise CircuitgateError(
            f"non-finite logits {runs[copy]} of prompt {prompts[batch[row]]!r}; try --dtype float32")


class _Collector:
    """Per-prompt metric arrays filled batch by batch, in the original prompt order."""

    def __init__(self, n: int) -> None:
        self.arrays = {name: np.full(n, np.nan) for name in METRICS}

    def put(self, prompts: np.ndarray, scores: Metrics, part: slice) -> None:
        for name in METRICS:
            self.arrays[name][prompts] = scores.get(name)[part]

    def result(self) -> Metrics:
        return Metrics(**self.arrays)


def _chunks(items: Sequence[Any], batch_rows: int, max_rows: int) -> list[Sequence[Any]]:
    """Items per pass: as many copies as fit in max_rows beside the clean copy, at least one."""
    k = max(1, max_rows // batch_rows - 1)
    return [items[i:i + k] for i in range(0, len(items), k)] or [items]


def ablation_sweep(
    loaded: LoadedModel, prompts: Sequence[str], answers: Sequence[str], targets: Sequence[Target], *,
    ablation: str = "zero", reference: Sequence[str] | None = None, candidates: Sequence[str] | None = None,
    batch_size: int = 16, max_rows: int = 512, progress: bool = True, desc: str = "ablations", reuse: bool = True,
) -> SweepResult:
    """Metrics of ``prompts`` clean and with each target ablated in turn (one target per run).

    zero sets the target's activation to 0 at every position (the answer's teacher-forced tokens
    included: the ablated model produces the whole answer); mean to its mean over the real positions
    of ``reference`` (default: ``prompts``); resample to a donor prompt's clean activation at the same
    right-aligned position (``resample_donors``), or the mean where the donor has no such position.
    ``reuse`` (default) computes each ablated copy only from its target's layer on (``_staggered``):
    below it, the copy is the clean one.
    """
    if ablation not in ABLATIONS:
        raise CircuitgateError(f"unknown ablation {ablation!r} (use {', '.join(ABLATIONS)})")
    _check_inputs(prompts, answers, batch_size, max_rows)
    targets = list(targets)
    _check_targets(targets, loaded.shape)
    if reference is not None and not reference:
        raise CircuitgateError("the reference prompt set for mean activations is empty")
    # Teacher forcing: each prompt is followed by its answer's tokens but the last, so the last len(answer)
    # positions predict the whole answer (``answer_metrics``); a one-token answer adds nothing.
    answer_rows = answer_tokens(loaded.tokenizer, answers)
    rows = [r + list(a[:-1]) for r, a in zip(tokenize(loaded, prompts), answer_rows)]
    lengths = [len(r) for r in rows]
    candidate_ids = answer_token_ids(loaded.tokenizer, answers if candidates is None else candidates)
    donors = resample_donors(lengths, batch_size) if ablation == "resample" else None
    means = {} if ablation == "zero" else _site_means(
        loaded, prompts if reference is None else reference, {(t.layer, t.site) for t in targets},
        batch_size, progress, desc)

    batches = plan_batches(lengths, batch_size, resample=ablation == "resample")
    # By layer: a pass computes each copy from its first edited layer on (``_staggered``), and a chunk of
    # nearby layers leaves little of any copy to compute.
    by_layer = sorted(targets, key=lambda t: t.layer)
    plans = [(batch, _chunks(by_layer, len(batch), max_rows)) for batch in batches]
    clean = _Collector(len(prompts))
    ablated = {t.id: _Collector(len(prompts)) for t in targets}
    with progress_bar(total=sum(len(c) for _, c in plans), desc=desc, unit="pass", enabled=progress,
                      leave=False) as bar:
        for batch, chunks in plans:
            b = len(batch)
            ids, mask = left_pad([rows[i] for i in batch], loaded.tokenizer.pad_token_id)
            keep = max(len(answer_rows[i]) for i in batch)
            want = right_aligned([answer_rows[i] for i in batch], keep)
            # Donors of this batch as rows of the clean copy: the next prompt in the batch, cyclically.
            local = {int(p): j for j, p in enumerate(batch)}
            donor = torch.tensor([local[int(donors[p])] for p in batch]) if donors is not None else torch.arange(b)
            donor_real = mask[donor].bool()[..., None]
            for n, chunk in enumerate(chunks):
                edits: dict[SiteKey, list[Edit]] = {}
                for j, t in enumerate(chunk, start=1):
                    rows_j = slice(j * b, (j + 1) * b)
                    edit = _ablation_edit(t, ablation, rows_j, loaded.shape, means, donor, donor_real)
                    edits.setdefault((t.layer, t.site), []).append(edit)
                starts = [t.layer for t in chunk] if reuse else None
                logits = _forward(loaded, ids, mask, 1 + len(chunk), edits, keep, starts)
                _check_finite(logits, [_CLEAN, *(f"with {t.id} {ablation}-ablated" for t in chunk)], prompts, batch)
                scores = answer_metrics(logits, np.tile(want, (1 + len(chunk), 1)), candidate_ids)
                if n == 0:
                    clean.put(batch, scores, slice(0, b))
                for j, t in enumerate(chunk, start=1):
                    ablated[t.id].put(batch, scores, slice(j * b, (j + 1) * b))
                bar.update()
    return SweepResult(clean=clean.result(), ablated={k: v.result() for k, v in ablated.items()}, ablation=ablation)


def patch_residual(
    loaded: LoadedModel, prompts: Sequence[str], answers: Sequence[str], source: np.ndarray,
    other_answers: Sequence[str], *, candidates: Sequence[str] | None = None, batch_size: int = 16,
    max_rows: int = 512, progress: bool = True, desc: str = "patching", reuse: bool = True,
) -> PatchResult:
    """For each layer l, replace the last-token residual (decoder layer l's output at position -1) by
    ``source[:, l]`` [P, n_layers, hidden] and score the prompts against their own and the other answers.

    Candidates for logit_diff default to both answer lists: a patch that moves the prediction to the
    paired other answer should lower the own answer's margin. ``reuse`` (default) computes only the
    last position of each patched copy, on the clean batch's keys and values of the others
    (``_last_token_forward``), or, where those cannot be had, each copy from its layer on (``_staggered``).
    """
    _check_inputs(prompts, answers, batch_size, max_rows)
    if len(other_answers) != len(prompts):
        raise CircuitgateError(f"{len(prompts)} prompts but {len(other_answers)} other answers")
    shape = loaded.shape
    source = np.asarray(source)
    expected = (len(prompts), shape.n_layers, shape.hidden)
    if source.shape != expected:
        raise CircuitgateError(f"patch source has shape {source.shape}, expected {expected} (prompts, layers, hidden)")
    if not np.isfinite(source).all():
        raise CircuitgateError("patch source contains non-finite values")
    rows = tokenize(loaded, prompts)
    own_ids = answer_token_ids(loaded.tokenizer, answers)
    other_ids = answer_token_ids(loaded.tokenizer, other_answers)
    candidate_ids = answer_token_ids(loaded.tokenizer, [*answers, *other_answers] if candidates is None else candidates)

    layers = list(range(shape.n_layers))
    batches = plan_batches([len(r) for r in rows], batch_size)
    per_pass = _cached_rows(max_rows, shape) if reuse and not loaded.remote else max_rows
    plans = [(batch, _chunks(layers, len(batch), per_pass)) for batch in batches]
    clean, clean_other = _Collector(len(prompts)), _Collector(len(prompts))
    own = [_Collector(len(prompts)) for _ in layers]
    other = [_Collector(len(prompts)) for _ in layers]
    with progress_bar(total=sum(len(c) for _, c in plans), desc=desc, unit="pass", enabled=progress,
                      leave=False) as bar:
        for batch, chunks in plans:
            b = len(batch)
            ids, mask = left_pad([rows[i] for i in batch], loaded.tokenizer.pad_token_id)
            src = torch.as_tensor(source[batch])
            # A patch edits the last position only: the rest of every copy is the clean batch's.
            cache = _prefix_cache(loaded, ids, mask) if reuse else None
            for n, chunk in enumerate(chunks):
                edits: dict[SiteKey, list[Edit]] = {}
                for j, layer in enumerate(chunk, start=1):
                    edits[(layer, "resid")] = [_patch_edit(slice(j * b, (j + 1) * b), src[:, layer])]
                if cache is not None:
                    logits = _last_token_forward(loaded, ids, mask, 1 + len(chunk), edits, cache)[:, -1, :]
                else:
                    logits = _forward(loaded, ids, mask, 1 + len(chunk), edits, starts=chunk if reuse else None)[:, -1, :]
                _check_finite(logits, [_CLEAN, *(f"with layer {layer} patched" for layer in chunk)], prompts, batch)
                copies = 1 + len(chunk)
                scores_own = metrics_from_logits(logits, np.tile(own_ids[batch], copies), candidate_ids)
                scores_other = metrics_from_logits(logits, np.tile(other_ids[batch], copies), candidate_ids)
                if n == 0:
                    clean.put(batch, scores_own, slice(0, b))
                    clean_other.put(batch, scores_other, slice(0, b))
                for j, layer in enumerate(chunk, start=1):
                    own[layer].put(batch, scores_own, slice(j * b, (j + 1) * b))
                    other[layer].put(batch, scores_other, slice(j * b, (j + 1) * b))
                bar.update()
    return PatchResult(own=[c.result() for c in own], other=[c.result() for c in other],
                       clean=clean.result(), clean_other=clean_other.result())
