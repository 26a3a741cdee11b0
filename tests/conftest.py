"""Shared fixtures for circuitgate's own tests: tiny Qwen2/Llama checkpoints built from configs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

pytest_plugins = ["pytester"]

# The plugin proper, imported once here for the whole session: pytester's in-process runs drop every
# module their run imported when it ends, so a second run would import circuitgate afresh while
# objects of the first (a cached Activations) survive, and fail its type checks. (A session of
# circuitgate's own tests does not reach the suite, so the entry point alone would not import it.)
import circuitgate.plugin.verdicts  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

torch.set_num_threads(1)  # 2 threads under CPU contention slow torch 20-100x (docs/nnsight.md, Threads)


# Under pytest-xdist, the organisms each worker builds as its session starts, before its first test:
# the family's three builds are the slow tier's longest steps (80-100 s each on one core), and built on
# first use they ran one after another while the other worker waited for them on the builder's lock.
# Built here, the two workers build at once; a worker that needs one the other is building waits as before.
FIRST_BUILDS = {"gw0": ("organism",), "gw1": ("organism-llama", "organism-null")}
NEEDS_FAMILY = pytest.StashKey[bool]()


# The files pytest-xdist hands out first (--dist loadfile gives a worker its next file as it runs out),
# heaviest first, so that the last files to go out are short and the two workers end together. Those
# that need organism-llama or organism-null come after work enough for gw1 to have built them. By
# default xdist hands files out by their number of tests, most first: the heavy files, few tests each,
# went out last, and one worker ran 150 s longer than the other (docs/validation.md, "The test suite").
HEAVY_FIRST = ("e2e/test_screen_validation.py", "e2e/test_real_weights.py", "e2e/test_screen_on_the_organism.py",
               "validity/test_paired_method.py", "e2e/test_end_to_end.py", "e2e/test_family.py",
               "e2e/test_accuracy_on_the_family.py", "e2e/test_wheel.py", "plugin/test_plugin.py",
               "unit/test_benchmarks.py")


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):  # pytest-xdist: hand files out in collection order
        config.option.loadscopereorder = False


def _rank(item) -> int:
    path = item.path.relative_to(Path(__file__).parent).as_posix()
    return HEAVY_FIRST.index(path) if path in HEAVY_FIRST else len(HEAVY_FIRST)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """The heavy files first (``HEAVY_FIRST``), the rest in their order; whether a selected test builds
    organisms (after ``-m``/``-k`` deselected theirs)."""
    items.sort(key=_rank)
    config.stash[NEEDS_FAMILY] = any("organism_family" in getattr(item, "fixturenames", ()) for item in items)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    """Every module the tests import is imported now: leave their objects out of every later garbage
    collection, by the plugin's own step for a suite run (docs/validation.md, "The test suite"). The
    fast tier in one process spent 15.5 s of 131 in full collections, 6.1 s with this."""
    circuitgate.plugin.verdicts.freeze_imports()


@pytest.fixture(scope="session", autouse=True)
def organism_cache(tmp_path_factory, request):
    """Every test session builds into a cache of its own: no test reads or writes the user's
    ``~/.cache/circuitgate`` (subprocesses inherit the variable). ``CIRCUITGATE_TEST_CACHE`` names a
    directory to use instead, so that the inner loop can keep one family across sessions (builds are
    keyed by their recipe's hash: a changed recipe is built anew there)."""
    kept = os.environ.get("CIRCUITGATE_TEST_CACHE")
    if kept:
        root = Path(kept)
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        # Under pytest-xdist each worker's basetemp lies in one the run shares: the workers build each
        # organism once there (the builder's lock makes a second worker wait for the first's build).
        root = tmp_path_factory.getbasetemp().parent / "circuitgate-cache"
        root.mkdir(exist_ok=True)
    else:
        root = tmp_path_factory.mktemp("circuitgate-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("CIRCUITGATE_CACHE", str(root))
    if request.config.stash.get(NEEDS_FAMILY, False):
        from circuitgate.organism import ensure_built

        for name in FIRST_BUILDS.get(os.environ.get("PYTEST_XDIST_WORKER", ""), ()):
            ensure_built(name, progress=False)
    yield root
    patch.undo()


class _Family(dict):
    """The organism family in the session's cache, each built on first use (about 100 s each)."""

    def __missing__(self, name: str) -> Path:
        from circuitgate.organism import ensure_built

        self[name] = ensure_built(name, progress=False)
        return self[name]


@pytest.fixture(scope="session")
def organism_family(organism_cache) -> dict[str, Path]:
    return _Family()

TINY_WORDS = ["<pad>", "<unk>", "<eos>"] + [f"w{i}" for i in range(61)]


def build_tiny_model(directory: Path, arch: str, seed: int = 0) -> Path:
    """A random 2-layer model of the given family with a word-level tokenizer, saved as a HF dir.

    initializer_range 0.3: at the default 0.02 attention is near-uniform and ablations do nothing
    (docs/nnsight.md, "Tiny random models").
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    families = {"qwen2": (Qwen2Config, Qwen2ForCausalLM), "llama": (LlamaConfig, LlamaForCausalLM)}
    config_cls, model_cls = families[arch]
    config = config_cls(
        vocab_size=len(TINY_WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, initializer_range=0.3, tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=2,
    )
    torch.manual_seed(seed)
    model_cls(config).save_pretrained(directory)
    vocab = {w: i for i, w in enumerate(TINY_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", padding_side="left"
    ).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session", params=["qwen2", "llama"])
def tiny_model_dir(request, tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2-only"), "qwen2")



@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium for the browser checks of report.html, installed on first use. A
    machine where it cannot be had fails the test, saying why: a skipped browser check proves nothing."""
    from browser import find_or_install_chromium

    path, why = find_or_install_chromium()
    if path is None:
        pytest.fail(f"chromium is needed for the browser test and could not be installed ({why})", pytrace=False)
    return path


# -- the real hypotheses suite under pytester (plugin and JUnit tests) ---------------------------
@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory) -> Path:
    """30 pairs over the tiny model's vocabulary; reasoning prompts are longer, as in the paper."""
    import random

    rng = random.Random(0)
    lines = ["schema: 1", "name: tiny", "pairs:"]
    for i in range(30):
        recall = " ".join(f"w{rng.randrange(3, 61)}" for _ in range(3))
        reasoning = " ".join(f"w{rng.randrange(3, 61)}" for _ in range(8))
        lines += [f"  - id: p{i}", f"    recall: {{prompt: '{recall}', answer: w1}}",
                  f"    reasoning: {{prompt: '{reasoning}', answer: w2}}"]
    path = tmp_path_factory.mktemp("prompts") / "tiny.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def suite(pytester: pytest.Pytester, tiny_qwen_dir, prompt_file, tmp_path, monkeypatch):
    """A pytester dir holding the real hypotheses suite and conftest; returns a runner."""
    shutil.copytree(REPO / "hypotheses", pytester.path / "hypotheses")
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    # An ini file pins the rootdir to the suite's copy, as pyproject.toml does in the repository, with
    # its junit_family (xunit1: per-test properties; pytest would write xunit2 otherwise).
    pytester.makeini("[pytest]\njunit_family = xunit1\n")
    monkeypatch.setenv("CIRCUITGATE_CACHE", str(tmp_path / "cache"))

    def run(*args: str) -> pytest.RunResult:
        return pytester.runpytest("hypotheses", "--model", str(tiny_qwen_dir), "--prompts", str(prompt_file),
                                  "-p", "no:cacheprovider", *args)

    return run
