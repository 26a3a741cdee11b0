"""What an organism is built to contain: which components carry which skill, and how.

A plan names the organism's live units -- attention heads, neuron blocks of an MLP, whole MLPs -- and
the role of each: ``recall`` or ``reasoning`` (needed by that skill only), or ``shared`` (needed by
both). Every other head and neuron is pruned: its weights are zero from the start and stay zero, so it
does nothing at all (a pruned head attends uniformly and writes nothing). Training makes the roles
true (``circuitgate.organism.train``); the build measures them by exhaustive ablation and refuses an
organism whose measured classes differ from the plan's (``groundtruth.check_plan``).

Each planted head also gets an attention pattern per task, taught directly (attention supervision):
a positional pattern (``Prev``: the tokens a few positions back), a pattern at the last position
(``Last``: the positions an ``Item`` marks, e.g. the country words a recall question asks about) or,
where a head is off for a task, a uniform row at the last position. Learning which position to read
is what a 4-layer model takes thousands of steps to find by itself (measured: a 2-hop in-context
lookup stayed at chance after 1,500 steps); with the pattern taught, both skills train in a few
hundred (docs/organism.md).

The activation truth (H1-H3) is planted too: units whose activation is built to differ between the
tasks, in a known direction (``Plan.activation``): a recall head attends sharply on recall prompts and
uniformly on reasoning ones, a planted neuron block is active on its task and silent on the other, and
a planted layer's residual norm and mean are held apart between the tasks by a margin. Units outside
``Plan.activation`` carry no activation claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from circuitgate.ids import attn_target, block_target, head_id, head_target, layer_id, mlp_target
from circuitgate.results import combine_classes
from circuitgate.vocabulary import SKILLS

# A planted role's class in H5's terms: a skill's unit has its skill's class; shared units hurt both.
CLASS_OF_ROLE = {**{skill: skill for skill in SKILLS}, "shared": "mixed"}


@dataclass(frozen=True)
class Prev:
    """At every position, attend to the tokens ``offsets`` back (and a little to itself)."""

    offsets: tuple[int, ...]


@dataclass(frozen=True)
class Last:
    """At the last position, attend to the positions an Item marks under ``mark`` (and a little to itself)."""

    mark: str


@dataclass(frozen=True)
class Uniform:
    """At the last position, attend uniformly to every real position: the head is off for the task."""


Pattern = Prev | Last | Uniform


@dataclass(frozen=True)
class Head:
    layer: int
    head: int
    role: str
    patterns: Mapping[str, Pattern]  # task -> pattern

    @property
    def id(self) -> str:
        return head_target(self.layer, self.head)


@dataclass(frozen=True)
class Block:
    """Neurons [index * size, (index + 1) * size) of layer ``layer``'s MLP."""

    layer: int
    index: int
    role: str

    @property
    def id(self) -> str:
        return block_target(self.layer, self.index)


@dataclass(frozen=True)
class Mlp:
    """A whole MLP, every neuron live."""

    layer: int
    role: str

    @property
    def id(self) -> str:
        return mlp_target(self.layer)


Unit = Head | Block | Mlp


@dataclass(frozen=True)
class Plan:
    name: str
    heads: tuple[Head, ...]
    blocks: tuple[Block, ...]
    mlps: tuple[Mlp, ...]
    # hypothesis -> unit id -> class the unit's activation is built to show (layers L01, heads L01H00)
    activation: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # task -> the layer whose MLP writes the answer: the residual entering that layer must not yet
    # name it (read through the final norm and unembedding). Without it the last planted block of a
    # path was bypassed: the answer was readable a layer early, and ablating the block cost nothing.
    readout: Mapping[str, int] = field(default_factory=dict)
    # Hold every live neuron's last-token activation alike on the two tasks (its standardised task
    # difference pushed to 0). For the null: shared as blocks, its neurons otherwise split between the
    # skills, and H3's task-specific neurons, ablated as a set by H5, were selective (measured: in the
    # shared block of layer 1, 49 neurons cost recall 0.45 and reasoning 0.09).
    balanced: bool = False

    @property
    def units(self) -> tuple[Unit, ...]:
        return (*self.heads, *self.blocks, *self.mlps)

    def needed(self, task: str) -> list[Unit]:
        """The units ``task`` needs: its own and the shared ones."""
        return [u for u in self.units if u.role in (task, "shared")]

    def only(self, task: str) -> list[Unit]:
        """The units only ``task`` needs: ablating them must leave the other task unchanged."""
        return [u for u in self.units if u.role == task]

    def live_heads(self) -> set[tuple[int, int]]:
        return {(h.layer, h.head) for h in self.heads}

    def live_neurons(self, block_size: int, ffn: int) -> dict[int, list[tuple[int, int]]]:
        """layer -> live neuron ranges [start, stop)."""
        out: dict[int, list[tuple[int, int]]] = {m.layer: [(0, ffn)] for m in self.mlps}
        for b in self.blocks:
            out.setdefault(b.layer, []).append((b.index * block_size, (b.index + 1) * block_size))
        return out

    def block_layers(self) -> list[int]:
        return sorted({b.layer for b in self.blocks})

    def classes(self, n_layers: int, n_heads: int, block_size: int, ffn: int) -> dict[str, str]:
        """The class each ablation target must measure: planted units by their role, pruned ones none,
        a sublayer the combination of its parts (attention: its heads; an MLP: its blocks or itself)."""
        head_cls = {(h.layer, h.head): CLASS_OF_ROLE[h.role] for h in self.heads}
        out: dict[str, str] = {}
        for layer in range(n_layers):
            heads = [head_cls.get((layer, h), "none") for h in range(n_heads)]
            out[attn_target(layer)] = combine_classes(heads)
            out.update({head_target(layer, h): c for h, c in enumerate(heads)})
            whole = [CLASS_OF_ROLE[m.role] for m in self.mlps if m.layer == layer]
            blocks = {b.index: CLASS_OF_ROLE[b.role] for b in self.blocks if b.layer == layer}
            out[mlp_target(layer)] = combine_classes(whole + list(blocks.values()))
            if layer in self.block_layers():
                out.update({block_target(layer, k): blocks.get(k, "none") for k in range(ffn // block_size)})
        return out


def _off(pattern: Pattern) -> dict[str, Pattern]:
    return {"recall": Uniform(), "reasoning": pattern}


# The planted organism (docs/organism.md has the circuit drawn out):
# - layer 0, shared: head 0 reads the previous two tokens on every prompt; the MLP processes them.
# - recall: head L1H0 gathers the question's country and relation into the last position, neuron
#   block 0 of layer 1 (128 neurons) holds the facts.
# - reasoning: head L0H1 writes what stood three and four tokens back into every position, so b learns
#   that a country preceded it; head L2H1 finds b from the last position; neuron blocks 0 of layers 2
#   and 3 carry the answer out. On recall prompts L0H1 reads two positions as well, six and seven
#   back, where a recall prompt has filler only (every question is at most six tokens): its attention
#   does not tell the tasks apart and gives recall nothing to use, a head with a causal role and no
#   activation difference (H5 must find it, H2 must not be expected to). (Reading <bos> alone on
#   recall prompts, a constant, made recall lean on it more, not less: measured.)
# Causally every layer differs (recall in layer 1; reasoning in both sublayers of layer 2, in the MLP
# only of layer 3; layer 0 serves both), so the depth profiles H4 compares have no ties.
PLANTED = Plan(
    name="planted",
    heads=(
        Head(0, 0, "shared", {"recall": Prev((1, 2)), "reasoning": Prev((1, 2))}),
        Head(0, 1, "reasoning", {"recall": Prev((6, 7)), "reasoning": Prev((3, 4))}),
        Head(1, 0, "recall", {"recall": Last("gather"), "reasoning": Uniform()}),
        Head(2, 1, "reasoning", _off(Last("select"))),
    ),
    blocks=(Block(1, 0, "recall"), Block(2, 0, "reasoning"), Block(3, 0, "reasoning")),
    mlps=(Mlp(0, "shared"),),
    activation={
        "H1": {layer_id(1): "recall", layer_id(2): "reasoning", layer_id(3): "reasoning"},
        "H2": {head_id(1, 0): "recall", head_id(2, 1): "reasoning"},
        "H3": {layer_id(1): "recall", layer_id(2): "reasoning", layer_id(3): "reasoning"},
    },
    readout={"reasoning": 3},
)

# The null organism: the same live units, data, size and training length, every unit needed by both
# skills (each head reads something on both tasks), so no component is selective.
NULL = Plan(
    name="null",
    heads=(
        Head(0, 0, "shared", {"recall": Prev((1, 2)), "reasoning": Prev((1, 2))}),
        Head(0, 1, "shared", {"recall": Prev((3, 4)), "reasoning": Prev((3, 4))}),
        Head(1, 0, "shared", {"recall": Last("gather"), "reasoning": Last("query")}),
        # on recall: the last position itself, a step of the answer's path (gathering the country, as
        # L1H0 does, made the two redundant and L1H0 a bias to recall: measured)
        Head(2, 1, "shared", {"recall": Last("self"), "reasoning": Last("select")}),
    ),
    blocks=(Block(1, 0, "shared"), Block(2, 0, "shared"), Block(3, 0, "shared")),
    mlps=(Mlp(0, "shared"),),
    readout={"recall": 3, "reasoning": 3},
    balanced=True,
)

PLANS = {p.name: p for p in (PLANTED, NULL)}
