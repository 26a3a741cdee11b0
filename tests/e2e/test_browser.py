"""report.html in a real browser (headless Chromium): every plot decodes and shows in a screenshot, on
a synthetic organism-sized page with both methods and on a Qwen2.5-7B-sized one."""

from __future__ import annotations

import pytest

from circuitgate.report import render_html

from browser import assert_renders_every_plot
from documents import document

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("page", [("both", {}), ("paired", {"n_layers": 28, "n_heads": 28})], ids=["organism-both", "7b-paired"])
def test_chromium_renders_every_plot(chromium, tmp_path, page):
    method, shape = page
    assert_renders_every_plot(chromium, render_html(document(method, **shape)), tmp_path)
