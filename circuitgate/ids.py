"""Every component and target id, built and parsed in one place.

Component ids, what H1-H4's component tests assert (``test_H2_head[L07H01]``): layers ``L04``, heads
``L07H01``, neurons ``L04N00012``, H4's depth bins ``D0``. Target ids, what H5 ablates
(``test_H5_ablation[head-L2H1]``): a layer's attention ``attn-L2`` or MLP ``mlp-L2``, a head
``head-L2H1``, an organism's neuron block ``neurons-L2-B0``, H3's task-specific neurons of a layer
``neurons-L2-reasoning`` and their random control ``neurons-L2-reasoning-control``, and a single
neuron ``neuron-L2N17`` (measured when the attribution screen picks it). Node ids carry these and never
the model, so runs on two checkpoints compare test by test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from circuitgate import CircuitgateError
from circuitgate.vocabulary import SKILLS


def layer_id(layer: int) -> str:
    return f"L{layer:02d}"


def head_id(layer: int, head: int) -> str:
    return f"L{layer:02d}H{head:02d}"


def neuron_id(layer: int, neuron: int) -> str:
    return f"L{layer:02d}N{neuron:05d}"


def depth_id(k: int) -> str:
    return f"D{k}"


_COMPONENT = re.compile(r"^L(?P<layer>\d+)(?:H(?P<head>\d+)|N(?P<neuron>\d+))?$")


@dataclass(frozen=True)
class ComponentId:
    """A parsed layer, head or neuron id (``kind``): its layer, and its head or neuron index in the layer."""

    kind: str
    layer: int
    head: int | None = None
    neuron: int | None = None


def parse_component(cid: str) -> ComponentId:
    m = _COMPONENT.match(cid)
    if m is None:
        raise CircuitgateError(f"{cid!r} is not a component id: L<i>, L<i>H<h> or L<i>N<j>")
    if m["head"] is not None:
        return ComponentId("head", int(m["layer"]), head=int(m["head"]))
    if m["neuron"] is not None:
        return ComponentId("neuron", int(m["layer"]), neuron=int(m["neuron"]))
    return ComponentId("layer", int(m["layer"]))


def attn_target(layer: int) -> str:
    return f"attn-L{layer}"


def mlp_target(layer: int) -> str:
    return f"mlp-L{layer}"


def head_target(layer: int, head: int) -> str:
    return f"head-L{layer}H{head}"


def block_target(layer: int, block: int) -> str:
    return f"neurons-L{layer}-B{block}"


def neuron_set_target(layer: int, skill: str) -> str:
    return f"neurons-L{layer}-{skill}"


def control_target(target: str) -> str:
    return f"{target}-control"


def neuron_target(layer: int, neuron: int) -> str:
    return f"neuron-L{layer}N{neuron}"


_TARGET = re.compile(r"^(?P<kind>attn|mlp)-L(?P<layer>\d+)$|^head-L(?P<hlayer>\d+)H(?P<head>\d+)$"
                     r"|^neurons-L(?P<nlayer>\d+)-(?:B(?P<block>\d+)|(?P<skill>" + "|".join(SKILLS) + "))"
                     r"(?P<control>-control)?$|^neuron-L(?P<slayer>\d+)N(?P<neuron>\d+)$")


@dataclass(frozen=True)
class TargetId:
    """A parsed target id: ``kind`` is attn, mlp, head, neurons or neuron; a neurons target is a block
    (its index) or H3's set for a skill (``control`` for the set's random control); a neuron target is
    one neuron (its index in the layer)."""

    kind: str
    layer: int
    head: int | None = None
    neuron: int | None = None
    block: int | None = None
    skill: str | None = None
    control: bool = False


def target_kind(target: str) -> str | None:
    """A target id's kind (attn, mlp, head, neurons or neuron), None for a string that is not a target id."""
    try:
        return parse_target(target).kind
    except CircuitgateError:
        return None


def target_series(target: TargetId) -> str:
    """A layer target's or neuron set's id with its layer written ``*`` (``attn-L*``, ``neurons-L*-B0``,
    ``neurons-L*-recall``): the series over depth report.html plots it in."""
    if target.kind in ("attn", "mlp"):
        return f"{target.kind}-L*"
    if target.kind == "neurons":
        series = f"neurons-L*-{target.skill or f'B{target.block}'}"
        return control_target(series) if target.control else series
    raise CircuitgateError(f"{target.kind} targets are many per layer: they have no series over depth")


def parse_target(target: str) -> TargetId:
    m = _TARGET.match(target)
    if m is None:
        raise CircuitgateError(f"{target!r} is not a target id: attn-L<i>, mlp-L<i>, head-L<i>H<h>, "
                               f"neurons-L<i>-B<k>, neurons-L<i>-{'|'.join(SKILLS)} or neuron-L<i>N<j>")
    if m["kind"]:
        return TargetId(m["kind"], int(m["layer"]))
    if m["hlayer"]:
        return TargetId("head", int(m["hlayer"]), head=int(m["head"]))
    if m["slayer"]:
        return TargetId("neuron", int(m["slayer"]), neuron=int(m["neuron"]))
    block = int(m["block"]) if m["block"] is not None else None
    return TargetId("neurons", int(m["nlayer"]), block=block, skill=m["skill"], control=bool(m["control"]))
