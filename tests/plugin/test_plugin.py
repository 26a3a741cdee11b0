"""The verdict plugin, run inside pytest by pytester on a tiny random model (no organism needed)."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from circuitgate.judging import SCHEMA

REPO = Path(__file__).resolve().parents[2]


def _verdicts(directory: Path) -> dict:
    return json.loads((directory / "verdicts.json").read_text())


def test_writes_the_four_files_and_a_summary(suite, tmp_path):
    out = tmp_path / "out"
    result = suite("--report-dir", str(out))
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "manifest.json", "report.html", "verdicts.json"]
    doc = _verdicts(out)
    assert doc["schema"] == SCHEMA and doc["method"] == "paired"  # the default
    assert doc["prompts"]["name"] == "tiny" and len(doc["prompts"]["sha256"]) == 64
    assert len(doc["model"]["sha256"]) == 64
    assert set(doc["hypotheses"]) == {"H1", "H2", "H3", "H4", "H5"}
    assert all(h["tested"] for h in doc["hypotheses"].values())
    # A model without a registry twin cannot be compared across architectures: H4 says so.
    assert doc["hypotheses"]["H4"]["verdict"] == "inconclusive"
    assert "--h4-model" in doc["hypotheses"]["H4"]["summary"]["reason"]
    # A schema-1 prompt set has no controls, so the paired method cannot rule out a template confound.
    for h in ("H1", "H2", "H3"):
        assert doc["hypotheses"][h]["verdict"] == "inconclusive", h
        assert "no controls" in doc["hypotheses"][h]["summary"]["reason"]
    for h in doc["hypotheses"].values():
        assert h["verdict"] in ("supported", "not_supported", "inconclusive")
        assert h["expected"] == "supported"  # no expectations source, no config: the default
        assert h["passed"] == (h["verdict"] == "supported")
    assert set(doc["hypotheses"]["H1"]["components"]) == {"L00", "L01"}
    assert len(doc["hypotheses"]["H2"]["components"]) == 8
    n_passed = sum(h["passed"] for h in doc["hypotheses"].values())
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) == n_passed and outcomes.get("failed", 0) == 5 - n_passed
    result.stdout.fnmatch_lines(["*circuitgate verdicts*", "H1 *expected supported*", "H2 *", "H3 *",
                                 "H4  inconclusive *no registry twin*", "H5 *", f"report: {out / 'report.html'}"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["device"] == "cpu" and manifest["packages"]["torch"]
    assert manifest["threads"] == 1 and manifest["settings"]["threads"] == "auto"  # --threads auto on a CPU
    assert manifest["peak_memory"]["rss_bytes"] > 100 * 2**20  # the process, torch and a model are resident
    assert manifest["prompts"]["sha256"] == doc["prompts"]["sha256"]
    assert "<table>" in (out / "report.html").read_text()


def test_junit_carries_verdict_properties(suite, tmp_path):
    out = tmp_path / "out"
    suite("--report-dir", str(out))
    cases = {c.get("name"): c for c in ET.parse(out / "junit.xml").getroot().iter("testcase")}
    props = {p.get("name"): p.get("value") for p in cases["test_H1"].iter("property")}
    assert props["verdict"] == _verdicts(out)["hypotheses"]["H1"]["verdict"]
    assert props["expected"] == "supported" and "n_specialised" in props


def test_expected_verdicts_from_config_decide_pass_and_fail(suite, tmp_path):
    first = tmp_path / "first"
    suite("--report-dir", str(first))
    actual = {h: e["verdict"] for h, e in _verdicts(first)["hypotheses"].items()}
    agree = tmp_path / "agree.yaml"
    agree.write_text("expected: " + json.dumps(actual) + "\n")
    # No expectations source: component and figure tests have no ids, so they are deselected, and so is
    # test_skill, which only a gate has.
    suite("--report-dir", str(tmp_path / "a"), "--config", str(agree)).assert_outcomes(passed=5, deselected=9)
    flipped = {h: ("inconclusive" if v != "inconclusive" else "supported") for h, v in actual.items()}
    disagree = tmp_path / "disagree.yaml"
    disagree.write_text("expected: " + json.dumps(flipped) + "\n")
    result = suite("--report-dir", str(tmp_path / "d"), "--config", str(disagree))
    result.assert_outcomes(failed=5, deselected=9)
    result.stdout.fnmatch_lines([f"*H1 is {actual['H1']}, expected {flipped['H1']}*"])
    assert result.ret == 1


def test_k_selects_only_what_the_hypothesis_needs(suite, tmp_path):
    out = tmp_path / "out"
    suite("-k", "H2", "--report-dir", str(out))
    assert set(_verdicts(out)["hypotheses"]) == {"H2"}


def test_k_h5_computes_h3_as_its_input_without_judging_it(suite, tmp_path):
    out = tmp_path / "out"
    result = suite("-k", "H5", "--report-dir", str(out))
    doc = _verdicts(out)["hypotheses"]
    assert set(doc) == {"H3", "H5"} and doc["H5"]["tested"] and not doc["H3"]["tested"]
    result.stdout.fnmatch_lines(["H3 *(computed as an input, not tested)*", "H5 *expected supported*"])
    # The plan, made before H5's first pass, is recorded beside what H5 took, and shown (circuitgate/plan.py).
    plan = doc["H5"]["summary"]["plan"]
    assert plan["path"] == "exact" and plan["targets"] == doc["H5"]["summary"]["n_targets"] + len(doc["H5"]["summary"]["h3_sets"])
    assert plan["sweep_max_rows"] == 2048 and plan["seconds"] > 0 and plan["measured"]["peak_bytes"] > plan["weights_bytes"]
    result.stdout.fnmatch_lines(["H5 plan: * targets on 30 pairs, * sweep rows a pass; estimated *; took *"])
    assert "<h2>H5 plan</h2>" in (out / "report.html").read_text()
    assert result.parseoutcomes().get("passed", 0) + result.parseoutcomes().get("failed", 0) == 1


def test_rerun_gives_identical_verdicts(suite, tmp_path):
    suite("--report-dir", str(tmp_path / "a"))
    suite("--report-dir", str(tmp_path / "b"))
    a, b = (_verdicts(tmp_path / run) for run in "ab")
    # H5's plan records this machine (the time it measured, the memory it found): the one part that differs.
    for doc in (a, b):
        assert doc["hypotheses"]["H5"]["summary"].pop("plan")["targets"] > 0
    assert a == b


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-model"], "*unknown model 'no-such-model'*organism, organism-llama, organism-null, smollm2, gemma3-270m, qwen7b*"),
        (["--prompts", "no-such-set"], "*unknown prompt set 'no-such-set'*"),
        (["--config", "missing.yaml"], "*config file not found: missing.yaml*"),
        (["--batch-size", "0"], "*--batch-size must be a positive integer or auto, got '0'*"),
    ],
)
def test_bad_input_is_a_one_line_usage_error(suite, args, message):
    result = suite(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_malformed_prompt_file_names_file_and_line(suite, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: 1\nname: bad\npairs:\n  - id: a\n    recall: {prompt: x, answer: y}\n")
    result = suite("--prompts", str(bad))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {bad}:4: pair 'a': unpaired, missing reasoning"])


def test_missing_hub_weights_fail_before_any_test(pytester, suite, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    result = suite("--model", "qwen7b")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: model 'qwen7b' (Qwen/Qwen2.5-7B-Instruct): weights not in the Hugging Face cache*"])
    assert "passed" not in result.stdout.str()


def test_own_tests_are_untouched_by_the_plugin(pytester):
    """A session that does not collect hypotheses/ writes no report, needs no model, and (in a process
    of its own) never imports torch or nnsight: the installed entry point stays light for every other
    project's tests."""
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    pytester.makepyfile(test_plain="""
        import sys

        def test_ok(pytestconfig):
            assert pytestconfig.pluginmanager.has_plugin("circuitgate")  # the pytest11 entry point
            assert "torch" not in sys.modules and "nnsight" not in sys.modules
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert not (pytester.path / "reports").exists()


def test_h4_model_option_compares_with_another_family(suite, tmp_path):
    from conftest import build_tiny_model

    llama = build_tiny_model(tmp_path / "tiny-llama", "llama")
    out = tmp_path / "out"
    result = suite("-k", "H4", "--h4-model", str(llama), "--report-dir", str(out))
    doc = _verdicts(out)
    h4 = doc["hypotheses"]["H4"]
    # Two layers each: 2 depth bins, and no permutation p-value below 1/2! -> inconclusive, saying why.
    assert h4["verdict"] == "inconclusive" and "1/2!" in h4["summary"]["reason"]
    assert h4["summary"]["models"][1] == "tiny-llama" and set(h4["summary"]["binned"]["tiny-llama"]) == {"H1", "H2", "H5"}
    assert list(h4["components"]) == ["D0", "D1"]
    assert doc["h4_model"]["family"] == "llama"
    result.stdout.fnmatch_lines(["H4  inconclusive *1/2!*"])
    result.assert_outcomes(failed=1)  # no expectations for the depth bins: no component tests (deselected)


@pytest.fixture(scope="module")
def controlled_prompt_file(tmp_path_factory) -> Path:
    """Schema 2: 24 length-matched pairs plus controls of both tasks (the same task, two templates)."""
    import random

    rng = random.Random(1)

    def words(n: int) -> str:
        return " ".join(f"w{rng.randrange(3, 61)}" for _ in range(n))

    lines = ["schema: 2", "name: tiny-controlled", "pairs:"]
    for i in range(24):
        lines += [f"  - id: p{i}", f"    recall: {{prompt: '{words(6)}', answer: w1}}",
                  f"    reasoning: {{prompt: '{words(6)}', answer: w2}}"]
    lines.append("controls:")
    for task, answer in (("recall", "w1"), ("reasoning", "w2")):
        for i in range(24):
            lines += [f"  - id: c{i}-{task}", f"    task: {task}",
                      f"    a: {{prompt: '{words(6)}', answer: {answer}, template: t0}}",
                      f"    b: {{prompt: '{words(6)}', answer: {answer}, template: t1}}"]
    path = tmp_path_factory.mktemp("prompts") / "tiny-controlled.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_method_both_judges_each_method_and_reports_them_side_by_side(suite, controlled_prompt_file, tmp_path):
    out = tmp_path / "out"
    result = suite("-k", "H1 or H3", "--method", "both", "--prompts", str(controlled_prompt_file),
                   "--report-dir", str(out), "-v")
    # every hypothesis test once per method; node ids name the method, never the model
    result.stdout.fnmatch_lines(["*test_H1?paired? *", "*test_H1?original? *",
                                 "*test_H3?original? *"])
    doc = _verdicts(out)
    assert doc["method"] == "both" and set(doc["by_method"]) == {"paired", "original"}
    assert doc["hypotheses"] == doc["by_method"]["paired"]  # the sound method leads
    for method, entries in doc["by_method"].items():
        assert set(entries) == {"H1", "H3"}
        assert all(e["method"] == method for e in entries.values())
    # the paired method ran its controls; the seed method never saw them
    controls = doc["by_method"]["paired"]["H1"]["summary"]["controls"]
    assert set(controls) == {"recall", "reasoning"} and controls["recall"]["n_pairs"] == 24
    assert "controls" not in doc["by_method"]["original"]["H1"]["summary"]
    result.stdout.fnmatch_lines(["*circuitgate verdicts (*, method paired)*", "H1 *", "H3 *",
                                 "*circuitgate verdicts (*, method original)*", "H1 *", "H3 *"])
    html = (out / "report.html").read_text()
    assert "Methods side by side" in html and "Template controls" in html
    assert json.loads((out / "manifest.json").read_text())["methods"] == ["paired", "original"]


# -- --baseline ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("base")


@pytest.fixture
def baseline(suite, baseline_dir) -> Path:
    """A first run's verdicts.json under --method original (the tiny set has no controls, so paired is
    inconclusive everywhere; original gives classes to regress from). Made once for the module (the
    model and prompt file are the session's; no test edits it in place)."""
    path = baseline_dir / "verdicts.json"
    if not path.exists():
        suite("--method", "original", "--report-dir", str(baseline_dir))
    return path


def test_a_run_against_its_own_baseline_passes_every_test(suite, baseline, tmp_path):
    out = tmp_path / "again"
    result = suite("--method", "original", "--baseline", str(baseline), "--report-dir", str(out))
    base = json.loads(baseline.read_text())
    # One component test per component the baseline holds, and one per skill; none may fail.
    n_components = sum(len(e["components"]) for e in base["hypotheses"].values())
    # Deselected: three figure tests (no figures for this model), H4's depth bins (inconclusive, none).
    result.assert_outcomes(passed=5 + n_components + 2, deselected=4)
    doc = _verdicts(out)
    assert doc["expectations"] == f"baseline {baseline} ({base['model']['name']})"
    assert doc["baseline"]["path"] == str(baseline) and doc["baseline"]["model"]["sha256"] == base["model"]["sha256"]
    assert doc["baseline"]["regressions"] == [] and "nothing regressed" in (out / "report.html").read_text()
    assert all(e["passed"] and e["expected"] == base["hypotheses"][h]["verdict"] for h, e in doc["hypotheses"].items())
    result.stdout.fnmatch_lines(["H1 *baseline *PASS*", f"baseline {baseline}: nothing regressed"])


def test_a_class_that_changed_with_its_effect_fails_and_one_whose_effect_held_passes(suite, baseline, tmp_path):
    """The gate decides on change, not on class (docs/design.md, "Gating"): the baseline edited so
    that layer L00 had another class and an effect far from this run's (a tight interval: the original
    method's H1 carries one), and L01 another class with its own effect; and H2's verdict flipped
    though its classes say otherwise."""
    base = json.loads(baseline.read_text())
    h1 = base["hypotheses"]["H1"]["components"]
    l00, l01 = h1["L00"], h1["L01"]
    was_l00, was_l01 = l00["class"], l01["class"]
    l00.update({"class": "mixed" if was_l00 != "mixed" else "none", "effect": l00["effect"] + 10,
                "effect_ci": [l00["effect"] + 9.9, l00["effect"] + 10.1]})
    l01["class"] = "mixed" if was_l01 != "mixed" else "none"
    h2 = base["hypotheses"]["H2"]
    was_h2 = h2["verdict"]
    h2["verdict"] = "not_supported" if was_h2 != "not_supported" else "supported"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(base))
    result = suite("--method", "original", "--baseline", str(edited), "--report-dir", str(tmp_path / "cand"))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert result.parseoutcomes()["failed"] == 2
    # Each failure's section and message (the short summary may truncate; the order may be random).
    result.stdout.fnmatch_lines([
        "*_ test_H1_layer?L00? _*",
        f"H1 L00 regressed: {l00['class']} -> {was_l00}, effect * (class changed and the effect moved beyond the "
        "margin 1)"])
    result.stdout.fnmatch_lines([
        "*_ test_H2 _*", f"H2 regressed: {h2['verdict']} -> {was_h2} (the baseline's verdict does not follow from "
                         "its classes by the count rule: judged by the verdict)"])
    result.stdout.fnmatch_lines([f"baseline {edited}: 2 regressed"])
    doc = _verdicts(tmp_path / "cand")
    assert doc["baseline"]["regressions"] == ["H2", "H1 L00"] and doc["baseline"]["path"] == str(edited)
    assert doc["hypotheses"]["H1"]["components"]["L01"]["gate"]["decision"] in ("held", "unresolved")
    assert doc["hypotheses"]["H1"]["components"]["L01"]["passed"]
    assert "<b>2 regressed</b>: <code>H2</code>, <code>H1 L00</code>" in (tmp_path / "cand" / "report.html").read_text()


def test_a_gate_is_measured_as_its_baseline_was_and_names_what_it_overrides(suite, tmp_path):
    """No --method and no --config: the gate takes both from its baseline (a directory of a registry
    model gates as its alias did); a --config on top is an override, named in the header and the
    documents."""
    settings = tmp_path / "settings.yaml"
    settings.write_text("h5: {n_boot: 500}\ngate: {resamples: 3}\n")
    base = tmp_path / "base"
    suite("--method", "original", "--config", str(settings), "--report-dir", str(base), "-k", "H1")
    again = tmp_path / "again"
    result = suite("--baseline", str(base / "verdicts.json"), "--report-dir", str(again), "-k", "H1")
    doc = _verdicts(again)
    assert doc["method"] == "original" and doc["config"] == _verdicts(base)["config"]
    assert doc["baseline"]["overrides"] == []
    result.stdout.fnmatch_lines(["*config the baseline's settings*",
                                 f"circuitgate: gate on {base / 'verdicts.json'}: measured as the baseline was, "
                                 "nothing overridden"])
    over = tmp_path / "over.yaml"
    over.write_text("h5: {n_boot: 400}\n")
    result = suite("--baseline", str(base / "verdicts.json"), "--config", str(over), "--report-dir",
                   str(tmp_path / "over"), "-k", "H1")
    result.stdout.fnmatch_lines(["*config * over the baseline's settings*", "*overridden: h5.n_boot 500 -> 400"])
    doc = _verdicts(tmp_path / "over")
    assert doc["baseline"]["overrides"] == ["h5.n_boot 500 -> 400"] and doc["config"]["gate"]["resamples"] == 3
    assert "h5.n_boot 500 -&gt; 400" in (tmp_path / "over" / "report.html").read_text()


def test_a_baseline_from_before_schema_3_gates_by_the_old_rule_and_says_so(suite, baseline, tmp_path):
    old = json.loads(baseline.read_text())
    old["schema"] = 2
    for entry in old["hypotheses"].values():
        entry.pop("uncertainty", None)
        for c in entry["components"].values():
            c.pop("pair_values", None), c.pop("replicates", None)
    old.pop("clean_correct")
    legacy = tmp_path / "legacy.json"
    legacy.write_text(json.dumps(old))
    result = suite("--baseline", str(legacy), "--report-dir", str(tmp_path / "cand"), "-k", "H1 or H2")
    assert result.ret == pytest.ExitCode.OK
    assert result.stdout.str().count("judged by the old rule") == 1  # said once, in the header
    assert "test_skill" not in result.stdout.str()  # no record of the pairs answered: no skill tests
    doc = _verdicts(tmp_path / "cand")
    assert any("judged by the old rule" in n for n in doc["baseline"]["notes"])


def test_a_candidate_of_another_shape_is_refused_before_any_work(suite, baseline, tmp_path):
    doc = json.loads(baseline.read_text())
    doc["model"]["shape"]["n_layers"] += 1
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    result = suite("--baseline", str(other))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --baseline * was made on a model of another shape: model shape: baseline "
                                 "3 layers x 4 heads*, this model 2 layers x 4 heads*"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(method="paired"), "*was made with another method: baseline paired, this run original"),
    (lambda d: d.update(schema=1), "*was made with another schema: baseline 1, this run 3"),
    (lambda d: d["prompts"].update(sha256="00" * 32),
     "*was made with another prompt set: baseline tiny (sha256 000000000000), this run tiny (sha256 *)"),
    (lambda d: d.pop("hypotheses"), "*--baseline: * is not a circuitgate verdicts.json (no hypotheses)"),
])
def test_a_baseline_of_another_kind_is_a_usage_error_saying_which(suite, baseline, tmp_path, edit, message):
    doc = json.loads(baseline.read_text())
    edit(doc)
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    result = suite("--method", "original", "--baseline", str(other))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


def test_a_missing_baseline_is_a_usage_error(suite, tmp_path):
    result = suite("--baseline", str(tmp_path / "nope.json"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --baseline: no such file: {tmp_path / 'nope.json'}"])


def test_the_paper_figures_are_tests_of_the_seed_method(pytester, suite):
    """`--model qwen7b --method seed` collects the paper's classifications and headline figures as
    tests whose ids hold no model (collecting needs no weights)."""
    result = suite("--model", "qwen7b", "--method", "original", "--collect-only", "-q")
    out = result.stdout.str()
    for node in ("test_H1_layer[L03]", "test_H2_head[L26H05]", "test_H1_figure[n_specialised]",
                 "test_H2_figure[top_recall]", "test_H3_figure[n_task_specific]",
                 "test_H3_figure[most_specialised_layer.fraction]"):
        assert node in out, node
    assert "qwen" not in "".join(line.split("::")[-1] for line in out.splitlines() if "::" in line)


def test_the_judge_holds_a_figure_to_its_tolerance_under_its_method_only():
    from types import SimpleNamespace

    from circuitgate.expectations import Expectations, Figure
    from circuitgate.results import HypothesisResult
    from circuitgate.fixtures.circuitgate import Judge

    source = Expectations("the paper", figures={"H3": {"n": Figure(100, rel=0.05)}}, figures_method="original")
    run = SimpleNamespace(expectations=source)
    node = SimpleNamespace(user_properties=[])
    result = lambda n: HypothesisResult("H3", "supported", "original", {"n": n}, {})  # noqa: E731
    Judge(node, run, "original").figure(result(104), "n")
    assert ("value", 104) in node.user_properties and ("tolerance", 5.0) in node.user_properties
    with pytest.raises(pytest.fail.Exception, match=r"H3 n is 106, reported 100 \+/- 5 \(the paper\)"):
        Judge(node, run, "original").figure(result(106), "n")
    with pytest.raises(pytest.skip.Exception, match="the reported figures are the original method's; this is paired's"):
        Judge(node, run, "paired").figure(result(106), "n")
    with pytest.raises(pytest.fail.Exception, match="H3 has no n in its summary"):
        Judge(node, run, "original").figure(HypothesisResult("H3", "supported", "original", {}, {}), "n")
