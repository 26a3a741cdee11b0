"""report.html: one self-contained page from a verdicts.json document: the verdicts (under ``--method
both`` each method's, side by side), the template controls behind a "confounded by template" verdict,
H4's two depth profiles side by side, and every hypothesis's components (tables; plots are issue 5's)."""

from __future__ import annotations

from html import escape
from typing import Any, Mapping

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f3f3f3; }
.pass { background: #e6f4e6; } .fail { background: #fbe3e3; } .info { background: #fff; }
code { font-size: 12px; }
"""


def _fmt(x: Any) -> str:
    if x is None:  # null in verdicts.json: no value (a non-finite number, or no p-value for H5)
        return ""
    if isinstance(x, float):
        return f"{x:.3g}"
    return escape(str(x))


def _row(cells: list[str], cls: str = "") -> str:
    return f"<tr class='{cls}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _numbers(summary: Mapping[str, Any]) -> str:
    """Why an inconclusive verdict is one, else the headline, else the counts the summary has."""
    if "reason" in summary or "headline" in summary:
        return str(summary.get("reason") or summary["headline"])
    return ", ".join(f"{label} {summary[key]}" for key, label in _COUNTS if key in summary)


_COUNTS = (("n_specialised", "specialised"), ("n_recall", "recall"), ("n_reasoning", "reasoning"),
           ("n_mixed", "mixed"), ("threshold", "threshold"))


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
    rows = [f"<h2>H4 depth profiles</h2><p>{escape(_numbers(summary))}</p><table><tr><th>depth bin</th>{head}</tr>"]
    for b in range(summary["n_bins"]):
        rows.append(_row([f"D{b}"] + [_fmt(summary["binned"][m][k][b]) for m in models for k in kinds]))
    rows.append("</table>")
    return rows


def _side_by_side(by_method: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """--method both: one row per hypothesis, one verdict column per method (issue 4)."""
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
            cells += [_fmt(e["verdict"]) + mark, _fmt(_numbers(e["summary"]))]
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


def render_html(doc: Mapping[str, Any]) -> str:
    model, prompts = doc["model"], doc["prompts"]
    name = escape(str(model.get("name") or model["id"]))  # DESIGN.md requires only id and sha256
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>circuitgate: {name}</title><style>{_STYLE}</style></head><body>",
        f"<h1>circuitgate report: {name}</h1>",
        f"<p>model <code>{escape(model['id'])}</code> (sha256 <code>{escape(model['sha256'][:16])}</code>), "
        f"method <b>{escape(doc['method'])}</b>, prompts <b>{escape(prompts['name'])}</b> "
        f"({prompts.get('n_pairs', '?')} pairs), expectations from {escape(doc.get('expectations', 'none'))}.</p>",
        "<h2>Verdicts</h2><table><tr><th>hypothesis</th><th>verdict</th><th>expected</th><th>passed</th>"
        "<th>numbers</th></tr>",
    ]
    hyps = doc["hypotheses"]
    for h, e in hyps.items():
        status = ("pass" if e["passed"] else "fail") if e.get("tested", True) else "info"
        parts.append(_row([escape(h), _fmt(e["verdict"]), _fmt(e["expected"] if e.get("tested", True) else "not tested"),
                           _fmt(e["passed"]), _fmt(_numbers(e["summary"]))], status))
    parts.append("</table>")
    if "by_method" in doc:
        parts += _side_by_side(doc["by_method"])
    parts += _controls(hyps)
    if "H4" in hyps and "binned" in hyps["H4"]["summary"]:
        parts += _h4_profiles(hyps["H4"]["summary"])
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
