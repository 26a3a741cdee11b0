"""The plugin as a good pytest citizen (docs/design.md, "Command-line contract"): markers and `-k H2`
without rewriting -k, junit.xml without touching junitxml's options, acting only on the suite, options
checked as they are parsed, a header that says how to reproduce the run, xdist refused, --threads.
Run by pytester on a tiny random model, as tests/plugin/test_plugin.py."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from circuitgate import CircuitgateError

REPO = Path(__file__).resolve().parents[2]


def _verdicts(directory: Path) -> dict:
    return json.loads((directory / "verdicts.json").read_text())


def _collected(result: pytest.RunResult) -> set[str]:
    """Node ids printed by --collect-only -q."""
    return {line.split("::", 1)[1] for line in result.stdout.lines if line.startswith("hypotheses/") and "::" in line}


@pytest.fixture
def gate(suite, tmp_path):
    """A runner against a first run as baseline: every unit becomes a component test (the tiny model has
    no expectations source), H5's head targets among them (head-L0H1 contains "h1", head-L1H2 "h2")."""
    out = tmp_path / "base"
    suite("--method", "original", "--report-dir", str(out))
    baseline = out / "verdicts.json"

    def run(*args: str) -> pytest.RunResult:
        return suite("--method", "original", "--baseline", str(baseline), *args)

    return run


def test_markers_and_bare_hypothesis_keywords_select_that_hypothesis(gate, pytester):
    everything = _collected(gate("--collect-only", "-q"))
    h2 = {n for n in everything if n.startswith("test_H2")}
    assert "test_H2" in h2 and len(h2) > 1
    assert {"test_H5_ablation[head-L0H1]", "test_H5_ablation[head-L1H2]"} <= everything  # ids with h1, h2 in them
    # -m h2 (a registered marker: --strict-markers accepts it) and -k H2 select exactly H2's tests.
    assert _collected(gate("--collect-only", "-q", "-m", "h2", "--strict-markers")) == h2
    assert _collected(gate("--collect-only", "-q", "-k", "H2")) == h2
    assert _collected(gate("--collect-only", "-q", "-k", "h2")) == h2
    both = _collected(gate("--collect-only", "-q", "-k", "H1 or H2"))
    assert both == {n for n in everything if n.startswith(("test_H1", "test_H2"))}
    heads = _collected(gate("--collect-only", "-q", "-k", "H5 and head"))
    assert heads == {n for n in everything if n.startswith("test_H5_ablation[head-")}
    # Anything but a bare H1..H5 is pytest's substring rule, unchanged.
    assert _collected(gate("--collect-only", "-q", "-k", "L1H2")) == {"test_H5_ablation[head-L1H2]"}
    # -m "not h1" is exact; under `not`, -k keeps pytest's substring rule for the ids (docs/design.md).
    not_h1 = _collected(gate("--collect-only", "-q", "-m", "not h1"))
    assert not_h1 == {n for n in everything if not n.startswith("test_H1")}
    assert _collected(gate("--collect-only", "-q", "-k", "not H1")) == {n for n in not_h1 if "h1" not in n.lower()}


def test_the_k_expression_is_left_as_the_user_gave_it(suite, pytester, tiny_qwen_dir, prompt_file):
    recorder = pytester.inline_run("hypotheses", "--model", str(tiny_qwen_dir), "--prompts", str(prompt_file),
                                   "-p", "no:cacheprovider", "--collect-only", "-k", "H2 or H3")
    (call,) = recorder.getcalls("pytest_collection_modifyitems")
    assert call.config.option.keyword == "H2 or H3"
    assert call.config.option.xmlpath is None  # junitxml's option untouched: the plugin writes its own
    assert {item.name for item in call.items} == {"test_H2", "test_H3"}


def test_method_both_items_carry_their_marker(suite, tmp_path):
    result = suite("--method", "both", "-m", "h4", "--collect-only", "-q")
    assert _collected(result) == {"test_H4[paired]", "test_H4[original]"}


def test_junit_xml_goes_to_the_report_dir_unless_the_user_names_one(suite, tmp_path):
    out, mine = tmp_path / "out", tmp_path / "mine.xml"
    suite("-k", "H2", "--report-dir", str(out), "--junitxml", str(mine))
    assert mine.is_file() and not (out / "junit.xml").exists() and (out / "verdicts.json").is_file()
    cases = {c.get("name") for c in ET.parse(mine).iter("testcase")}
    assert cases == {"test_H2"}


def test_a_session_that_collects_no_suite_test_is_untouched(suite, pytester):
    """The suite's directory is there, but the session collects another file: no header, no reports,
    no junit.xml, no thread setting (the plugin decides from what was collected)."""
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    torch.set_num_threads(2)
    result = pytester.runpytest("test_plain.py", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()
    assert "circuitgate:" not in result.stdout.str()
    assert torch.get_num_threads() == 2


def test_a_directory_holding_the_suite_activates_it_but_a_session_without_its_tests_writes_nothing(suite, pytester):
    """`pytest .` reaches the suite; deselecting everything of it by --ignore leaves the session plain."""
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest(".", "--ignore", "hypotheses", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()  # its junit.xml writer was withdrawn unused


def test_the_header_says_how_to_reproduce_the_run(suite, tmp_path, tiny_qwen_dir, prompt_file):
    out = tmp_path / "out"
    result = suite("-k", "H2", "--report-dir", str(out))
    doc = _verdicts(out)
    header = [line for line in result.stdout.lines if line.startswith("circuitgate: ")]
    assert len(header) == 2, header
    # Each hash is the one the run's verdicts.json carries (the config's: of its canonical JSON).
    config_sha = hashlib.sha256(json.dumps(doc["config"], sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert header[0] == (
        f"circuitgate: model {tiny_qwen_dir.name} (weights sha256 {doc['model']['sha256'][:12]}), method paired, "
        f"prompts tiny (sha256 {doc['prompts']['sha256'][:12]}), config defaults (sha256 {config_sha[:12]})")
    assert header[1] == (f"circuitgate: reproduce: pytest hypotheses --model {tiny_qwen_dir} --method paired "
                         f"--prompts {prompt_file} --device cpu --dtype float32 -k H2")


def test_the_header_says_when_the_cpu_defaults_apply(suite, tmp_path):
    """A local model without registry settings whose default H5 would screen (8 layers x 10 targets > 64)
    runs on the CPU with the registry's cpu_config, and the header says so (only its config is read)."""
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8, hidden_size=32, intermediate_size=32,
                vocab_size=64).save_pretrained(tmp_path / "big")
    over = tmp_path / "c.yaml"
    over.write_text("h5: {top_k: 6}\n")
    for args, settings in (((), "config the CPU defaults"), (("--config", str(over)), f"config {over} over the CPU defaults")):
        result = suite("--model", str(tmp_path / "big"), "--device", "cpu", "--collect-only", *args)
        header = [line for line in result.stdout.lines if line.startswith("circuitgate: model")]
        assert f"{settings} (registry cpu_config: a CPU-sized H5 for a model without registry settings)" in header[0]


@pytest.mark.parametrize(("args", "message"), [
    (["--method", "sound"], "--method: unknown method 'sound' (known: paired, original, both)"),
    (["--dtype", "int8"], "--dtype: unknown dtype 'int8' (known: auto, float32, bfloat16, float16)"),
    (["--device", "tpu"], "--device: unknown device 'tpu' (known: auto, cpu, cuda)"),
    (["--threads", "none"], "--threads must be a positive integer or auto, got 'none'"),
    (["--batch-size", "-3"], "--batch-size must be a positive integer or auto, got '-3'"),
])
def test_option_values_are_checked_as_they_are_parsed(pytester, args, message):
    """One line, exit status 4, before any plugin configures (no hypotheses/ needed)."""
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == f"ERROR: {message}"
    assert "usage:" not in result.stderr.str() and "Traceback" not in result.stderr.str()


def _plugin(pytester: pytest.Pytester, name: str, source: str) -> None:
    pytester.makepyfile(**{name: textwrap.dedent(source)})
    pytester.syspathinsert()


def test_xdist_is_refused_with_one_line(suite, pytester):
    # What pytest-xdist's own pytest_cmdline_main does for -n 2 (it is not installed here).
    _plugin(pytester, "fake_xdist", """
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_cmdline_main(config):
            config.option.dist = "load"
    """)
    result = suite("-p", "fake_xdist")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: circuitgate: the hypotheses suite cannot run under pytest-xdist (-n/--dist)*"])


def test_an_xdist_worker_writes_no_report(suite, pytester, tmp_path):
    _plugin(pytester, "fake_worker", """
        import pytest

        @pytest.hookimpl(tryfirst=True)
        def pytest_cmdline_main(config):
            config.workerinput = {"workerid": "gw0"}
    """)
    out = tmp_path / "out"
    result = suite("-p", "fake_worker", "-k", "H2", "--report-dir", str(out))
    assert result.parseoutcomes().get("failed", 0) + result.parseoutcomes().get("passed", 0) == 1
    assert not out.exists()  # neither junit.xml nor the circuitgate files: the controller's to write


@pytest.mark.parametrize(("args", "inside"), [([], 1), (["--threads", "3"], 3)])
def test_threads_are_set_for_the_session_and_restored(suite, pytester, args, inside):
    _plugin(pytester, "report_threads", """
        import torch

        def pytest_report_collectionfinish(config, start_path, items):
            return f"threads during the session: {torch.get_num_threads()}"
    """)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        result = suite("-p", "report_threads", "--collect-only", "-q", *args)
        result.stdout.fnmatch_lines([f"threads during the session: {inside}"])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_user_error_while_computing_fails_the_test_with_one_line():
    """Raised inside the handler, pytest.fail would print the CircuitgateError too ("During handling
    of the above exception ...")."""
    from circuitgate.fixtures.circuitgate import result_of

    class Run:
        tested: set = set()

        def result(self, hypothesis, method):
            try:
                raise KeyError("deep inside")
            except KeyError:
                raise CircuitgateError("weights are missing") from None

    config = SimpleNamespace(pluginmanager=SimpleNamespace(getplugin=lambda name: None))
    with pytest.raises(pytest.fail.Exception) as info:
        result_of(config, Run(), "H1", "paired")
    assert str(info.value) == "circuitgate: weights are missing" and info.value.__suppress_context__
    assert not info.value.pytrace


def test_hypothesis_of_reads_the_function_then_the_module():
    from circuitgate.plugin.verdicts import SESSION_KEY, hypothesis_of

    # The suite is told by where a test's file is: here, the checkout's hypotheses/.
    config = SimpleNamespace(stash={SESSION_KEY: SimpleNamespace(suite=(REPO / "hypotheses",))})

    def item(nodeid, name, path):
        return SimpleNamespace(nodeid=nodeid, name=name, originalname=re.sub(r"\[.*", "", name), path=REPO / path,
                               config=config)

    assert hypothesis_of(item("hypotheses/test_h2_heads.py::test_H2_head[L07H12]", "test_H2_head[L07H12]",
                              "hypotheses/test_h2_heads.py")) == "H2"
    assert hypothesis_of(item("hypotheses/test_h1_layers.py::test_H1[original]", "test_H1[original]",
                              "hypotheses/test_h1_layers.py")) == "H1"
    assert hypothesis_of(item("hypotheses/test_h3_neurons.py::test_other", "test_other",
                              "hypotheses/test_h3_neurons.py")) == "H3"
    assert hypothesis_of(item("tests/test_h2_x.py::test_H2", "test_H2", "tests/test_h2_x.py")) is None
