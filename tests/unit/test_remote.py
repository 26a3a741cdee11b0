"""``--remote`` offline (docs/nnsight.md, "Remote execution"): traces through nnsight's remote path give
what local traces give.

Two remote paths run here, both against the tiny model's weights in this process:

- ``remote="local"`` (``--remote local``): nnsight's own stand-in. The request is serialized and
  deserialized, then run against the caller's frame.
- ``remote=True`` (``--remote``): the client NDIF sees, the model wrapped on the meta device from a
  Hugging Face cache that holds its config and tokenizer only, with nnsight's remote backend replaced by
  ``_Server``: NDIF's side of a request as nnsight's ``RemoteBackend`` documents it. The request is
  deserialized and run where circuitgate cannot be imported, with grad on, and only the block's saved
  variables come back, through ``torch.save`` and ``torch.load``. That is stricter than nnsight's
  stand-in, which passes a block that fills a list made outside it (``test_only_saved_variables_come_back``).

Not shown offline: NDIF's own server, its dtype and devices, its deployment of a model, the network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.abc
import io
import shutil
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from circuitgate import CircuitgateError
from circuitgate.extract import SITES, extract, left_pad, tokenize
from circuitgate.models.loading import LoadedModel, load_model, model_info, remote_sha256
from circuitgate.models.registry import resolve
from circuitgate.session import Settings

REPO = Path(__file__).resolve().parents[2]
HUB = "circuitgate-test/tiny"  # never looked up: the HF cache below answers for it, offline
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# Rows of different lengths in batches of 2: left padding, and batches of different widths.
TEXTS = ["w3 w4 w5", "w6 w7 w8 w9 w10 w11", "w12", "w13 w14 w15 w16"]


class _NoCircuitgate(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any, target: Any = None) -> None:
        if name.split(".")[0] == "circuitgate":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


@contextlib.contextmanager
def _without_circuitgate() -> Iterator[None]:
    """As on NDIF: circuitgate is not installed (its modules unloaded, and no finder reaches them)."""
    hidden = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "circuitgate"}
    finder = _NoCircuitgate()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        sys.modules.update(hidden)


class _Server:
    """NDIF's side of a request, after nnsight's ``RemoteBackend``: the server rebuilds the block on its
    own model, runs it, and returns the block's saved variables by name; the client loads them with
    ``torch.load`` on the CPU, marks them saved and writes them into the caller's frame."""

    def __init__(self, model: Any, env: dict) -> None:
        self.model, self.env = model, env

    def __call__(self, tracer: Any) -> None:
        from nnsight.ndif import pull_env
        from nnsight.schema.request import RequestModel
        from nnsight.tracing.tracer import _saves, save
        from nnsight.tracing.util import push

        pull_env()  # as RemoteBackend does before a request
        blob = RequestModel.serialize(tracer)
        self.model._remoteable_set_env(self.env)
        with _without_circuitgate():
            request = RequestModel.deserialize(blob, self.model._remoteable_persistent_objects())
            with torch.enable_grad():  # the server's grad mode, not the caller's no_grad
                request.execute(request.info.code)
        saved = {name: value for name, value in request.info.frame.f_locals.items() if id(value) in _saves()}
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        result = torch.load(io.BytesIO(buffer.getvalue()), map_location="cpu", weights_only=False)
        for value in result.values():
            save(value)
        push(tracer.info.frame, result)


@pytest.fixture(scope="module")
def local(tiny_qwen_dir: Path) -> LoadedModel:
    return load_model(resolve(str(tiny_qwen_dir)), "cpu", "float32", progress=False)


@pytest.fixture
def hub_cache(tiny_qwen_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Hugging Face cache holding the tiny model's config and tokenizer under ``HUB``, no weights;
    the hub itself is off."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / f"models--{HUB.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for f in tiny_qwen_dir.glob("*.json"):
        shutil.copy(f, snapshot / f.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot


@pytest.fixture
def api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import nnsight

    monkeypatch.setenv("NDIF_API_KEY", "test-key")
    monkeypatch.setattr(nnsight.CONFIG.API, "APIKEY", nnsight.CONFIG.API.APIKEY)  # load_model sets it: restored


@pytest.fixture
def ndif(hub_cache: Path, api_key: None, local: LoadedModel, monkeypatch: pytest.MonkeyPatch) -> LoadedModel:
    """The model as ``--remote`` loads it, its requests served by ``_Server`` on the tiny model's weights."""
    from nnsight.modeling.transformers import TransformersModel

    nnsight_backend = TransformersModel._remote_backend  # remote="local" keeps nnsight's stand-in

    def backend(self: Any, remote: bool | str, *args: Any) -> Any:
        if remote is True:
            return _Server(local.model, self._remoteable_get_env())
        return nnsight_backend(self, remote, *args)

    monkeypatch.setattr(TransformersModel, "_remote_backend", backend)
    return load_model(resolve(HUB), progress=False, remote=True)


@pytest.fixture(params=["local", "ndif"])
def remote(request: pytest.FixtureRequest, local: LoadedModel) -> LoadedModel:
    """The model under ``--remote local`` and under ``--remote``."""
    return dataclasses.replace(local, remote="local") if request.param == "local" else request.getfixturevalue("ndif")


def _inputs(loaded: LoadedModel) -> dict[str, torch.Tensor]:
    ids, mask = left_pad(tokenize(loaded, TEXTS), loaded.tokenizer.pad_token_id)
    return {"input_ids": ids, "attention_mask": mask}


def test_extraction_matches_a_local_run(remote: LoadedModel, local: LoadedModel) -> None:
    want = extract(local, TEXTS, batch_size=2, progress=False)
    got = extract(remote, TEXTS, batch_size=2, progress=False)
    for site in (*SITES, "lengths"):
        np.testing.assert_allclose(getattr(got, site), getattr(want, site), rtol=0, atol=1e-6, err_msg=site)


def _logits(loaded: LoadedModel, edit: bool) -> torch.Tensor:
    """Last-position logits, with head 0 of layer 1 and layer 1's MLP output zeroed in place if ``edit``."""
    m, ad, hd = loaded.model, loaded.adapter, loaded.shape.head_dim
    with torch.no_grad():
        with loaded.trace(_inputs(loaded), logits_to_keep=1):
            if edit:
                ad.head_input(m, 1)[:, :, :hd] = 0
                ad.mlp_output(m, 1)[:] = 0
            logits = ad.logits(m).clone().save()
    return logits


def test_an_in_place_edit_gives_the_local_logits(remote: LoadedModel, local: LoadedModel) -> None:
    want = _logits(local, edit=True)
    got = _logits(remote, edit=True)
    assert got.shape == want.shape and got.shape[:2] == (len(TEXTS), 1)  # logits_to_keep=1 reached the forward
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert (_logits(local, edit=False) - want).abs().max() > 1e-2  # the edit changes what is compared


def test_only_saved_variables_come_back(ndif: LoadedModel, local: LoadedModel) -> None:
    """Why extraction makes and saves its dict inside the block: NDIF returns saved variables by name,
    never what the block did to an object made outside it, while nnsight's stand-in runs the block on
    the caller's own objects."""
    for loaded, filled in ((dataclasses.replace(local, remote="local"), 1), (ndif, 0)):
        m, ad = loaded.model, loaded.adapter
        rows: list[torch.Tensor] = []
        with torch.no_grad():
            with loaded.trace(_inputs(loaded)):
                rows.append(ad.residual(m, 0)[:, -1].clone())
                kept = ad.residual(m, 0)[:, -1].clone().save()
        assert len(rows) == filled and kept.shape == (len(TEXTS), local.shape.hidden)


def test_remote_reads_no_weights(ndif: LoadedModel) -> None:
    assert {p.device.type for p in ndif.hf.parameters()} == {"meta"}
    assert ndif.model._remoteable_get_env()["attn_implementation"] == "eager"  # sent with every request
    assert ndif.sha256 == remote_sha256(HUB, COMMIT) and ndif.revision == COMMIT
    info = model_info(ndif)
    assert (info["id"], info["remote"], info["revision"]) == (HUB, "ndif", COMMIT)


def test_remote_without_an_api_key_is_one_line(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    for make in (lambda: load_model(resolve(HUB), progress=False, remote=True), lambda: Settings(remote=True)):
        with pytest.raises(CircuitgateError) as error:
            make()
        assert "environment variable NDIF_API_KEY" in str(error.value) and "\n" not in str(error.value)
    assert Settings(remote="local").remote == "local"  # the local stand-in needs no key


def test_remote_says_what_is_missing(tiny_qwen_dir: Path, tmp_path: Path, api_key: None,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CircuitgateError, match=r"--remote needs its config and tokenizer \(not its weights\).*"
                                               r"HF_HUB_OFFLINE is set") as error:
        load_model(resolve(HUB), progress=False, remote=True)
    assert "\n" not in str(error.value)
    with pytest.raises(CircuitgateError, match="--remote runs a hub model on NDIF"):
        load_model(resolve(str(tiny_qwen_dir)), progress=False, remote=True)


@pytest.mark.parametrize(("args", "value"), [
    ([], False), (["--remote"], True), (["--remote", "local"], "local"), (["--remote=local"], "local"),
])
def test_the_option_parses(pytester: pytest.Pytester, api_key: None, args: list[str], value: bool | str) -> None:
    from circuitgate.plugin.verdicts import SESSION_KEY

    # The suite in the session's reach: only a session that reaches it configures a run.
    shutil.copytree(REPO / "hypotheses", pytester.path / "hypotheses")
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    # no:unraisableexception: its clean-up collects garbage five times, 1.4-2.4 s per config here (measured)
    config = pytester.parseconfigure("-p", "no:cacheprovider", "-p", "no:unraisableexception", *args)
    assert config.option.remote == value and config.stash[SESSION_KEY].run.settings.remote == value


@pytest.mark.parametrize(("args", "key", "message"), [
    (["--remote", "ndif"], "test-key", "--remote: unknown value 'ndif' (--remote alone runs on NDIF, --remote local "
                                       "through nnsight's local stand-in; a bare --remote goes after the test paths)"),
    (["--remote"], None, "--remote runs on NDIF and needs an API key in the environment variable NDIF_API_KEY "
                         "(one from https://ndif.us); --remote local needs none"),
], ids=["bad-value", "no-key"])
def test_a_bad_value_or_a_missing_key_is_one_line(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                  args: list[str], key: str | None, message: str) -> None:
    if key is None:
        monkeypatch.delenv("NDIF_API_KEY", raising=False)
    else:
        monkeypatch.setenv("NDIF_API_KEY", key)
    shutil.copytree(REPO / "hypotheses", pytester.path / "hypotheses")
    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    result = pytester.runpytest("-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert result.stderr.lines[0] == f"ERROR: {message}"
    assert "Traceback" not in result.stderr.str()
