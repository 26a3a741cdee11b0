"""report.html: one self-contained page from a verdicts.json document: the verdicts, then the plots
(per method under ``--method both``; PNGs embedded as data URIs, so the page needs no other file, no
network and no script), then the tables: the methods side by side, the template controls behind a
"confounded by template" verdict, H4's two depth profiles, and every hypothesis's components."""

from __future__ import annotations

import re
from html import escape
from typing import Any, Iterator, Mapping

from circuitgate.ids import depth_id
from circuitgate.plan import describe, duration, gigabytes
from circuitgate.report import plots
from circuitgate.judging import expected_circuit, noise_floor_line, noise_floors, summary_numbers
from circuitgate.vocabulary import SKILLS

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
.pass { background: #e6f4e6; } .fail { background: #fbe3e3; } .info { background: #fff; }
code { font-size: 12px; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0 0 1em; display: table; }
figure img { max-width: 100%; height: auto; display: block; }
figcaption { display: table-caption; caption-side: bottom; font-size: 12px; color: #555; }
.swatch { display: inline-block; width: 1em; height: 0.8em; vertical-align: baseline; }
"""


def _fmt(x: Any) -> str:
    if x is None:  # null in verdicts.json: no value (a non-finite number, or no p-value for H5)
        return ""
    if isinstance(x, float):
        return f"{x:.3g}"
    return escape(str(x))


def _row(cells: list[str], cls: str = "") -> str:
    return f"<tr class='{cls}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"




def _interval(values: Any) -> str:
    if not values or any(v is None for v in values):
        return ""
    estimate, low, high = values if len(values) == 3 else (None, *values)
    inner = f"[{low:.3g}, {high:.3g}]"
    return inner if estimate is None else f"{estimate:.3g} {inner}"


# H5's intervals: mean drop per task (clean minus ablated) and the interaction (recall minus reasoning).
_H5_COLUMNS = (
    ("recall drop [CI]", lambda c: _interval(c.get("recall_drop"))),
    ("reasoning drop [CI]", lambda c: _interval(c.get("reasoning_drop"))),
    ("interaction CI", lambda c: _interval(c.get("interaction_ci"))),
    ("control", lambda c: (c.get("control") or {}).get("id", "")),
)


def _h4_profiles(summary: Mapping[str, Any]) -> list[str]:
    """H4's two models' depth profiles side by side, one row per depth bin."""
    models = summary["models"]
    kinds = list(next(iter(summary["binned"].values())))
    head = "".join(f"<th>{escape(m)} {escape(k)}</th>" for m in models for k in kinds)
    rows = [f"<h2>H4 depth profiles</h2><p>{escape(summary_numbers(summary))}</p><table><tr><th>depth bin</th>{head}</tr>"]
    for b in range(summary["n_bins"]):
        rows.append(_row([depth_id(b)] + [_fmt(summary["binned"][m][k][b]) for m in models for k in kinds]))
    rows.append("</table>")
    return rows


def _side_by_side(by_method: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """--method both: one row per hypothesis, one verdict column per method."""
    methods = list(by_method)
    hyps = sorted({h for entries in by_method.values() for h in entries})
    head = "".join(f"<th>{escape(m)}</th><th>{escape(m)}: numbers</th>" for m in methods)
    rows = ["<h2>Methods side by side</h2><table><tr><th>hypothesis</th><th>expected</th>" + head + "</tr>"]
    for h in hyps:
        entries = [by_method[m].get(h) for m in methods]
        expected = next(e["expected"] for e in entries if e)
        cells = []
        for e in entries:
            if e is None:
                cells += ["", ""]
                continue
            mark = "" if not e.get("tested", True) else (" (pass)" if e["passed"] else " (fail)")
            cells += [_fmt(e["verdict"]) + mark, _fmt(summary_numbers(e["summary"]))]
        rows.append(_row([escape(h), _fmt(expected)] + cells))
    rows.append("</table>")
    return rows


def _controls(hyps: Mapping[str, Any]) -> list[str]:
    """The template controls (same task, two templates) each paired analysis also ran on: a control
    that comes out specialised makes its hypothesis inconclusive, "confounded by template"."""
    rows = []
    for h, e in hyps.items():
        for task, c in (e["summary"].get("controls") or {}).items():
            confounded = "confounded by template" if c["specialised"] else (
                "too few pairs to check" if not c["feasible"] else "clean")
            rows.append(_row([escape(h), escape(task), _fmt(c["n_pairs"]), _fmt(c["count"]), _fmt(c["threshold"]),
                              _fmt(c["max_abs_d_z"]), confounded], "fail" if c["specialised"] else ""))
    if not rows:
        return []
    return ["<h2>Template controls</h2><p>The same task asked under two templates, analysed like the pairs: "
            "specialisation here is the template's, not the task's.</p><table><tr><th>hypothesis</th><th>task</th>"
            "<th>pairs</th><th>specialised</th><th>threshold</th><th>max |d_z|</th><th>outcome</th></tr>",
            *rows, "</table>"]


_LEGEND = "".join(f"<span class='swatch' style='background:{colour}'></span> {task} &nbsp; " for task, colour in
                  (("recall", plots.RECALL), ("reasoning", plots.REASONING), ("mixed", plots.MIXED)))


def _method_plots(method: str, hyps: Mapping[str, Any], layer_fraction: float | None) -> Iterator[tuple]:
    """(name, alt text, figure, caption) for every plot one method's entries give, in page order; a
    generator, so one figure at a time is alive."""
    stat = {"paired": "d_z", "original": "d"}.get(method, "effect")

    def components(h: str) -> Mapping[str, Any]:
        return (hyps.get(h) or {}).get("components") or {}

    min_drop = ((hyps.get("H5") or {}).get("summary") or {}).get("min_drop")

    for feature, fig in plots.h1_profiles(components("H1"), stat):
        yield (f"h1-{feature}", f"H1 {feature} per layer: mean on recall and reasoning prompts; {stat} with CI", fig,
               f"Top: the mean of {escape(feature)} on recall and reasoning prompts. Bottom: the per-layer effect "
               f"({stat}, + = reasoning side) and its CI. Bands: the layer's H1 class.")
    plot_list = (
        ("h2-heads", "H2 per-head effect heatmap, layers x heads, head classes marked",
         lambda: plots.h2_heads(components("H2"), stat),
         f"Each head's H2 effect ({stat}; red = reasoning side, blue = recall side; grey = no number), its class "
         "as a shape."),
        ("h3-fraction", "H3 task-specific neuron share per layer, stacked by task, with the layer_fraction line",
         lambda: plots.h3_fractions(components("H3"), layer_fraction),
         "Share of each layer's MLP neurons that are task-specific, by task; dashed: <code>layer_fraction</code>, "
         "the share a specialised layer needs."),
        ("h5-layers", "H5 drops per task and interaction with CIs for attention, MLP and neuron-set targets by layer",
         lambda: plots.h5_layers(components("H5"), min_drop),
         "Each layer target's mean drop on each task (clean minus ablated; dashed: <code>min_drop</code>, the drop "
         "that counts) and the interaction (recall drop minus reasoning drop) with their intervals; ringed: a "
         "target classed recall, reasoning or mixed."),
        ("h5-heads", "H5 per-head interaction heatmap, layers x heads, head classes marked",
         lambda: plots.h5_heads(components("H5"), min_drop),
         "Each head's interaction (blue = hurts recall more, red = hurts reasoning more) and class; a recall or "
         "reasoning head's interaction interval excludes 0 (the intervals are in the H5 table)."),
        ("h5-head-drops", "H5 per-head drop on recall and on reasoning, heatmaps",
         lambda: plots.h5_head_drops(components("H5"), min_drop),
         "Each head's mean drop on each task, on one scale reaching at least H5's <code>min_drop</code>."),
        ("h4-profiles", "H4 depth profiles of H1, H2 and H5 for both models",
         lambda: plots.h4_profiles((hyps.get("H4") or {}).get("summary") or {}),
         "The two models' profiles over relative-depth bins: H1 layer effect, mean H2 head effect, H5 interaction."),
    )
    for name, alt, build, caption in plot_list:
        fig = build()
        if fig is not None:
            yield name, alt, fig, caption


def _html_id(text: str) -> str:
    """A stable id (``paired-h2-heads``) that needs no quoting whatever a method or feature is called."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text)


def _plots(doc: Mapping[str, Any]) -> list[str]:
    """One section of plots per method in the document (both under ``--method both``)."""
    methods = doc["by_method"] if "by_method" in doc else {doc["method"]: doc["hypotheses"]}
    layer_fraction = ((doc.get("config") or {}).get("h3") or {}).get("layer_fraction")
    parts = []
    for method, hyps in methods.items():
        prefix = _html_id(str(method))
        figures = [f"<figure><img id='{_html_id(f'{prefix}-{name}')}' alt='{escape(alt)}' "
                   f"src='{plots.png_data_uri(fig)}'>"
                   f"<figcaption>{caption}</figcaption></figure>"
                   for name, alt, fig, caption in _method_plots(str(method), hyps, layer_fraction)]
        if figures:
            parts += [f"<h2 id='plots-{prefix}'>Plots: {escape(str(method))} method</h2><p>{_LEGEND}</p>",
                      "<div class='plots'>", *figures, "</div>"]
    return parts


def _baseline(baseline: Mapping[str, Any] | None) -> list[str]:
    """A gate run (--baseline): what fails, as `circuitgate compare` names it; what this run measured
    otherwise than its baseline; then every skill and every unit that did not simply hold, failing
    first, with the change of its effect and the decision (docs/design.md, "Gating")."""
    if not baseline:
        return []
    model = baseline.get("model") or {}
    names = baseline.get("regressions") or []
    what = "regressed or unresolved (gate.strict)" if baseline.get("strict") else "regressed"
    listed = (f"<b>{len(names)} {what}</b>: " + ", ".join(f"<code>{escape(n)}</code>" for n in names)
              if names else "nothing regressed")
    cls = "fail" if names else "pass"
    parts = [f"<p class='{cls}'>Against the baseline <code>{escape(str(baseline.get('path')))}</code> "
             f"({escape(str(model.get('name') or model.get('id')))}): {listed}.</p>"]
    if "overrides" in baseline:
        overrides = baseline["overrides"]
        parts.append("<p>Measured as the baseline was" + (
            "; overridden: " + "; ".join(f"<code>{escape(o)}</code>" for o in overrides) if overrides
            else ", nothing overridden") + ".</p>")
    if baseline.get("counts_line"):
        parts.append(f"<p>{escape(baseline['counts_line'])}.</p>")
    parts += [f"<p>note: {escape(n)}</p>" for n in baseline.get("notes") or []]
    rows = list(baseline.get("skills") or []) + list(baseline.get("decisions") or [])
    if rows:
        parts.append("<h2>Gate decisions</h2><table><tr><th>hypothesis</th><th>unit</th><th>baseline</th>"
                     "<th>this run</th><th>effect</th><th>change [interval]</th><th>margin</th><th>p (adjusted)</th>"
                     "<th>decision</th><th>why</th></tr>")
        for d in rows:
            failing = d["decision"] == "regressed" or (baseline.get("strict") and d["decision"] == "unresolved")
            ci = d.get("delta_ci")
            change = "" if d.get("delta") is None else f"{d['delta']:+.3g}" + (
                f" [{ci[0]:+.3g}, {ci[1]:+.3g}]" if ci else "")
            effect = "" if d.get("effect_before") is None and d.get("effect_after") is None else \
                f"{_fmt(d.get('effect_before'))} &rarr; {_fmt(d.get('effect_after'))}"
            parts.append(_row([escape(d["hypothesis"]), escape(d.get("unit") or ""), _fmt(d.get("before") or "absent"),
                               _fmt(d.get("after") or "absent"), effect, change, _fmt(d.get("margin")),
                               _fmt(d.get("p_adj")), _fmt(d["decision"]), _fmt(d["why"])],
                              "fail" if failing else "pass" if d["decision"] == "held" else "info"))
        parts.append("</table>")
    return parts


def _circuit(doc: Mapping[str, Any]) -> list[str]:
    """The units the expectations name as recall or reasoning (an organism's planted circuit), as each
    method found them, and what the expectations leave unasserted."""
    methods = doc["by_method"] if "by_method" in doc else {doc["method"]: doc["hypotheses"]}
    parts = []
    for method, hyps in methods.items():
        sightings = expected_circuit({h: e for h, e in hyps.items() if e.get("tested", True)})
        if not sightings:
            continue
        found = sum(s.outcome == "found" for s in sightings)
        parts.append(f"<h2>Expected circuit, as found: {escape(str(method))} method</h2><p>{found} of "
                     f"{len(sightings)} units found with their class.</p><table><tr><th>hypothesis</th><th>unit</th>"
                     "<th>expected</th><th>found</th><th>effect</th><th>interval</th><th>outcome</th></tr>")
        for s in sightings:
            ci = _interval(s.effect_ci) if s.effect_ci else ""
            parts.append(_row([escape(s.hypothesis), escape(s.component), _fmt(s.expected), _fmt(s.got),
                               _fmt(s.effect), ci, s.outcome], "pass" if s.outcome == "found" else "fail"))
        parts.append("</table>")
        notes = [f"<li>{escape(h)}: {escape(e['note'])}</li>" for h, e in hyps.items() if e.get("note")]
        if notes:
            parts.append("<p>Not asserted:</p><ul>" + "".join(notes) + "</ul>")
    return parts


def _screen(screen: Mapping[str, Any] | None, metric: str | None) -> list[str]:
    """Which H5 path ran; under the attribution screen, each confirmed target's estimated mean drops
    beside its exact ones, and what the random checks found."""
    if not screen:
        return []
    if screen["path"] != "attribution":
        return ["<h2>H5 targets</h2><p>every target measured exactly (no screen: "
                "<code>h5.screen</code> exact, or few enough targets for <code>h5.exact_max</code>).</p>"]
    checks = screen["random_checks"]

    def chosen(kind: str, fraction: float) -> str:
        c = checks[kind]
        mattered = ", ".join(escape(t) for t in c["mattered"]) or "none"
        return (f"the top {2 * screen['top_k']} per skill and {fraction * 100:g}% of the rest, {c['n']} drawn at "
                f"random, of which these mattered: {mattered}")

    groups = f" x {screen['groups']} groups" if screen.get("groups", 1) > 1 else ""
    parts = [
        "<h2>H5 screen and exact confirmation</h2>",
        f"<p>{screen['method']} screen ({screen['steps']} step(s){groups}, {escape(screen['metric'])}, "
        f"{escape(screen['ablation'])} ablation) of {screen['n_screened']} targets, {screen['n_neurons']} single "
        f"neurons included; {screen['n_confirmed']} measured exactly. Heads, sublayers and neuron sets: "
        f"{chosen('components', screen['random_fraction'])}. Single neurons: "
        f"{chosen('neurons', screen['neuron_random_fraction'])}. Only measured targets are classified.</p>",
        "<table><tr><th>target</th><th>chosen</th><th>class</th>"
        + "".join(f"<th>{side}: screen ({escape(screen['metric'])})</th><th>{side}: exact ({escape(str(metric))})</th>"
                  for side in SKILLS) + "</tr>",
    ]
    for tid, r in screen["confirmed"].items():
        est, exact = r["estimate"], r["exact"]
        parts.append(_row([escape(tid), _fmt(r["chosen"]), _fmt(r["class"]), _fmt(est["recall"]), _fmt(exact["recall"]),
                           _fmt(est["reasoning"]), _fmt(exact["reasoning"])], "info"))
    parts.append("</table>")
    return parts


def _plan(plan: Mapping[str, Any] | None) -> list[str]:
    """H5's plan, made before its first pass (circuitgate/plan.py), beside what H5 took."""
    if not plan:
        return []
    measured = plan.get("measured")
    took = (f" It took {duration(measured['seconds'])} and {gigabytes(measured['peak_bytes'])} of peak memory "
            "(the process's)." if measured else "")
    return ["<h2>H5 plan</h2>", f"<p>{escape(describe(plan))}.{escape(took)}</p>"]


def _clean_accuracy(clean: Mapping[str, float] | None) -> list[str]:
    """Whether the model can do the tasks at all: without that, H5 has nothing to impair."""
    if not clean:
        return []
    return [f"<p class='clean'>clean accuracy (whole answers, every pair): recall <b>{clean['recall']:.2f}</b>, "
            f"reasoning <b>{clean['reasoning']:.2f}</b></p>"]


def render_html(doc: Mapping[str, Any]) -> str:
    model, prompts = doc["model"], doc["prompts"]
    name = escape(str(model.get("name") or model["id"]))  # docs/design.md (Files) requires only id and sha256
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>circuitgate: {name}</title><style>{_STYLE}</style></head><body>",
        f"<h1>circuitgate report: {name}</h1>",
        f"<p>model <code>{escape(model['id'])}</code> (sha256 <code>{escape(model['sha256'][:16])}</code>), "
        f"method <b>{escape(doc['method'])}</b>, prompts <b>{escape(prompts['name'])}</b> "
        f"({prompts.get('n_pairs', '?')} pairs), expectations from {escape(doc.get('expectations', 'none'))}.</p>",
        *_clean_accuracy(doc.get("clean_accuracy")),
        "<h2>Verdicts</h2><table><tr><th>hypothesis</th><th>verdict</th><th>expected</th><th>passed</th>"
        "<th>numbers</th></tr>",
    ]
    hyps = doc["hypotheses"]
    for h, e in hyps.items():
        status = ("pass" if e["passed"] else "fail") if e.get("tested", True) else "info"
        parts.append(_row([escape(h), _fmt(e["verdict"]), _fmt(e["expected"] if e.get("tested", True) else "not tested"),
                           _fmt(e["passed"]), _fmt(summary_numbers(e["summary"]))], status))
    parts.append("</table>")
    floors = noise_floor_line(noise_floors({h: e for h, e in hyps.items() if e.get("tested", True)}))
    if floors:
        parts.append(f"<p>{escape(floors)}.</p>")
    parts += _baseline(doc.get("baseline"))
    parts += _circuit(doc)
    parts += _plots(doc)
    if "by_method" in doc:
        parts += _side_by_side(doc["by_method"])
    parts += _controls(hyps)
    if "H4" in hyps and "binned" in hyps["H4"]["summary"]:
        parts += _h4_profiles(hyps["H4"]["summary"])
    if "H5" in hyps:
        parts += _plan(hyps["H5"]["summary"].get("plan"))
        parts += _screen(hyps["H5"]["summary"].get("screen"), hyps["H5"]["summary"].get("metric"))
    for h, e in hyps.items():
        extra = _H5_COLUMNS if h == "H5" else ()
        parts.append(f"<h2>{escape(h)} components</h2><table><tr><th>component</th><th>class</th><th>expected</th>"
                     "<th>effect</th><th>p (adjusted)</th>" + "".join(f"<th>{t}</th>" for t, _ in extra) + "</tr>")
        for cid, c in e["components"].items():
            status = "info" if "passed" not in c else ("pass" if c["passed"] else "fail")
            parts.append(_row([escape(cid), _fmt(c["class"]), _fmt(c.get("expected", "")), _fmt(c["effect"]),
                               _fmt(c["p_adj"])] + [_fmt(get(c)) for _, get in extra], status))
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
