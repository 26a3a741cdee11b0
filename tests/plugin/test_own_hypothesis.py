"""A project's own hypothesis (docs/own-hypothesis.md): an out-of-tree project that only installs
circuitgate opts its folder in (``circuitgate_suites``), defines a hypothesis with circuitgate.api
and has it judged, summarised and recorded like H1-H5. The worked example is run from docs/ itself,
so the page cannot drift from what runs."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "own-hypothesis"

H7 = '''
    from circuitgate import api

    @api.hypothesis("H7", expected="inconclusive", components={"L00H03": "reasoning", "L01H03": "recall"})
    def h7(model):
        """Do heads tell the tiny prompt set's two sides apart? (paired statistics on H2's head metrics)"""
        recall, reasoning = model.sides()
        return api.paired_units("H7", api.head_metrics(recall), api.head_metrics(reasoning),
                                api.head_ids(model.shape), model.config, orientation=api.HEAD_ORIENTATION)

    def test_H7(h7, judge):
        judge.hypothesis(h7)

    @pytest.mark.parametrize("unit", ["L00H03", "L01H03", "L01H02"])
    def test_H7_head(h7, unit, judge):
        judge.component(h7, unit)
'''


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path, monkeypatch) -> pytest.Pytester:
    """An out-of-tree project: its ini opts the folder ``own`` in; nothing of circuitgate's checkout."""
    pytester.makeini("[pytest]\ncircuitgate_suites = own\n")
    (pytester.path / "own").mkdir()
    (pytester.path / "own" / "test_h7.py").write_text("import pytest\n" + textwrap.dedent(H7))
    monkeypatch.setenv("CIRCUITGATE_CACHE", str(tmp_path / "cache"))
    return pytester


def test_an_opted_in_folder_gets_the_fixtures_and_its_hypothesis_is_recorded(project, tiny_qwen_dir, prompt_file,
                                                                            tmp_path):
    out = tmp_path / "out"
    result = project.runpytest("own", "--model", str(tiny_qwen_dir), "--prompts", str(prompt_file), "--threads", "1",
                               "--report-dir", str(out), "-p", "no:cacheprovider")
    # The verdict as expected; a unit as stated passes, one stated otherwise fails, one not stated fails.
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*H7 L01H03 is none, expected recall*", "*H7 states no expected class for L01H02*",
                                 "H7  inconclusive  expected inconclusive  PASS  the prompt set has no controls*"])
    h7 = json.loads((out / "verdicts.json").read_text())["hypotheses"]["H7"]
    assert (h7["verdict"], h7["expected"], h7["passed"], h7["tested"]) == ("inconclusive", "inconclusive", True, True)
    assert h7["components"]["L00H03"]["class"] == "reasoning" and h7["components"]["L00H03"]["passed"]
    assert len(h7["components"]) == 8  # every head of the 2 x 4, classed by the paired method
    assert (out / "junit.xml").is_file() and "H7" in (out / "report.html").read_text()


def test_the_config_expectation_overrides_the_definition(project, tiny_qwen_dir, prompt_file, tmp_path):
    config = tmp_path / "expect.yaml"
    config.write_text("expected: {H7: supported}\n")
    result = project.runpytest("own", "-k", "test_H7 and not head", "--model", str(tiny_qwen_dir), "--prompts",
                               str(prompt_file), "--threads", "1", "--config", str(config),
                               "--report-dir", str(tmp_path / "out"), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*H7 is inconclusive, expected supported*"])


def test_a_session_that_reaches_no_suite_stays_light(project):
    """The opt-in adds a suite; another folder of the same project still never imports torch."""
    project.makepyfile(test_plain="""
        import sys

        def test_ok():
            assert "torch" not in sys.modules and "nnsight" not in sys.modules
    """)
    result = project.runpytest_subprocess("test_plain.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (project.path / "reports").exists()


def test_a_misspelt_suite_is_a_one_line_usage_error(project):
    project.makeini("[pytest]\ncircuitgate_suites = own\n    hypothesis\n")
    result = project.runpytest("own", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: circuitgate_suites: not a directory: {project.path / 'hypothesis'}"])


@pytest.mark.slow  # builds the organism into the session's cache (about 100 s) unless it is there
def test_the_worked_example_runs_as_its_page_says(pytester, organism_family, tmp_path):
    """docs/own-hypothesis.md's H6 on the built-in organism: recall-selective sublayers only in layer 1,
    reasoning-selective ones in layers 2 and 3, as the organism's plan places them (docs/organism.md)."""
    organism_family["organism"]
    shutil.copytree(EXAMPLE, pytester.path, dirs_exist_ok=True)
    out = tmp_path / "out"
    args = ("my_hypotheses", "--prompts", "my_hypotheses/pairs.yaml", "--threads", "1", "-p", "no:cacheprovider")
    result = pytester.runpytest(*args, "--report-dir", str(out))
    result.assert_outcomes(passed=1)
    h6 = json.loads((out / "verdicts.json").read_text())["hypotheses"]["H6"]
    assert (h6["verdict"], h6["passed"]) == ("supported", True)
    assert (h6["summary"]["recall_layers"], h6["summary"]["reasoning_layers"]) == ([1], [2, 3])
    classes = {u: c["class"] for u, c in h6["components"].items()}
    assert classes == {"attn-L0": "mixed", "mlp-L0": "mixed", "attn-L1": "recall", "mlp-L1": "recall",
                       "attn-L2": "reasoning", "mlp-L2": "reasoning", "attn-L3": "none", "mlp-L3": "reasoning"}
    # Expected otherwise by the run's config, the same measurement fails its test.
    config = tmp_path / "expect.yaml"
    config.write_text("expected: {H6: not_supported}\n")
    failed = pytester.runpytest(*args, "--config", str(config), "--report-dir", str(tmp_path / "again"))
    failed.assert_outcomes(failed=1)
    failed.stdout.fnmatch_lines(["*H6 is supported, expected not_supported*"])
