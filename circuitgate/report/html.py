"""report.html: one self-contained page from a verdicts.json document (a table of verdicts for now)."""

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
    if isinstance(x, float):
        return f"{x:.3g}"
    return escape(str(x))


def _row(cells: list[str], cls: str = "") -> str:
    return f"<tr class='{cls}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


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
        "<th>specialised</th><th>threshold</th></tr>",
    ]
    hyps = doc["hypotheses"]
    for h, e in hyps.items():
        s = e["summary"]
        parts.append(_row([escape(h), _fmt(e["verdict"]), _fmt(e["expected"]), _fmt(e["passed"]),
                           _fmt(s.get("n_specialised", "")), _fmt(s.get("threshold", ""))],
                          "pass" if e["passed"] else "fail"))
    parts.append("</table>")
    for h, e in hyps.items():
        parts.append(f"<h2>{escape(h)} components</h2><table><tr><th>component</th><th>class</th><th>expected</th>"
                     "<th>effect</th><th>p (adjusted)</th></tr>")
        for cid, c in e["components"].items():
            status = "info" if "passed" not in c else ("pass" if c["passed"] else "fail")
            parts.append(_row([escape(cid), _fmt(c["class"]), _fmt(c.get("expected", "")), _fmt(c["effect"]),
                               _fmt(c["p_adj"])], status))
        parts.append("</table>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
