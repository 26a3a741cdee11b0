"""End to end: the real suite (`pytest hypotheses`) in a subprocess, on the organism family (the
session's own cache) and on local HF directories of both families. The default run must be green and
show the planted circuit; verdicts must line up with the organism's ground truth, H5's causal
measurements with the ground truth's own (torch hooks, not nnsight), the JUnit outcomes with
verdicts.json; the gate must pass every harmless candidate and fail every harmful one naming the
damage, exactly where `circuitgate compare` says it regressed."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from circuitgate.config import Config
from circuitgate.expectations import from_ground_truth, h4_from_ground_truths
from circuitgate.models.adapters import Shape
from circuitgate.organism import read_info
from circuitgate.organism.groundtruth import classes

from browser import assert_renders_every_plot

ORGANISM_SHAPE = Shape(4, 4, 4, 16, 64, 256)

REPO = Path(__file__).resolve().parents[2]
FOUR_FILES = ["junit.xml", "manifest.json", "report.html", "verdicts.json"]

pytestmark = pytest.mark.slow


def suite(*args: str) -> subprocess.CompletedProcess:
    """`python -m pytest hypotheses ...` from the repository root, as a user runs it."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "hypotheses", "-p", "no:cacheprovider", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900,
    )


@pytest.fixture(scope="module")
def organism_dir(organism_family) -> Path:
    return organism_family["organism"]


@pytest.fixture(scope="module")
def twin_dir(organism_family) -> Path:
    return organism_family["organism-llama"]


@pytest.fixture(scope="module")
def organism_run(organism_dir, twin_dir, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("organism-run")
    return suite("--report-dir", str(out)), out


def _verdicts(out: Path) -> dict:
    return json.loads((out / "verdicts.json").read_text())


def test_the_default_run_is_green_and_shows_the_planted_circuit(organism_run):
    proc, out = organism_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == FOUR_FILES
    assert "circuitgate verdicts (organism, method paired)" in proc.stdout
    for h in ("H1", "H2", "H3", "H4", "H5"):
        assert re.search(rf"^{h}  supported +expected supported +PASS", proc.stdout, re.M), h
    # the planted circuit, each unit with its class, effect and interval
    assert "expected circuit: 22 of 22 units found with their class" in proc.stdout
    assert re.search(r"^  H2  L01H00 recall, effect -\d[\d.]* \[-[\d.]+, -[\d.]+\]; L02H01 reasoning, effect \+",
                     proc.stdout, re.M)
    assert re.search(r"^  H5  .*head-L2H1 reasoning, effect -0\.9\d* \[", proc.stdout, re.M)
    assert "H1  not asserted: only the 3 units planted to differ in activation are asserted (L01, L02, L03)" in proc.stdout
    html = (out / "report.html").read_text()
    assert "Expected circuit, as found: paired method</h2><p>22 of 22 units found" in html
    assert "Not asserted:" in html


def test_organism_expectations_are_its_ground_truth(organism_run, organism_dir, twin_dir):
    _, out = organism_run
    doc = _verdicts(out)
    assert set(doc["hypotheses"]) == {"H1", "H2", "H3", "H4", "H5"}
    expected = from_ground_truth(read_info(organism_dir), ORGANISM_SHAPE, Config())
    h4_verdict, h4_bins = h4_from_ground_truths((read_info(organism_dir), ORGANISM_SHAPE),
                                                (read_info(twin_dir), ORGANISM_SHAPE), Config())
    expected_verdicts = {**expected.verdicts, "H4": h4_verdict}
    expected_components = {**expected.components, "H4": h4_bins}
    assert expected_verdicts == {h: "supported" for h in ("H1", "H2", "H3", "H4", "H5")}
    assert doc["model"]["sha256"] and doc["expectations"].startswith("organism ground truth")
    for h, entry in doc["hypotheses"].items():
        assert entry["tested"] and entry["expected"] == expected_verdicts[h] == entry["verdict"], h
        judged = {c: e["expected"] for c, e in entry["components"].items() if "expected" in e}
        assert judged == dict(expected_components[h]), h
        assert all(c["passed"] for c in entry["components"].values() if "expected" in c), h
    # H1-H3 assert only the planted activation units; H5 every measured target, neuron blocks included
    assert list(expected.components["H2"]) == ["L01H00", "L02H01"]
    assert len(expected.components["H5"]) == 30 and "neurons-L1-B0" in doc["hypotheses"]["H5"]["components"]
    assert list(doc["hypotheses"]["H4"]["components"]) == ["D0", "D1", "D2", "D3"]


def test_h5_agrees_with_the_exhaustive_ablation_ground_truth(organism_run, organism_dir):
    """H5's component verdicts agree with the ground truth stored with the organism.

    The ground truth was measured with plain torch hooks, one target at a time; H5 measures with
    nnsight, many targets per forward pass. The drops must be the same numbers and the classes the
    same classes, for every target the truth measured (heads, sublayers, neuron blocks)."""
    _, out = organism_run
    h5 = _verdicts(out)["hypotheses"]["H5"]
    truth = read_info(organism_dir)["ground_truth"]
    truth_classes = classes(truth)
    assert h5["summary"]["ablation"] == "zero" and h5["summary"]["metric"] == truth["metric"]
    assert h5["summary"]["clean_accuracy"] == truth["clean"] == {"recall": 1.0, "reasoning": 1.0}
    for target, row in truth["ablations"]["zero"].items():
        c = h5["components"][target]
        assert c["recall_drop"][0] == pytest.approx(row["recall_drop"], abs=1e-12), target
        assert c["reasoning_drop"][0] == pytest.approx(row["reasoning_drop"], abs=1e-12), target
        assert c["class"] == truth_classes[target] == c["expected"], target
    assert h5["verdict"] == h5["expected"] == "supported" and h5["passed"]
    # H3's neuron sets were ablated too, each beside a random control of the same size.
    sets = {t: c for t, c in h5["components"].items() if t.startswith("neurons-") and "control" in c}
    assert sets and all(c["control"]["size"] == c["size"] for c in sets.values())
    patching = h5["summary"]["patching"]
    assert set(patching) == {"recall_into_reasoning", "reasoning_into_recall"}
    assert all(len(v["own_accuracy"]) == 4 for v in patching.values())


def test_h4_compares_the_two_organisms_by_depth(organism_run, organism_dir, twin_dir):
    """H4's verdict follows its numbers, and its causal (H5) profiles are each organism's ground truth:
    planted at the same depths, the two causal profiles rank alike (rho 1); the activation profiles
    agree less (layer 0 carries no activation claim: H1 rho 0.6, H2 0.8), and the mean, 0.80, still
    reaches the smallest p of an exact test over 4 bins."""
    from circuitgate.causal import layer_interactions
    from circuitgate.organism.groundtruth import pair_drops

    _, out = organism_run
    h4 = _verdicts(out)["hypotheses"]["H4"]
    s = h4["summary"]
    assert s["models"] == ["organism", "organism-llama"] and s["n_bins"] == 4 and s["exact"]
    assert s["rho"] == pytest.approx({"H1": 0.6, "H2": 0.8, "H5": 1.0})
    assert s["statistic"] == pytest.approx(0.8) and s["p"] == pytest.approx(1 / 24)
    assert h4["verdict"] == h4["expected"] == "supported"
    ids = [f"{kind}-L{i}" for i in range(4) for kind in ("attn", "mlp")]
    for model, directory in zip(s["models"], (organism_dir, twin_dir)):
        _, recall, reasoning = pair_drops(read_info(directory)["ground_truth"], ids)
        truth = layer_interactions(dict(zip(ids, (recall - reasoning).mean(axis=0))), ORGANISM_SHAPE.n_layers)
        assert s["profiles"][model]["H5"] == pytest.approx(list(truth), abs=1e-12), model


def test_the_null_organism_has_nothing_selective(organism_family, tmp_path):
    """organism-null: every live unit serves both skills; H5 and H4 are expected not supported, and are."""
    organism_family["organism-null"], organism_family["organism-llama"]
    proc = suite("--model", "organism-null", "-k", "H5 or H4", "--report-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = _verdicts(tmp_path)
    assert doc["hypotheses"]["H5"]["verdict"] == doc["hypotheses"]["H5"]["expected"] == "not_supported"
    assert doc["hypotheses"]["H4"]["verdict"] == doc["hypotheses"]["H4"]["expected"] == "not_supported"
    assert doc["hypotheses"]["H4"]["summary"]["reason"].startswith("organism-null has no causal specialisation")
    assert not {c["class"] for t, c in doc["hypotheses"]["H5"]["components"].items()} & {"recall", "reasoning"}


_COMPONENT = re.compile(r"test_(H\d)_\w+\[(.+)\]")


def test_junit_outcomes_match_verdicts(organism_run):
    _, out = organism_run
    doc = _verdicts(out)
    cases = list(ET.parse(out / "junit.xml").getroot().iter("testcase"))
    n_components = sum(sum("expected" in c for c in e["components"].values()) for e in doc["hypotheses"].values())
    assert len(cases) == 5 + n_components
    for case in cases:
        name = case.get("name")
        failed = case.find("failure") is not None
        match = _COMPONENT.match(name)
        if match:
            passed = doc["hypotheses"][match.group(1)]["components"][match.group(2)]["passed"]
        else:
            passed = doc["hypotheses"][name[len("test_"):]]["passed"]
        assert failed == (not passed), name
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert "expected" in props and ("verdict" in props or "class" in props)


def test_seed_h1_on_any_local_directory(tiny_model_dir, tmp_path):
    """`pytest hypotheses -k H1 --method original --model DIR` on a tiny Qwen2 and a tiny Llama."""
    prompts = tmp_path / "p.yaml"
    pairs = "\n".join(
        f"  - {{id: p{i}, recall: {{prompt: 'w{3 + i} w{4 + i}', answer: w1}}, "
        f"reasoning: {{prompt: 'w{3 + i} w9 w{10 + i} w11 w12', answer: w2}}}}"
        for i in range(20)
    )
    prompts.write_text(f"schema: 1\nname: tiny\npairs:\n{pairs}\n")
    out = tmp_path / "out"
    proc = suite("-k", "H1", "--method", "original", "--model", str(tiny_model_dir), "--prompts", str(prompts),
                 "--report-dir", str(out))
    # A random model, and still "supported": the reasoning prompts are 3 words longer, and the seed
    # method takes that template difference for specialisation (docs/method.md, flaw 2).
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = _verdicts(out)
    assert set(doc["hypotheses"]) == {"H1"} and doc["expectations"] == "none"
    h1 = doc["hypotheses"]["H1"]
    assert h1["verdict"] == h1["expected"] == "supported" and len(h1["components"]) == 2


def test_method_both_on_the_organism_controls_come_out_negative(organism_dir, tmp_path):
    """The organism's controls (the same task under two templates of equal length) are the null control
    of docs/method.md flaw 2: under either method they must not come out specialised, and both
    methods' verdicts land side by side. The seed method misses three planted units (docs/validation.md, "Verdict
    accuracy"), and exactly those three tests fail."""
    proc = suite("-k", "H1 or H2 or H3", "--method", "both", "--report-dir", str(tmp_path))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _failed_tests(tmp_path / "junit.xml") == {"H2 original-L02H01", "H3 original-L01", "H3 original-L02"}
    doc = _verdicts(tmp_path)
    assert set(doc["by_method"]) == {"paired", "original"}
    for h in ("H1", "H2", "H3"):
        paired, seed = doc["by_method"]["paired"][h], doc["by_method"]["original"][h]
        assert paired["expected"] == seed["expected"]
        controls = paired["summary"]["controls"]
        assert set(controls) == {"recall", "reasoning"}
        for task, c in controls.items():
            assert c["n_pairs"] == 64 and c["feasible"] and not c["specialised"], (h, task, c)
        assert paired["verdict"] == seed["verdict"] == "supported", paired["summary"].get("reason")
    seed_h3 = doc["by_method"]["original"]["H3"]["components"]
    assert (seed_h3["L01"]["class"], seed_h3["L02"]["class"]) == ("reasoning", "recall")  # the opposite
    assert "Methods side by side" in (tmp_path / "report.html").read_text()


# -- the release gate  -----------------------------------------------------
def _failed_tests(junit: Path) -> set[str]:
    """'H1 L01' / 'H4' / 'recall accuracy' for each failing case: the names `circuitgate compare` gives."""
    failed = set()
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is not None:
            skill = re.match(r"test_skill\[(\w+)\]$", case.get("name"))
            if skill:
                failed.add(f"{skill.group(1)} accuracy")
                continue
            m = re.match(r"test_(H\d)\w*(?:\[(.+)\])?$", case.get("name"))
            failed.add(m.group(1) + (f" {m.group(2)}" if m.group(2) else ""))
    return failed


@pytest.fixture(scope="module")
def gate_benchmark(organism_run, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, dict]:
    """benchmarks/gate_candidates.py on the organism, against the default run as its baseline: five
    harmless candidates (a rerun, batch size 4, bfloat16, a light fine-tune on unrelated text, another
    subsample of H5's pairs) and three harmful ones (the most selective head zeroed, the most selective
    neuron block zeroed, a fine-tune that breaks reasoning), each gated with --baseline."""
    out = tmp_path_factory.mktemp("gate-benchmark")
    (out / "baseline").mkdir()
    shutil.copy(organism_run[1] / "verdicts.json", out / "baseline" / "verdicts.json")
    proc = subprocess.run([sys.executable, "benchmarks/gate_candidates.py", "--model", "organism", "--out", str(out),
                           "--jobs", "2"], cwd=REPO, capture_output=True, text=True, timeout=1200,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    return proc, out, json.loads((out / "results.json").read_text())


def test_no_harmless_candidate_fails_and_every_harmful_one_fails_naming_the_damage(gate_benchmark):
    proc, out, results = gate_benchmark
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    outcomes = {o["name"]: o for o in results["outcomes"]}
    harmless = [o for o in outcomes.values() if not o["harmful"]]
    harmful = [o for o in outcomes.values() if o["harmful"]]
    assert len(harmless) == 5 and len(harmful) == 3
    assert all(o["exit_code"] == 0 and not o["failing"] for o in harmless), harmless
    for o in harmful:
        assert o["exit_code"] == 1 and o["named"] and set(o["named"]) <= set(o["failing"]), o
    # A broken skill is reported once, plainly, before the units that followed from it.
    broken = outcomes["reasoning broken by fine-tune"]
    assert broken["failing"][0] == "reasoning accuracy" and broken["clean"]["recall"] > 0.9
    assert "| rerun | harmless |" in (out / "table.md").read_text()


def _zeroed_head(results: dict) -> dict:
    return next(o for o in results["outcomes"] if o["harmful"] and o["name"].startswith("head-"))


def test_the_gate_fails_exactly_what_compare_names_and_only_units_the_truth_moved(gate_benchmark, organism_dir):
    """The zeroed head's gate run: its failing tests are the decisions `circuitgate compare` names (one
    rule, two views), the head itself is among them, and every H5 unit that regressed is one whose
    class the copy's own truth (plain torch hooks) moved."""
    from circuitgate.accuracy import _truth_of

    _, out, results = gate_benchmark
    zeroed = _zeroed_head(results)
    head = zeroed["name"].removesuffix(" zeroed")
    report = out / zeroed["name"].replace(" ", "-")
    failed = _failed_tests(report / "junit.xml")
    compared = subprocess.run([sys.executable, "-m", "circuitgate.cli", "compare", str(out / "baseline" / "verdicts.json"),
                               str(report / "verdicts.json"), "--format", "json"], capture_output=True, text=True)
    assert compared.returncode == 1, compared.stderr
    assert set(json.loads(compared.stdout)["failing"]) == failed == set(zeroed["failing"])
    assert f"H5 {head}" in failed
    before = classes(read_info(organism_dir)["ground_truth"])
    after = classes(_truth_of(out / "models" / zeroed["name"].replace(" ", "-"), read_info(organism_dir))["ground_truth"])
    moved = {f"H5 {t}" for t in before if after[t] != before[t]}
    assert {f for f in failed if f.startswith("H5 ") and f.split()[1] in before} <= moved
    candidate = json.loads((report / "verdicts.json").read_text())["hypotheses"]["H5"]["components"]
    assert {t: candidate[t]["class"] for t in after} == after  # every fixed target as the truth has it


def test_the_gate_report_shows_its_decisions_and_every_plot_in_chromium(gate_benchmark, chromium, tmp_path):
    """The zeroed head's report.html, as the run wrote it, opened in a real browser: the gate's
    decisions sit above the plots, and every plot decodes and shows in the screenshot (kept beside
    the report for a human to look at)."""
    _, out, results = gate_benchmark
    html = (out / _zeroed_head(results)["name"].replace(" ", "-") / "report.html").read_text()
    assert "regressed</b>" in html and "<h2>Gate decisions</h2>" in html and "Measured as the baseline was" in html
    shot = assert_renders_every_plot(chromium, html, tmp_path)
    assert shot.stat().st_size > 50_000
