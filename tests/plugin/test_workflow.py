"""The model-gate workflow (.github/workflows/model-gate.yml): its structure, and that every option it
passes to `pytest hypotheses` is one the circuitgate plugin registers. No runner needed: a workflow
that cannot run would otherwise only show on the GPU runner."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "model-gate.yml"
# What the gate cannot do without: the candidate, the baseline, the GPU and where the report goes.
GATE_OPTIONS = {"--model", "--baseline", "--device", "--report-dir"}


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


@pytest.fixture(scope="module")
def steps(workflow) -> list[dict]:
    (job,) = workflow["jobs"].values()
    return job["steps"]


def _step(steps: list[dict], predicate) -> tuple[int, dict]:
    found = [(i, s) for i, s in enumerate(steps) if predicate(s)]
    assert len(found) == 1, f"expected one matching step, found {len(found)}"
    return found[0]


def _uses(action: str):
    return lambda s: s.get("uses", "").split("@")[0] == action


def _runs(text: str):
    return lambda s: text in s.get("run", "")


def _gate_argv(steps: list[dict]) -> list[str]:
    _, step = _step(steps, _runs("pytest hypotheses"))
    (line,) = [ln for ln in step["run"].splitlines() if "pytest hypotheses" in ln]
    return shlex.split(line)


def _option_values(argv: list[str]) -> dict[str, str]:
    return {a: b for a, b in zip(argv, argv[1:]) if a.startswith("--")}


def test_triggers_take_a_model_and_a_baseline(workflow):
    on = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["model"]["default"] == "qwen7b"
    assert inputs["baseline"]["default"].endswith(".json")
    assert "pull_request" in on


def test_runs_on_a_self_hosted_gpu_runner_with_least_permissions(workflow):
    (job,) = workflow["jobs"].values()
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    assert workflow["permissions"] == {"contents": "read", "pull-requests": "write"}


def test_pull_requests_fall_back_to_the_dispatch_defaults(workflow):
    (job,) = workflow["jobs"].values()
    on = workflow.get("on", workflow.get(True))
    for name, var in (("model", "MODEL"), ("baseline", "BASELINE")):
        default = on["workflow_dispatch"]["inputs"][name]["default"]
        assert job["env"][var] == f"${{{{ inputs.{name} || '{default}' }}}}"


def test_user_input_reaches_the_shell_only_through_the_environment(steps):
    """`${{ }}` inside a script is pasted in before the shell parses it: script injection."""
    for step in steps:
        assert "${{" not in step.get("run", ""), step.get("name")


def test_install_leaves_torch_to_the_runner(steps):
    _, step = _step(steps, _runs("pip install -e ."))
    assert "torch==" not in step["run"]  # the README's pin is the CPU wheel
    _, setup = _step(steps, _uses("actions/setup-python"))
    assert str(setup["with"]["python-version"]) == "3.11"


def test_hugging_face_cache_is_restored_before_the_gate(steps):
    i_cache, cache = _step(steps, _uses("actions/cache"))
    assert cache["with"]["path"] == "~/.cache/huggingface"
    assert "env.MODEL" in cache["with"]["key"]
    _, hf_home = _step(steps, _runs("HF_HOME="))
    assert 'HF_HOME=$HOME/.cache/huggingface" >> "$GITHUB_ENV"' in hf_home["run"]
    i_gate, _ = _step(steps, _runs("pytest hypotheses"))
    assert i_cache < i_gate


def test_gate_step_passes_model_baseline_and_report_dir_and_does_not_stop_the_job(steps):
    _, step = _step(steps, _runs("pytest hypotheses"))
    argv = _gate_argv(steps)
    assert argv[:4] == ["python", "-m", "pytest", "hypotheses"]
    values = _option_values(argv)
    assert GATE_OPTIONS <= set(values)
    assert values["--model"] == "$MODEL" and values["--baseline"] == "$BASELINE" and values["--device"] == "cuda"
    assert step["continue-on-error"] is True and step["id"] == "gate"


def test_report_dir_is_uploaded_always(steps):
    report_dir = _option_values(_gate_argv(steps))["--report-dir"]
    i_gate, _ = _step(steps, _runs("pytest hypotheses"))
    i_upload, upload = _step(steps, _uses("actions/upload-artifact"))
    assert upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == report_dir.rstrip("/")
    assert i_gate < i_upload


def test_compare_writes_markdown_to_the_summary_without_aborting(steps):
    report_dir = _option_values(_gate_argv(steps))["--report-dir"]
    i_gate, _ = _step(steps, _runs("pytest hypotheses"))
    i_compare, compare = _step(steps, lambda s: s.get("id") == "compare")
    script = compare["run"]
    assert f'circuitgate compare "$BASELINE" {report_dir}/verdicts.json --format markdown' in script
    # Exit 1 (a regression) or 2 (bad input) must not end the step before the result is recorded.
    assert "|| status=$?" in script and 'echo "status=$status" >> "$GITHUB_OUTPUT"' in script
    assert "comparison.md" in script and '>> "$GITHUB_STEP_SUMMARY"' in script
    assert "!cancelled()" in compare["if"]
    assert i_gate < i_compare


def test_comparison_is_posted_on_pull_requests(steps):
    i_compare, _ = _step(steps, lambda s: s.get("id") == "compare")
    i_comment, comment = _step(steps, lambda s: "comparison.md" in s.get("with", {}).get("script", "")
                               or "gh pr comment" in s.get("run", ""))
    assert "github.event_name == 'pull_request'" in comment["if"]
    body = comment.get("with", {}).get("script", "") + comment.get("run", "")
    assert "createComment" in body or "--body-file comparison.md" in body
    assert i_compare < i_comment


def test_last_step_fails_on_a_failed_gate_or_a_regression(steps):
    last = steps[-1]
    assert "!cancelled()" in last["if"] or "always()" in last["if"]
    assert last["env"] == {"GATE": "${{ steps.gate.outcome }}", "COMPARE": "${{ steps.compare.outputs.status }}"}
    assert '[ "$GATE" != success ] || [ "$COMPARE" != 0 ]' in last["run"] and "exit 1" in last["run"]


def _registered(config: pytest.Config, option: str) -> bool:
    """Whether this session's pytest knows ``option``: the root conftest.py loads the circuitgate plugin
    for every session in the repository, this one too, as it does for a user's `pytest hypotheses`."""
    try:
        config.getoption(option)
    except ValueError:
        return False
    return True


def test_every_option_the_workflow_passes_is_registered(steps, pytestconfig):
    passed = {a.split("=")[0] for a in _gate_argv(steps)[4:] if a.startswith("--")}
    assert GATE_OPTIONS <= passed
    unknown = {o for o in passed if not _registered(pytestconfig, o)}
    assert not unknown and not _registered(pytestconfig, "--no-such-option")
