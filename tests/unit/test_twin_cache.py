"""H4's second model measured once: its results kept under the cache root (circuitgate.twin_cache)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from circuitgate import twin_cache
from circuitgate.session import Run, Settings


@pytest.fixture
def tiny_llama_dir(tmp_path_factory) -> Path:
    from conftest import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-twin"), "llama")


def _run(model: Path, twin: Path, prompts: Path, **settings) -> Run:
    return Run(Settings(model=str(model), h4_model=str(twin), prompts=str(prompts), progress=False, **settings))


def test_a_second_run_reads_the_twin_it_kept_and_never_loads_it(tiny_qwen_dir, tiny_llama_dir, prompt_file, tmp_path,
                                                                 monkeypatch):
    monkeypatch.setenv("CIRCUITGATE_CACHE", str(tmp_path / "cache"))
    first = _run(tiny_qwen_dir, tiny_llama_dir, prompt_file)
    measured = first.result("H4")
    kept = list((tmp_path / "cache" / "twin-results").iterdir())
    assert len(kept) == 1 and kept[0].suffix == ".pickle"  # no temporary file left beside it

    second = _run(tiny_qwen_dir, tiny_llama_dir, prompt_file)
    again = second.result("H4")
    assert "loaded" not in second.twin_made.__dict__  # read, not measured: the twin was never loaded
    assert second.twin_made.model_info == first.twin_made.model_info  # what verdicts.json records of it
    assert again.verdict == measured.verdict and again.summary == measured.summary
    assert {u: (c.cls, c.effect) for u, c in again.components.items()} == \
        {u: (c.cls, c.effect) for u, c in measured.components.items()}


def test_anything_the_results_depend_on_changes_the_key(tiny_qwen_dir, tiny_llama_dir, prompt_file, tmp_path):
    key = _run(tiny_llama_dir, tiny_qwen_dir, prompt_file).kept_key(("H1", "H2", "H5"))
    assert key == _run(tiny_llama_dir, tiny_qwen_dir, prompt_file, batch_size="3").kept_key(("H5", "H2", "H1"))
    # Another method, dtype, hypotheses or config.
    assert key != _run(tiny_llama_dir, tiny_qwen_dir, prompt_file, method="original").kept_key(("H1", "H2", "H5"))
    assert key != _run(tiny_llama_dir, tiny_qwen_dir, prompt_file, dtype="bfloat16").kept_key(("H1", "H2", "H5"))
    assert key != _run(tiny_llama_dir, tiny_qwen_dir, prompt_file).kept_key(("H1", "H2"))
    config = tmp_path / "seed.yaml"
    config.write_text("h5: {seed: 1}\n")
    assert key != _run(tiny_llama_dir, tiny_qwen_dir, prompt_file, config=str(config)).kept_key(("H1", "H2", "H5"))
    # Other prompts: one answer changed.
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text(prompt_file.read_text().replace("answer: w1", "answer: w3", 1))
    assert key != _run(tiny_llama_dir, tiny_qwen_dir, prompts).kept_key(("H1", "H2", "H5"))
    # The same weights beside another tokenizer or config file: another model.
    other = shutil.copytree(tiny_llama_dir, tmp_path / "copy")
    assert key == _run(other, tiny_qwen_dir, prompt_file).kept_key(("H1", "H2", "H5"))  # where it lies does not count
    (other / "generation_config.json").write_text('{"temperature": 0.5}')
    assert key != _run(other, tiny_qwen_dir, prompt_file).kept_key(("H1", "H2", "H5"))


def test_a_truncated_or_foreign_file_is_measured_again(tmp_path):
    assert twin_cache.load("abc", tmp_path) is None
    path = tmp_path / "twin-results" / "abc.pickle"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x80\x05truncated")
    assert twin_cache.load("abc", tmp_path) is None
    import pickle

    path.write_bytes(pickle.dumps({"not": "a twin"}))
    assert twin_cache.load("abc", tmp_path) is None


def test_a_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(twin_cache.pickle, "dump", broken)
    with pytest.raises(KeyboardInterrupt):
        twin_cache.store("abc", object(), tmp_path)  # type: ignore[arg-type]
    assert list((tmp_path / "twin-results").iterdir()) == []
