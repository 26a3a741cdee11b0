"""Run reports: report.html from a verdicts.json document."""

from circuitgate.report.html import render_html

__all__ = ["render_html"]
