"""The verdict plugin: options, one Run per session, component parametrisation, reports, summary.

State lives in ``config.stash`` (as pytest-randomly and junitxml keep theirs); nothing here prints:
output goes through the terminal reporter.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from pathlib import Path
from typing import Iterator

import pytest

from circuitgate import CircuitgateError
from circuitgate.report import render_html
from circuitgate.session import METHODS, Run, Settings
from circuitgate.verdicts import expected_circuit, write_json_atomic

RUN_KEY = pytest.StashKey[Run]()
ACTIVE_KEY = pytest.StashKey[bool]()  # True when this session collects the hypotheses suite
# Component/figure tests whose source names nothing (no figures for this model): deselected, not
# reported as skipped "empty parameter set" in every run.
EMPTY_KEY = pytest.StashKey[set]()
DOC_KEY = pytest.StashKey[dict]()  # the verdicts.json written at session end; the summary reads it
# A component test is named test_H<n>_<kind> and takes one of these arguments: the component id.
COMPONENT_ARGS = ("layer", "head", "target", "depth")
FIGURE_ARG = "figure"  # test_H<n>_figure: a reported headline number of the expectations source
_HYPOTHESIS_TEST = re.compile(r"test_(H\d)(?!\d)")  # test_H2 and its component test test_H2_head
HYPOTHESES_DIR = "hypotheses"
# `-k H2` must select hypothesis H2 (docs/design.md, Verdicts), but -k matches case-insensitive substrings of node
# names, and component ids contain "h1".."h5" by design (head L07H12, target head-L2H1). So a bare
# H1..H5 token in -k is rewritten to a keyword that only that hypothesis's tests carry.
HYPOTHESIS_KEYWORD = "circuitgate_hypothesis_"
_HYPOTHESIS_TOKEN = re.compile(r"(?<![^\s()])(h[1-5])(?![^\s()])", re.IGNORECASE)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("circuitgate", "circuitgate: hypotheses about a model's internals")
    group.addoption("--model", default=None,
                    help="registry alias (see `circuitgate models`), hub id or local directory; default: organism")
    group.addoption("--method", default="paired", choices=METHODS,
                    help="analysis method: paired = the sound default; seed = the original research method, "
                         "exactly; both = the two side by side")
    group.addoption("--prompts", default=None, help="built-in prompt set name or YAML file; default: the model's set")
    group.addoption("--config", dest="cg_config", default=None, metavar="FILE", help="thresholds as YAML")
    group.addoption("--device", default="auto", choices=("auto", "cpu", "cuda"))
    group.addoption("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"))
    group.addoption("--batch-size", default="auto", help="prompts per forward pass, or auto")
    group.addoption("--report-dir", default=None, help="where reports go; default reports/<model>-<timestamp>/")
    group.addoption("--h4-model", default=None,
                    help="the second model H4 compares with (alias, hub id or directory); default: the model's twin")
    group.addoption("--baseline", default=None, metavar="PATH",
                    help="a previous verdicts.json (e.g. the released checkpoint's): its verdicts and component "
                         "classes become the expectations, so any change fails; it must share this run's method, "
                         "prompt set and schema")


def _collects_hypotheses(config: pytest.Config) -> bool:
    suite = (config.rootpath / HYPOTHESES_DIR).resolve()
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        if path == suite or suite in path.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # before junitxml reads --junitxml
def pytest_configure(config: pytest.Config) -> None:
    opt = config.option
    try:
        settings = Settings(model=opt.model, method=opt.method, prompts=opt.prompts, config=opt.cg_config,
                            device=opt.device, dtype=opt.dtype, batch_size=opt.batch_size,
                            report_dir=opt.report_dir, h4_model=opt.h4_model, baseline=opt.baseline)
        run = Run(settings, root=config.rootpath)
        active = _collects_hypotheses(config)
        if active:
            run.config, run.prompt_set, run.baseline  # validate the inputs before anything slow
            if not getattr(opt, "xmlpath", None):
                opt.xmlpath = str(run.report_dir / "junit.xml")
            if opt.keyword:
                opt.keyword = _HYPOTHESIS_TOKEN.sub(lambda m: HYPOTHESIS_KEYWORD + m.group(1).upper(), opt.keyword)
    except CircuitgateError as e:
        raise pytest.UsageError(str(e)) from None
    config.stash[RUN_KEY] = run
    config.stash[ACTIVE_KEY] = active
    config.stash[EMPTY_KEY] = set()


@contextlib.contextmanager
def uncaptured(config: pytest.Config) -> Iterator[None]:
    """Let progress bars of long work (organism build, extraction) reach the terminal."""
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        yield


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    match = _HYPOTHESIS_TEST.match(metafunc.function.__name__)
    if not match:
        return
    hypothesis, run = match.group(1), metafunc.config.stash[RUN_KEY]
    methods = run.settings.methods
    if len(methods) > 1 and "cg_method" in metafunc.fixturenames:
        # --method both: every hypothesis test once per method; session scope keeps one result each.
        metafunc.parametrize("cg_method", methods, scope="session")
    args = [a for a in COMPONENT_ARGS + (FIGURE_ARG,) if a in metafunc.fixturenames]
    if not args:
        return
    try:
        with uncaptured(metafunc.config):
            if args[0] == FIGURE_ARG:
                ids = list(run.expectations.figures.get(hypothesis, {}))
            else:
                ids = run.component_ids(hypothesis)
    except CircuitgateError as e:
        raise pytest.UsageError(str(e)) from None
    if not ids:
        metafunc.config.stash[EMPTY_KEY].add(metafunc.definition.nodeid)
    # Node ids hold the component only, never the model, so runs on two checkpoints line up.
    metafunc.parametrize(args[0], ids, ids=ids)


@pytest.hookimpl(tryfirst=True)  # before -k deselects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.stash[ACTIVE_KEY]:
        return
    empty = config.stash[EMPTY_KEY]
    deselected = [item for item in items if item.nodeid.split("[")[0] in empty]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]
    for item in items:
        match = _HYPOTHESIS_TEST.match(item.name)
        if match:
            item.extra_keyword_matches.add(HYPOTHESIS_KEYWORD + match.group(1))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail fast, before any test runs, when the model's weights cannot be had."""
    config = session.config
    if not (config.stash[ACTIVE_KEY] and session.items) or config.option.collectonly:
        return
    try:
        with uncaptured(config):
            config.stash[RUN_KEY].model_dir
    except CircuitgateError as e:
        raise pytest.UsageError(str(e)) from None


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    run = config.stash.get(RUN_KEY, None)
    if run is None or not run.results:
        return
    out = run.report_dir
    document = config.stash[DOC_KEY] = run.verdicts_document()
    write_json_atomic(out / "verdicts.json", document)
    write_json_atomic(out / "manifest.json", run.manifest(_dt.datetime.now(_dt.timezone.utc)))
    (out / "report.html").write_text(render_html(document))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    run = config.stash.get(RUN_KEY, None)
    if run is None or not run.results:
        return
    tr = terminalreporter
    document = config.stash[DOC_KEY]
    by_method = document.get("by_method") or {run.settings.methods[0]: document["hypotheses"]}
    for method in run.settings.methods:
        tr.write_sep("=", f"circuitgate verdicts ({run.spec.name}, method {method})")
        _summary_lines(tr, run, method)
        _circuit_lines(tr, by_method[method])
    if run.baseline is not None:
        _baseline_lines(tr, run, config.stash[DOC_KEY]["baseline"]["regressions"])
    tr.write_line(f"report: {Path(run.report_dir) / 'report.html'}")


MAX_NAMED = 12  # regressions named in the summary; `circuitgate compare` lists them all


def _baseline_lines(tr, run: Run, names: list[str]) -> None:
    more = f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else ""
    line = f"baseline {run.settings.baseline}: " + (
        f"{len(names)} regressed: {', '.join(names[:MAX_NAMED])}{more}" if names else "nothing regressed")
    tr.write_line(line, red=bool(names), green=not names)


def _circuit_lines(tr, entries: dict) -> None:
    """The expected circuit (an organism's planted units), as this run found it, and what the
    expectations leave unasserted."""
    sightings = expected_circuit({h: e for h, e in entries.items() if e.get("tested", True)})
    if not sightings:
        return
    found = sum(s.outcome == "found" for s in sightings)
    tr.write_line(f"expected circuit: {found} of {len(sightings)} units found with their class", bold=True)
    for h in dict.fromkeys(s.hypothesis for s in sightings):
        units = [s for s in sightings if s.hypothesis == h]
        tr.write_line(f"  {h}  " + "; ".join(s.describe() for s in units),
                      green=all(s.outcome == "found" for s in units), red=any(s.outcome != "found" for s in units))
    for h, e in entries.items():
        if e.get("note") and e.get("tested", True):
            tr.write_line(f"  {h}  not asserted: {e['note']}")


def _summary_lines(tr, run: Run, method: str) -> None:
    for h, r in run.results_by(method).items():
        expectation = run.expected_verdict(h, method)
        expected, source = expectation.value, "baseline" if expectation.baseline else "expected"
        s = r.summary
        ok = r.verdict == expected
        numbers = (s.get("reason") if r.verdict == "inconclusive" else None) or s.get("headline") or (
            f"specialised {s.get('n_specialised')} (recall {s.get('n_recall')}, reasoning {s.get('n_reasoning')}, "
            f"mixed {s.get('n_mixed')}; threshold {s.get('threshold')})")
        if h not in run.tested:  # an input of a selected hypothesis (H3's neurons for H5), not judged
            tr.write_line(f"{h}  {r.verdict:<13} (computed as an input, not tested)  {numbers}")
            continue
        tr.write_line(f"{h}  {r.verdict:<13} {source} {expected:<13} {'PASS' if ok else 'FAIL'}  {numbers}",
                      green=ok, red=not ok)
