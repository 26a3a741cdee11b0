"""circuitgate's pytest plugin, as pytest finds it through the pytest11 entry point (pyproject.toml).

This module is what every pytest session in an environment with circuitgate installed imports, so it
imports nothing heavy: it adds the options (group "circuitgate") and, for a session whose arguments
reach the hypotheses suite (circuitgate's own, or a project's own suite named by the ini option
``circuitgate_suites``: docs/own-hypothesis.md), registers the plugin proper
(``circuitgate.plugin.verdicts``). Importing
that takes seconds (torch, transformers, nnsight), and nnsight mounts a ``save`` attribute on every
object, which broke another plugin imported after it (anyio's, whose typed attribute sets reject an
unannotated ``save``); sessions that never touch the suite, circuitgate's own tests among them, are
spared both.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

from circuitgate import CircuitgateError, options
from circuitgate.vocabulary import METHODS  # light: no torch

HYPOTHESES_DIR = "hypotheses"  # the suite in a checkout, beside conftest.py
HYPOTHESES_PACKAGE = "circuitgate.hypotheses"  # the suite as installed
SUITES_INI = "circuitgate_suites"  # a project's own suites: directories, relative to its ini file
PLUGIN = "circuitgate.plugin.verdicts"


# -- options ---------------------------------------------------------------------------------------
# Checked as argparse parses them (a type callable), by the engine's one check of each option
# (``circuitgate.options``), so a bad value ends the run before any plugin configures. A type callable
# that raises UsageError (not ArgumentTypeError) gives pytest's one line "ERROR: ..." rather than
# argparse's usage block.
def _option_type(name: str, check: Callable[[str], object]) -> Callable[[str], object]:
    def parse(value: str) -> object:
        try:
            return check(value)
        except CircuitgateError as e:
            raise pytest.UsageError(str(e)) from None

    parse.__name__ = name.lstrip("-")  # argparse names the type in its own messages
    return parse


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(SUITES_INI, type="paths", default=[],
                  help="circuitgate: directories of the project's own hypotheses (relative to the ini file); "
                       "a session that reaches one gets circuitgate's fixtures (docs/own-hypothesis.md)")
    group = parser.getgroup("circuitgate", "circuitgate: hypotheses about a model's internals")
    group.addoption("--model", default=None,
                    help="registry alias (see `circuitgate models`), hub id or local directory; default: organism")
    group.addoption("--method", default=None, type=_option_type("--method", options.method),
                    metavar="{" + ",".join(METHODS) + "}",
                    help="analysis method: paired = the sound default; original (or seed) = the original research "
                         "method, exactly; both = the two side by side; with --baseline, the baseline's")
    group.addoption("--prompts", default=None, help="built-in prompt set name or YAML file; default: the model's set")
    group.addoption("--config", dest="cg_config", default=None, metavar="FILE", help="thresholds as YAML")
    group.addoption("--device", default="auto", type=_option_type("--device", options.device),
                    metavar="{" + ",".join(options.DEVICES) + "}", help="auto: cuda when torch sees one")
    group.addoption("--dtype", default="auto", type=_option_type("--dtype", options.dtype),
                    metavar="{" + ",".join(options.DTYPES) + "}", help="auto: bfloat16 on cuda, float32 on cpu")
    group.addoption("--batch-size", default="auto", type=_option_type("--batch-size", options.batch_size),
                    metavar="N|auto", help="prompts per forward pass, or auto")
    group.addoption("--threads", dest="cg_threads", default="auto", type=_option_type("--threads", options.threads),
                    metavar="N|auto",
                    help="torch CPU threads; auto: 1 on the CPU (stable under contention), torch's own on a GPU")
    group.addoption("--remote", nargs="?", const=True, default=False, type=_option_type("--remote", options.remote),
                    metavar="local",
                    help="run the traces on NDIF (a hub model, no local weights; API key from $NDIF_API_KEY); "
                         "--remote local: through nnsight's local stand-in for that path, on local weights")
    group.addoption("--report-dir", default=None, help="where reports go; default reports/<model>-<timestamp>/")
    group.addoption("--h4-model", default=None,
                    help="the second model H4 compares with (alias, hub id or directory); default: the model's twin")
    group.addoption("--baseline", default=None, metavar="PATH",
                    help="a previous verdicts.json (e.g. the released checkpoint's) to gate on: the run is measured "
                         "with its settings (--config overrides them, named in the header) and fails where a skill, "
                         "a verdict or a unit regressed (docs/design.md, Gating)")


# -- is this session the suite's? -------------------------------------------------------------------
def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """A module's spec, or None for anything that is not an importable dotted name."""
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def _locations(spec: importlib.machinery.ModuleSpec | None) -> list[Path]:
    """Where a package's or module's files are."""
    if spec is None:
        return []
    out = [Path(p) for p in (spec.submodule_search_locations or [])]
    if spec.origin and spec.has_location and not out:
        out.append(Path(spec.origin))
    return [p.resolve() for p in out]


def suite_dirs(config: pytest.Config) -> tuple[Path, ...]:
    """Where the suites live: ``<rootdir>/hypotheses`` (a checkout, or a copy of the suite), the
    installed ``circuitgate.hypotheses`` package (the checkout's own folder in an editable install),
    and the project's own suites, the directories its ini file names under ``circuitgate_suites``.
    A named directory that does not exist is a usage error: a misspelt one would leave the project's
    hypotheses without fixtures, each failing on a fixture it cannot find."""
    own = [Path(p).resolve() for p in config.getini(SUITES_INI)]
    missing = [str(p) for p in own if not p.is_dir()]
    if missing:
        raise pytest.UsageError(f"{SUITES_INI}: not a directory: {', '.join(missing)}")
    dirs = [(config.rootpath / HYPOTHESES_DIR).resolve(), *_locations(_find_spec(HYPOTHESES_PACKAGE)), *own]
    return tuple(dict.fromkeys(d for d in dirs if d.is_dir()))


def in_suite(dirs: Iterable[Path], path: Any) -> bool:
    """Whether a collected path (a directory, a module) is the suite or inside it."""
    path = Path(path).resolve()
    return any(path == d or d in path.parents for d in dirs)


def reaches_suite(config: pytest.Config, dirs: Iterable[Path]) -> bool:
    """Whether an argument (a path, a node id, a module under --pyargs, or what pytest took for none:
    testpaths or the invocation dir) is the suite, inside it, or a directory holding it: ``pytest
    hypotheses``, ``pytest hypotheses/test_h2_heads.py::test_H2``, ``pytest .``, ``python -m pytest
    --pyargs circuitgate.hypotheses``; not ``pytest tests``."""
    dirs = tuple(dirs)
    for arg in config.args:
        target = arg.split("::")[0]
        paths = [(config.invocation_params.dir / target).resolve()]
        if config.option.pyargs:
            paths += _locations(_find_spec(target))
        if any(in_suite(dirs, path) or any(path in d.parents for d in dirs) for path in paths):
            return True
    return False


@pytest.hookimpl(tryfirst=True)  # the plugin proper configures in this same call (pytest_configure is historic)
def pytest_configure(config: pytest.Config) -> None:
    if reaches_suite(config, suite_dirs(config)):
        config.pluginmanager.import_plugin(PLUGIN)
