"""The verdict plugin: thin hooks over one Run per session: component parametrisation, markers and
`-k H2`, reports, the header and the summary, whose lines ``circuitgate.summary`` makes (docs/design.md,
"Command-line contract").

State lives in one ``SuiteSession`` in ``config.stash`` (as junitxml keeps its own); nothing here prints:
output goes through the terminal reporter (the summary) and ``pytest_report_header``.

``circuitgate.plugin`` (the pytest11 entry point: the options) registers this module only for a session
whose arguments reach the suite: ``<rootdir>/hypotheses/`` (a checkout) or the installed
``circuitgate.hypotheses`` (``python -m pytest --pyargs circuitgate.hypotheses`` from anywhere). Any
other session (``pytest tests``, another project's tests) never imports it, nor torch. This module loads
the suite's fixtures.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import gc
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest
import torch
from _pytest.junitxml import LogXML
from _pytest.mark import KeywordMatcher
from _pytest.mark.expression import Expression

from circuitgate import CircuitgateError
from circuitgate.analyses import component_ids
from circuitgate.compare import baseline_method
from circuitgate.documents import manifest, verdicts_document
from circuitgate.models.loading import resolve_device
from circuitgate.report import render_html
from circuitgate.session import Run, Settings
from circuitgate.summary import header_lines, summary_lines
from circuitgate.plugin import HYPOTHESES_DIR, HYPOTHESES_PACKAGE, in_suite, reaches_suite, suite_dirs
from circuitgate.judging import write_json_atomic
from circuitgate.vocabulary import HYPOTHESES, SKILLS

pytest_plugins = ["circuitgate.fixtures.circuitgate"]



@dataclass
class SuiteSession:
    """The plugin's state for one pytest session, in ``config.stash`` under ``SESSION_KEY``: the run;
    the suite's directories (``circuitgate.plugin.suite_dirs``); whether the session's arguments reach
    the suite (decided before collection: the junit.xml writer and the input checks must start before
    the session does) and whether it was in fact collected (``active``); whether the inputs were
    checked and threads set (once); component and figure tests whose source names nothing (no figures
    for this model: deselected, not reported as skipped "empty parameter set" in every run); a user
    error met while parametrising (missing weights, a bad expectations file), raised as a usage error
    once collection is over: raised in pytest_generate_tests it would be a collection error of each
    module, with a traceback, instead of one line and exit status 4; our junit.xml writer when the
    user gave no --junitxml; torch's thread count before --threads, restored at unconfigure; the
    verdicts.json written at session end, which the summary reads."""

    run: Run
    suite: tuple[Path, ...]
    reaches: bool
    active: bool = False
    prepared: bool = False
    empty: set[str] = field(default_factory=set)
    collect_error: str | None = None
    junit: LogXML | None = None
    threads_before: int | None = None
    document: dict | None = None


SESSION_KEY = pytest.StashKey[SuiteSession]()
JUNIT_PLUGIN = "circuitgate-junitxml"

# A component test is named test_H<n>_<kind> and takes one of these arguments: the component id.
COMPONENT_ARGS = ("layer", "head", "target", "depth")
FIGURE_ARG = "figure"  # test_H<n>_figure: a reported headline number of the expectations source
SKILL_TEST = "test_skill"  # a gate's skill, parametrized by task
_HYPOTHESIS_TEST = re.compile(r"test_(H\d)(?!\d)")  # test_H2 and its component test test_H2_head
_HYPOTHESIS_MODULE = re.compile(r"test_(h\d)_", re.IGNORECASE)  # test_h2_heads.py
# A bare H1..H5 in -k (a guard only: the matcher below decides what is bare, as pytest parses -k).
_HYPOTHESIS_TOKEN = re.compile(r"(?<![^\s()])h[1-5](?![^\s()])", re.IGNORECASE)


# -- is this session the suite's? (``circuitgate.plugin`` decides, and loads this module if so) ------
def _in_suite(config: pytest.Config, path: Path) -> bool:
    return in_suite(config.stash[SESSION_KEY].suite, path)


def _is_worker(config: pytest.Config) -> bool:
    """A pytest-xdist worker, told as pytest's junitxml tells one; it never writes a report."""
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    for h in HYPOTHESES:
        config.addinivalue_line("markers", f"{h.lower()}: a test of hypothesis {h} (circuitgate: `-m {h.lower()}`)")
    opt = config.option
    try:
        method = opt.method or baseline_method(opt.baseline) or "paired"
        settings = Settings(model=opt.model, method=method, prompts=opt.prompts, config=opt.cg_config,
                            device=opt.device, dtype=opt.dtype, batch_size=opt.batch_size,
                            report_dir=opt.report_dir, h4_model=opt.h4_model, baseline=opt.baseline,
                            threads=str(opt.cg_threads), remote=opt.remote)
        run = Run(settings, root=config.rootpath)
    except CircuitgateError as e:
        raise pytest.UsageError(str(e)) from None
    suite = suite_dirs(config)
    session = config.stash[SESSION_KEY] = SuiteSession(run, suite, reaches_suite(config, suite))
    if not session.reaches or _is_worker(config):
        return
    if getattr(opt, "dist", "no") != "no":
        # pytest-xdist: each worker would load the model and compute every hypothesis it meets over all
        # its units (one family per correction), and verdicts.json needs every result in one process.
        raise pytest.UsageError("circuitgate: the hypotheses suite cannot run under pytest-xdist (-n/--dist): "
                                "each hypothesis is computed once per session, in one process; run it without -n")
    _prepare(config)
    _start_junit(config)
    freeze_imports()


def freeze_imports() -> None:
    """Leave the objects the imports made out of every later garbage collection, once per process.

    torch, transformers and nnsight leave about half a million objects that live as long as the process,
    and every full collection walks them all: a suite run on the organism spent 3.4 s of its 15 in
    those collections, 1.2 s with them frozen (docs/validation.md, "The test suite"). One collection
    first, so that no garbage is frozen with them; once, so that a later session in the same process
    (pytester's) does not freeze what an earlier one left."""
    if gc.get_freeze_count():
        return
    gc.collect()
    gc.freeze()


def _prepare(config: pytest.Config) -> None:
    """Check the inputs before anything slow, and set torch's threads; once per session."""
    session = config.stash[SESSION_KEY]
    if session.prepared:
        return
    session.prepared = True
    run = session.run
    try:
        run.config, run.prompt_set, run.baseline, run.report_dir  # each made once: made now to be checked
    except CircuitgateError as e:
        raise pytest.UsageError(str(e)) from None
    threads = config.option.cg_threads
    if threads == "auto":
        # 1 on the CPU: under contention torch with 2 threads slowed 20-100x, 1 stayed stable
        # (docs/nnsight.md, "Threads"). On a GPU the CPU only feeds it: torch's own default.
        threads = 1 if resolve_device(run.settings.device) == "cpu" else None
    if threads is not None:
        session.threads_before = torch.get_num_threads()
        torch.set_num_threads(threads)


def _start_junit(config: pytest.Config) -> None:
    """junit.xml in the report dir when the user named no --junitxml: pytest's own writer (LogXML, built
    as junitxml's pytest_configure builds it, so junit_family = xunit1 and the properties the judge
    records come out as with --junitxml), registered under a name of our own. junitxml's options
    are left as the user gave them."""
    if getattr(config.option, "xmlpath", None) or not config.pluginmanager.has_plugin("junitxml"):
        return
    xml = LogXML(
        str(config.stash[SESSION_KEY].run.report_dir / "junit.xml"),
        config.option.junitprefix,
        config.getini("junit_suite_name"),
        config.getini("junit_logging"),
        config.getini("junit_duration_report"),
        config.getini("junit_family"),
        config.getini("junit_log_passing_tests"),
    )
    config.pluginmanager.register(xml, JUNIT_PLUGIN)
    config.stash[SESSION_KEY].junit = xml


def _stop_junit(config: pytest.Config) -> None:
    session = config.stash[SESSION_KEY]
    if session.junit is not None:
        config.pluginmanager.unregister(session.junit)
        session.junit = None


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None:  # the options were refused as the plugin configured
        return
    _stop_junit(config)
    if session.threads_before is not None:  # the process may go on (pytester runs sessions in-process)
        torch.set_num_threads(session.threads_before)


# -- the header: how to reproduce the run ------------------------------------------------------------
def pytest_report_header(config: pytest.Config) -> list[str] | None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.reaches or _is_worker(config):
        return None
    suite = ["python", "-m", "pytest", "--pyargs", HYPOTHESES_PACKAGE] if config.option.pyargs else ["pytest", HYPOTHESES_DIR]
    return header_lines(session.run, suite, config.option.keyword, config.option.markexpr)


# -- collection: parametrisation, markers, -k ---------------------------------------------------------
@contextlib.contextmanager
def uncaptured(config: pytest.Config) -> Iterator[None]:
    """Let progress of long work (organism build, extraction) reach the terminal."""
    capman = config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        yield


def pytest_collectstart(collector: pytest.Collector) -> None:
    if _in_suite(collector.config, collector.path):
        collector.config.stash[SESSION_KEY].active = True


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.function.__name__ == SKILL_TEST and _in_suite(metafunc.config, metafunc.definition.path):
        _parametrize_skills(metafunc)
        return
    match = _HYPOTHESIS_TEST.match(metafunc.function.__name__)
    # An own hypothesis's tests (test_H6 of a project's suite) parametrize themselves: docs/own-hypothesis.md.
    if not match or match.group(1) not in HYPOTHESES or not _in_suite(metafunc.config, metafunc.definition.path):
        return
    config = metafunc.config
    session = config.stash[SESSION_KEY]
    try:
        _prepare(config)  # done in pytest_configure unless the arguments hid the suite from it
    except pytest.UsageError as e:
        session.collect_error = str(e)
        return
    hypothesis, run = match.group(1), session.run
    methods = run.settings.methods
    if len(methods) > 1 and "cg_method" in metafunc.fixturenames:
        # --method both: every hypothesis test once per method; session scope keeps one result each.
        metafunc.parametrize("cg_method", methods, scope="session")
    args = [a for a in COMPONENT_ARGS + (FIGURE_ARG,) if a in metafunc.fixturenames]
    if not args:
        return
    ids: list[str] = []
    if session.collect_error is None:  # one error is enough: the session ends on it
        try:
            with uncaptured(config):
                if args[0] == FIGURE_ARG:
                    ids = list(run.expectations.figures.get(hypothesis, {}))
                else:
                    ids = component_ids(run.inputs, hypothesis)
        except CircuitgateError as e:
            session.collect_error = str(e)
    if not ids:
        session.empty.add(metafunc.definition.nodeid)
    # Node ids hold the component only, never the model, so runs on two checkpoints line up.
    metafunc.parametrize(args[0], ids, ids=ids)


def _parametrize_skills(metafunc: pytest.Metafunc) -> None:
    """test_skill[recall], test_skill[reasoning]: a gate's skills, when its baseline recorded which
    pairs it answered; deselected otherwise (there is nothing to compare a skill with)."""
    config = metafunc.config
    session = config.stash[SESSION_KEY]
    try:
        _prepare(config)
    except pytest.UsageError as e:
        session.collect_error = str(e)
        return
    baseline = session.run.baseline if session.collect_error is None else None
    tasks = list(SKILLS) if baseline is not None and baseline.get("clean_correct") else []
    if not tasks:
        session.empty.add(metafunc.definition.nodeid)
    metafunc.parametrize("task", tasks, ids=tasks)


def hypothesis_of(item: pytest.Item) -> str | None:
    """The hypothesis a suite item tests: from its function (test_H2_head), else its module (test_h2_heads.py)."""
    if not _in_suite(item.config, item.path):
        return None
    match = _HYPOTHESIS_TEST.match(getattr(item, "originalname", item.name)) or _HYPOTHESIS_MODULE.match(item.path.name)
    hypothesis = match.group(1).upper() if match else None
    return hypothesis if hypothesis in HYPOTHESES else None


class HypothesisKeywords:
    """pytest's own -k matcher for one item (a case-insensitive substring of its names, keywords and
    markers), except that a bare ``H1``..``H5`` names the hypothesis: component ids contain h1..h5 by
    design (head ``L07H12``, target ``head-L2H1``), and as substrings those would select other
    hypotheses' tests (docs/design.md, "Verdicts")."""

    def __init__(self, item: pytest.Item) -> None:
        self.hypothesis = hypothesis_of(item)
        self.keywords = KeywordMatcher.from_item(item)

    def __call__(self, name: str, /, **kwargs: object) -> bool:
        if not kwargs and name.upper() in HYPOTHESES:
            return name.upper() == self.hypothesis
        return self.keywords(name, **kwargs)


def _deselect_by_hypothesis(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`-k H2`: the user's expression, read and never rewritten, evaluated by pytest's own expression
    parser with ``HypothesisKeywords``. pytest's -k pass runs after this one with its plain matcher; it
    keeps what this one kept wherever the expression has no ``not`` (a hypothesis's own names contain
    its token), so `-k H2`, `-k "H1 or H2"`, `-k "H5 and head"` mean the hypothesis. Under ``not``
    pytest's substring rule still applies (`-k "not H1"` also drops L07H12); `-m "not h1"` is exact."""
    expression = (config.option.keyword or "").lstrip()
    if not _HYPOTHESIS_TOKEN.search(expression):
        return  # nothing of ours in it: pytest's own pass alone decides
    try:
        compiled = Expression.compile(expression)
    except Exception:  # malformed (SyntaxError; ParseError before pytest 8.4): pytest's own pass says so
        return
    keep, drop = [], []
    for item in items:
        (keep if compiled.evaluate(HypothesisKeywords(item)) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(tryfirst=True)  # before pytest's own -k and -m deselection (_pytest/mark)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    session = config.stash[SESSION_KEY]
    if not session.active:
        return
    empty = session.empty
    deselected = [item for item in items if item.nodeid.split("[")[0] in empty]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if item not in deselected]
    for item in items:
        hypothesis = hypothesis_of(item)
        if hypothesis:
            item.add_marker(hypothesis.lower())  # `-m h2`; --method both items too
    _deselect_by_hypothesis(config, items)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail fast, before any test runs, when the model's weights cannot be had."""
    config = session.config
    state = config.stash[SESSION_KEY]
    if not state.active:
        _stop_junit(config)  # the arguments held the suite's directory, but nothing of it was collected
        return
    if state.collect_error is not None:
        raise pytest.UsageError(state.collect_error)
    if not session.items or config.option.collectonly:
        return
    try:
        with uncaptured(config):
            state.run.model_dir  # found (or built) now, to be checked
            state.run.check_shape()  # a gate on a model of another shape: refused now
    except CircuitgateError as e:
        raise pytest.UsageError(str(e)) from None


# -- reports and summary -----------------------------------------------------------------------------
def _has_results(config: pytest.Config) -> bool:
    """Only the process that ran the tests writes (never an xdist worker: docs/design.md)."""
    session = config.stash.get(SESSION_KEY, None)
    return session is not None and session.active and not _is_worker(config) and bool(session.run.results)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if not _has_results(config):
        return
    state = config.stash[SESSION_KEY]
    run = state.run
    out = run.report_dir
    document = state.document = verdicts_document(run)
    write_json_atomic(out / "verdicts.json", document)
    write_json_atomic(out / "manifest.json", manifest(run, _dt.datetime.now(_dt.timezone.utc)))
    (out / "report.html").write_text(render_html(document))


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    if not _has_results(config) or config.stash[SESSION_KEY].document is None:
        return
    session = config.stash[SESSION_KEY]
    for line in summary_lines(session.run, session.document):
        if line.section:
            terminalreporter.write_sep("=", line.text)
        else:
            terminalreporter.write_line(line.text, **line.markup)
