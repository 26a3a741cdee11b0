"""The report's plots, drawn from a verdicts.json document alone (so ``circuitgate report`` rebuilds the
same page from the file), as matplotlib figures.

Every builder is a pure function of document parts that returns a Figure, or None (or nothing) when the
part holds nothing to plot: any hypothesis, key or number may be missing, and JSON null (a non-finite
number) becomes NaN, which matplotlib leaves out. Figures are made with ``Figure`` on the Agg canvas,
never through pyplot: no display is needed, and no global figure registry keeps them alive after the
page has its PNG. Axes are placed with margins in inches rather than by a layout engine: constrained
layout measures every label twice and made the report take 1.7x as long.
"""

from __future__ import annotations

import base64
import io
from typing import Any, Iterable, Iterator, Mapping

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from circuitgate import CircuitgateError
from circuitgate.ids import ComponentId, depth_id, parse_component, parse_target, target_series
from circuitgate.vocabulary import SKILLS

# One colour per task on every plot; the diverging maps below run from one to the other (RdBu's ends).
RECALL, REASONING, MIXED = "#2166ac", "#b2182b", "#7b3294"
CLASS_COLOURS = {"recall": RECALL, "reasoning": REASONING, "mixed": MIXED}
# Head classes on heatmaps: shapes, since the cell's colour is already the effect.
CLASS_MARKERS = {"recall": "o", "reasoning": "^", "mixed": "s"}
MODEL_STYLES = ({"color": "#1b9e77", "marker": "o", "ls": "-"}, {"color": "#555555", "marker": "s", "ls": "--"})
DPI = 100

def png_data_uri(fig: Figure) -> str:
    """The figure as a base64 ``data:image/png`` URI: the page needs no other file."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _num(x: Any) -> float:
    return np.nan if x is None else float(x)


def _nums(values: Any, n: int) -> np.ndarray:
    """n numbers from a JSON list, NaN for null or for a list that is missing or of another length."""
    if not isinstance(values, list) or len(values) != n:
        return np.full(n, np.nan)
    return np.array([_num(v) for v in values], dtype=float)


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI)


def _grid(fig: Figure, rows: int, cols: int, *, left: float = 0.75, right: float = 0.15, top: float = 0.4,
          bottom: float = 0.5, wgap: float = 0.75, hgap: float = 0.15, **kw) -> np.ndarray:
    """A rows x cols array of axes with the margins and gaps given in inches (room for tick labels and
    titles that does not depend on the figure's size)."""
    width, height = fig.get_size_inches()
    axes_w = (width - left - right - wgap * (cols - 1)) / cols
    axes_h = (height - top - bottom - hgap * (rows - 1)) / rows
    return fig.subplots(rows, cols, squeeze=False, **kw, gridspec_kw={
        "left": left / width, "right": 1 - right / width, "bottom": bottom / height, "top": 1 - top / height,
        "wspace": wgap / axes_w, "hspace": hgap / axes_h})


def _inches(fig: Figure, x: float, y: float, w: float, h: float):
    """Axes at (x, y) from the bottom left, w x h, all in inches."""
    width, height = fig.get_size_inches()
    return fig.add_axes((x / width, y / height, w / width, h / height))


def _layer_axis(ax, n: int) -> None:
    ax.set_xlim(-0.5, n - 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _shade_classes(ax, classes: Iterable[str]) -> None:
    """Each layer's class as a pale band behind the data, so the class reads off any panel of the layer."""
    for layer, cls in enumerate(classes):
        if cls in CLASS_COLOURS:
            ax.axvspan(layer - 0.5, layer + 0.5, color=CLASS_COLOURS[cls], alpha=0.12, lw=0)


def _class_patches(classes: Iterable[str]) -> list[Patch]:
    present = set(classes)
    return [Patch(color=c, alpha=0.25, label=f"{k} layer") for k, c in CLASS_COLOURS.items() if k in present]


def _component(cid: str) -> ComponentId | None:
    try:
        return parse_component(cid)
    except CircuitgateError:  # not a component id this report knows: left out of the plots
        return None


def _by_layer(components: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    return {u.layer: c for cid, c in components.items() if (u := _component(cid)) and u.kind == "layer"}


def _by_head(components: Mapping[str, Any]) -> dict[tuple[int, int], Mapping[str, Any]]:
    return {(u.layer, u.head): c for cid, c in components.items() if (u := _component(cid)) and u.kind == "head"}


# -- H1 ------------------------------------------------------------------------------------------


def h1_profiles(components: Mapping[str, Any], stat: str) -> Iterator[tuple[str, Figure]]:
    """Per H1 feature: its mean on recall and on reasoning prompts by layer (top), and the per-layer
    effect with its interval (bottom); each layer shaded by its class."""
    layers = _by_layer(components)
    if not layers:
        return
    n = max(layers) + 1
    classes = [str(layers.get(i, {}).get("class", "")) for i in range(n)]
    features = list(dict.fromkeys(f for c in layers.values() for f in (c.get("features") or {})))
    x = np.arange(n)
    for feature in features:
        # columns: mean on recall, mean on reasoning, effect, interval low, interval high
        table = np.full((n, 5), np.nan)
        for i, c in layers.items():
            v = (c.get("features") or {}).get(feature) or {}
            table[i] = [_num(v.get("recall")), _num(v.get("reasoning")), _num(v.get("effect")), *_nums(v.get("ci"), 2)]
        fig = _figure(4.3, 4.2)
        top, bottom = _grid(fig, 2, 1, sharex=True)[:, 0]
        for ax in (top, bottom):
            _shade_classes(ax, classes)
            _layer_axis(ax, n)
        top.plot(x, table[:, 0], "o-", color=RECALL, ms=3, label="recall prompts")
        top.plot(x, table[:, 1], "o-", color=REASONING, ms=3, label="reasoning prompts")
        top.set_title(f"H1 {feature}")
        top.set_ylabel("mean")
        top.legend(fontsize=7, loc="best")
        bottom.axhline(0, color="0.5", lw=0.8)
        bottom.fill_between(x, table[:, 3], table[:, 4], color="0.55", alpha=0.35, lw=0, label="CI")
        bottom.plot(x, table[:, 2], "o-", color="black", ms=3, label=stat)
        bottom.set_ylabel(f"{stat} (+ reasoning)")
        bottom.set_xlabel("layer")
        bottom.legend(handles=bottom.get_legend_handles_labels()[0] + _class_patches(classes), fontsize=7, loc="best")
        yield feature, fig


# -- heatmaps (H2, H5 heads) ---------------------------------------------------------------------


def _head_grid(heads: Mapping[tuple[int, int], Mapping[str, Any]], value) -> np.ndarray:
    n_layers, n_heads = (max(k[i] for k in heads) + 1 for i in (0, 1))
    grid = np.full((n_layers, n_heads), np.nan)
    for (layer, head), c in heads.items():
        grid[layer, head] = value(c)
    return grid


def _heatmap(fig: Figure, x: float, y: float, grid: np.ndarray, cell: float, cmap: str, norm: Normalize,
             label: str):
    """Layers down, heads across, square cells of ``cell`` inches with the heatmap's bottom left at (x, y)
    inches and its colour bar to the right; a cell with no number is grey. Returns the axes."""
    n_layers, n_heads = grid.shape
    ax = _inches(fig, x, y, n_heads * cell, n_layers * cell)
    image = ax.imshow(grid, cmap=colormaps[cmap].with_extremes(bad="#d9d9d9"), norm=norm, aspect="auto",
                      interpolation="nearest")
    fig.colorbar(image, cax=_inches(fig, x + n_heads * cell + 0.15, y, 0.15, n_layers * cell), label=label)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(integer=True))
    return ax


def _centred(grid: np.ndarray, floor: float = 0.0) -> Normalize:
    """A scale symmetric about 0, so 0 is the diverging map's neutral middle, reaching at least ``floor``
    so that differences too small to matter stay pale."""
    finite = np.abs(grid[np.isfinite(grid)])
    top = max(float(finite.max()) if finite.size else 0.0, floor)
    return Normalize(-top, top) if top > 0 else Normalize(-1.0, 1.0)


def _mark_classes(ax, heads: Mapping[tuple[int, int], Mapping[str, Any]], cell_points: float) -> list[Line2D]:
    """A shape per classed head, white with a black rim to stand out on either end of the map."""
    handles = []
    for cls, marker in CLASS_MARKERS.items():
        where = np.array([k for k, c in heads.items() if c.get("class") == cls]).reshape(-1, 2)
        if len(where):
            ax.scatter(where[:, 1], where[:, 0], s=(0.45 * cell_points) ** 2, marker=marker, facecolor="white",
                       edgecolor="black", linewidths=0.8)
            handles.append(Line2D([], [], marker=marker, ls="", markerfacecolor="white", markeredgecolor="black",
                                  label=cls))
    return handles


# A heatmap panel's room beyond its cells, in inches: tick labels and axis label on the left, colour bar
# and its label on the right; a title above, the axis label and the class legend below.
_PANEL_LEFT, _PANEL_RIGHT, _PANEL_TOP, _PANEL_BOTTOM = 0.75, 1.25, 0.4, 0.95


def _heatmap_size(n_layers: int, n_heads: int, panels: int, width: float, height: float) -> tuple[float, float, float]:
    """Figure width and height and one cell's side (inches) for square cells of at most 0.6 inch that fit
    the given page area."""
    room = _PANEL_LEFT + _PANEL_RIGHT
    cell = max(0.05, min(0.6, (width / panels - room) / n_heads, height / n_layers))
    return panels * (n_heads * cell + room), n_layers * cell + _PANEL_TOP + _PANEL_BOTTOM, cell


def _class_legend(fig: Figure, handles: list[Line2D]) -> None:
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)


def h2_heads(components: Mapping[str, Any], stat: str) -> Figure | None:
    """H2's per-head effect as a layers x heads heatmap centred on 0, each head's class as a shape."""
    heads = _by_head(components)
    if not heads:
        return None
    grid = _head_grid(heads, lambda c: _num(c.get("effect")))
    width, height, cell = _heatmap_size(*grid.shape, panels=1, width=11.0, height=8.5)
    fig = _figure(width, height)
    ax = _heatmap(fig, _PANEL_LEFT, _PANEL_BOTTOM, grid, cell, "RdBu_r", _centred(grid), f"{stat} (+ reasoning)")
    ax.set_title("H2 per-head effect")
    _class_legend(fig, _mark_classes(ax, heads, cell * 72))
    return fig


# -- H3 ------------------------------------------------------------------------------------------


def h3_fractions(components: Mapping[str, Any], layer_fraction: float | None) -> Figure | None:
    """Per layer, the share of its neurons that are recall-, reasoning- (and mixed-) specific, stacked, with
    the share a layer needs to count as specialised."""
    layers = _by_layer(components)
    if not layers:
        return None
    n = max(layers) + 1
    # columns: recall, reasoning, all task-specific, neurons
    counts = np.full((n, 4), np.nan)
    for i, c in layers.items():
        counts[i] = [_num(c.get(k)) for k in ("n_recall", "n_reasoning", "n_specific", "n_neurons")]
    total = counts[:, 3:4]
    shares = np.divide(counts[:, :3], total, out=np.full((n, 3), np.nan), where=total > 0)
    mixed = np.clip(shares[:, 2] - shares[:, 0] - shares[:, 1], 0, None)
    stack = [("recall", shares[:, 0], RECALL), ("reasoning", shares[:, 1], REASONING)]
    if np.nansum(mixed) > 0:  # the original method counts no mixed neurons
        stack.append(("mixed", mixed, MIXED))
    fig = _figure(max(5.0, min(12.0, 2.0 + 0.3 * n)), 3.6)
    ax = _grid(fig, 1, 1, left=0.8)[0, 0]
    bottom = np.zeros(n)
    for label, share, colour in stack:
        height = np.nan_to_num(share)
        ax.bar(np.arange(n), height, bottom=bottom, color=colour, width=0.8, label=label)
        bottom += height
    if layer_fraction is not None:
        ax.axhline(layer_fraction, color="black", ls="--", lw=1, label=f"layer_fraction {layer_fraction:g}")
    _layer_axis(ax, n)
    ax.set_xlabel("layer")
    ax.set_ylabel("share of the layer's neurons")
    ax.set_title("H3 task-specific neurons per layer")
    ax.legend(fontsize=8, loc="best")
    return fig


# -- H5 ------------------------------------------------------------------------------------------


def _targets(components: Mapping[str, Any]) -> tuple[dict[tuple[str, str], dict[int, Mapping[str, Any]]], dict]:
    """H5 targets split into layer-indexed series, keyed (series id, kind): (attn-L*, attn),
    (neurons-L*-recall, neurons), ...; and heads."""
    series: dict[tuple[str, str], dict[int, Mapping[str, Any]]] = {}
    heads = {}
    for cid, c in components.items():
        try:
            t = parse_target(cid)
        except CircuitgateError:  # not a target id this report knows: left out of the plots
            continue
        # A neuron set's random control is in its set's numbers already; single neurons, a few per
        # layer picked by the screen, are in the report's screen table, not on a series over depth.
        if t.control or t.kind == "neuron":
            continue
        if t.kind == "head":
            heads[t.layer, t.head] = c
        else:
            series.setdefault((target_series(t), t.kind), {})[t.layer] = c
    return series, heads


def _intervals(ax, x: np.ndarray, estimate_low_high: np.ndarray, colour: str, label: str) -> None:
    """Points with their intervals as plain segments: an estimate outside its bootstrap interval, or a
    null bound, is drawn as it is rather than rejected the way errorbar() rejects negative extents."""
    ax.vlines(x, estimate_low_high[:, 1], estimate_low_high[:, 2], color=colour, lw=1.2)
    ax.plot(x, estimate_low_high[:, 0], "o", color=colour, ms=3.5, label=label)


# H5 has one target per layer per kind plus one per head: 56 + 784 (+ neuron sets) on a 28-layer model,
# too many for one interval each on an axis. Layer targets and neuron sets are therefore drawn as
# series over depth (every target with its intervals), and heads as layers x heads heatmaps (below),
# whose class shapes carry the intervals: recall/reasoning needs the interaction's interval to exclude 0.
def h5_layers(components: Mapping[str, Any], min_drop: float | None) -> Figure | None:
    """Per kind of layer target: each task's drop with its interval and the ``min_drop`` a drop must reach
    to count (left), and the interaction (recall drop minus reasoning drop) with its interval (right),
    classed targets ringed in their class's colour."""
    series, _ = _targets(components)
    if not series:
        return None
    n = max(max(s) for s in series.values()) + 1
    x = np.arange(n)
    fig = _figure(11.0, 0.7 + 2.3 * len(series))
    axes = _grid(fig, len(series), 2, sharex=True, top=0.7, hgap=0.4, wgap=0.85)
    for ((name, kind), targets), (left, right) in zip(series.items(), axes):
        # columns: recall drop (mean, low, high), reasoning drop (same), interaction, interaction interval
        table = np.full((n, 9), np.nan)
        classes = np.full(n, "", dtype=object)
        for i, c in targets.items():
            table[i] = [*_nums(c.get("recall_drop"), 3), *_nums(c.get("reasoning_drop"), 3),
                        _num(c.get("interaction")), *_nums(c.get("interaction_ci"), 2)]
            classes[i] = c.get("class", "")
        for ax in (left, right):
            ax.axhline(0, color="0.5", lw=0.8)
            _layer_axis(ax, n)
        if min_drop is not None:
            left.axhline(min_drop, color="black", ls="--", lw=0.8, label=f"min_drop {min_drop:g}")
        _intervals(left, x - 0.12, table[:, 0:3], RECALL, "recall drop")
        _intervals(left, x + 0.12, table[:, 3:6], REASONING, "reasoning drop")
        _intervals(right, x, table[:, 6:9], "black", "interaction")
        for cls in CLASS_COLOURS:
            hit = classes == cls
            if hit.any():
                right.plot(x[hit], table[hit, 6], "o", ms=7, mfc="none", mec=CLASS_COLOURS[cls], mew=1.6,
                           label=f"{cls} target")
        left.set_title(f"{name}: drop on each task", fontsize=9)
        # a neuron set's interaction is net of its random control's (docs/hypotheses.md, H5)
        net = " minus its control's" if kind == "neurons" else " (recall − reasoning)"
        right.set_title(f"{name}: interaction{net}", fontsize=9)
        left.set_ylabel("drop")
        right.set_ylabel("interaction")
        left.legend(fontsize=7, loc="best")
        right.legend(fontsize=7, loc="best")
    for ax in axes[-1]:
        ax.set_xlabel("layer")
    fig.suptitle("H5 ablation of layer targets and neuron sets (intervals: CIs)")
    return fig


def h5_heads(components: Mapping[str, Any], min_drop: float | None) -> Figure | None:
    """Heads: the interaction (recall drop minus reasoning drop) as a layers x heads heatmap centred on 0,
    each head's class as a shape; the scale reaches at least H5's ``min_drop``, the drop that counts."""
    _, heads = _targets(components)
    if not heads:
        return None
    grid = _head_grid(heads, lambda c: _num(c.get("interaction")))
    width, height, cell = _heatmap_size(*grid.shape, panels=1, width=11.0, height=8.5)
    fig = _figure(width, height)
    # RdBu (not reversed): a positive interaction hurts recall more, so it takes recall's blue end.
    ax = _heatmap(fig, _PANEL_LEFT, _PANEL_BOTTOM, grid, cell, "RdBu", _centred(grid, min_drop or 0.0),
                  "interaction (+ recall)")
    ax.set_title("H5 heads: interaction")
    _class_legend(fig, _mark_classes(ax, heads, cell * 72))
    return fig


def h5_head_drops(components: Mapping[str, Any], min_drop: float | None) -> Figure | None:
    """Heads: each task's mean drop as a layers x heads heatmap, on one scale so the two compare, which
    reaches at least H5's ``min_drop``: a head below it hurts no task and stays pale."""
    _, heads = _targets(components)
    if not heads:
        return None
    grids = [_head_grid(heads, lambda c, key=key: _nums(c.get(key), 3)[0]) for key in ("recall_drop", "reasoning_drop")]
    finite = np.concatenate([g.ravel() for g in grids])
    finite = finite[np.isfinite(finite)]
    low = min(0.0, float(finite.min())) if finite.size else 0.0
    scale = Normalize(low, max(float(finite.max()) if finite.size else 0.0, min_drop or 0.0, low + 1e-9))
    width, height, cell = _heatmap_size(*grids[0].shape, panels=2, width=12.5, height=6.0)
    fig = _figure(width, height)
    for panel, (grid, cmap, task) in enumerate(zip(grids, ("Blues", "Reds"), SKILLS)):
        ax = _heatmap(fig, _PANEL_LEFT + panel * width / 2, _PANEL_BOTTOM, grid, cell, cmap, scale, f"{task} drop")
        ax.set_title(f"H5 heads: {task} drop")
    return fig


# -- H4 ------------------------------------------------------------------------------------------


def h4_profiles(summary: Mapping[str, Any]) -> Figure | None:
    """H4's depth profiles: one panel per kind (H1, H2, H5), the two models overlaid over depth bins."""
    binned = summary.get("binned") or {}
    kinds = list(dict.fromkeys(k for profile in binned.values() for k in profile))
    if not kinds:
        return None
    n_bins = summary.get("n_bins") or max(len(v) for profile in binned.values() for v in profile.values())
    rho = summary.get("rho") or {}
    fig = _figure(min(12.0, 0.6 + 3.8 * len(kinds)), 3.3)
    axes = _grid(fig, 1, len(kinds), wgap=0.6)[0]
    x = np.arange(n_bins)
    for ax, kind in zip(axes, kinds):
        for (model, profile), style in zip(binned.items(), MODEL_STYLES):
            ax.plot(x, _nums(profile.get(kind), n_bins), label=model, ms=4, **style)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xticks(x, [depth_id(b) for b in x])
        ax.set_xlabel("depth bin")
        r = rho.get(kind)
        ax.set_title(f"H4 {kind} profile" + ("" if r is None else f" (Spearman rho {r:.2f})"), fontsize=9)
        ax.legend(fontsize=7, loc="best")
    return fig
