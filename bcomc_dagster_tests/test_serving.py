"""The vLLM deployer against real vLLM servers (CPU build) on loopback, in both modes.

Every failure case ends with the previous deployment still serving and an error that says why.
Run alone with ``pytest -m server bcomc_dagster_tests/test_serving.py``.
"""

import re
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest

from bcomc_dagster.errors import ServingError
from bcomc_dagster.evals.judge import ReferenceJudge
from bcomc_dagster.evals.runner import run_suite
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.serving import process
from bcomc_dagster.serving.server import ServerDeployer
from bcomc_dagster.training.base_model import build_base_model
from bcomc_dagster.training.finetune import finetune
from bcomc_dagster.training.manifest import TrainSettings
from bcomc_dagster.training.weights import weights_fingerprint

from .conftest import MODELS

pytestmark = pytest.mark.server
PAIRS = [
    (f"What is the default port of Svc{i}?", f"The default port of Svc{i} is {7000 + i}.") for i in range(16)
]
FAST = TrainSettings(epochs=6, learning_rate=5e-3, batch_size=8, threads=2)


@pytest.fixture(scope="module")
def base():
    return build_base_model(cache_dir=MODELS)


@pytest.fixture(scope="module")
def ckpt(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    return out, finetune(base, PAIRS, out, FAST, "t-it1")


@pytest.fixture(scope="module")
def noop_ckpt(base, tmp_path_factory):
    """A LoRA that trained at a learning rate of 1e-12: it loads fine and changes nothing."""
    out = tmp_path_factory.mktemp("noop") / "checkpoint"
    return out, finetune(
        base, PAIRS[:4], out, TrainSettings(epochs=1, learning_rate=1e-12, batch_size=4), "t-noop"
    )


@pytest.fixture(scope="module")
def deployer(base, tmp_path_factory):
    d = ServerDeployer(tmp_path_factory.mktemp("serving"), engine=process.VLLM_ENGINE, ready_timeout_s=240)
    dep = d.ensure_base(base, "bcomc-tiny", weights_fingerprint(base))
    assert dep.server_started and dep.mode == "base" and len(d.state().base_probes) == 3
    yield d
    d.stop()


def _models(url: str) -> dict[str, dict]:
    return {m["id"]: m for m in httpx.get(f"{url}/v1/models").json()["data"]}


def _named(ckpt, name):
    path, manifest = ckpt
    return path, manifest.model_copy(update={"adapter_name": name})


# -- hot-swap ---------------------------------------------------------------------------------------
def test_hot_swap_serves_the_adapter_and_reeval_uses_it(deployer, ckpt):
    path, manifest = ckpt
    dep = deployer.deploy(path, manifest, 1)
    assert dep.mode == "hot-swap" and dep.served_model == "t-it1" and dep.replaced == "bcomc-tiny"
    assert dep.fingerprint == manifest.adapter_fingerprint
    models = _models(deployer.state().url)
    assert models["t-it1"]["parent"] == "bcomc-tiny" and models["t-it1"]["root"] == str(path / "adapter")
    report = run_suite(load_suite("demo"), dep.endpoint, dep.served_model, ReferenceJudge(), concurrency=4)
    assert report.model == "t-it1" and len(report.answers) == 40
    assert deployer.live().model == "t-it1" and deployer.live().iteration == 1
    # the next iteration gets a new name; the old adapter is unloaded
    dep2 = deployer.deploy(*_named(ckpt, "t-it2"), 2)
    assert dep2.replaced == "t-it1"
    assert "t-it2" in _models(deployer.state().url) and "t-it1" not in _models(deployer.state().url)


def test_missing_checkpoint_fails_and_previous_stays_live(deployer, ckpt, tmp_path):
    before = deployer.live()
    with pytest.raises(ServingError, match="no adapter_config.json; the checkpoint is missing or incomplete"):
        deployer.deploy(tmp_path / "nothing", ckpt[1], 9)
    assert deployer.live() == before


def test_checkpoint_changed_after_training_is_refused_before_loading(deployer, ckpt, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ckpt[0], bad)
    (bad / "adapter" / "adapter_model.safetensors").write_bytes(b"not weights")
    before = deployer.live()
    with pytest.raises(ServingError, match="does not match the manifest's"):
        deployer.deploy(bad, ckpt[1].model_copy(update={"adapter_name": "t-bad"}), 9)
    assert deployer.live() == before and "t-bad" not in _models(deployer.state().url)


def test_adapter_the_server_rejects_leaves_previous_serving(deployer, ckpt, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(ckpt[0], bad)
    (bad / "adapter" / "adapter_model.safetensors").write_bytes(b"not weights")
    manifest = ckpt[1].model_copy(
        update={"adapter_name": "t-bad", "adapter_fingerprint": weights_fingerprint(bad / "adapter")}
    )
    before = deployer.live()
    with pytest.raises(ServingError, match="load_lora_adapter answered"):
        deployer.deploy(bad, manifest, 9)
    assert deployer.live() == before
    body = {"model": before.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert httpx.post(f"{deployer.state().url}/v1/chat/completions", json=body).status_code == 200


def test_adapter_that_changes_nothing_is_not_passed_off_as_deployed(deployer, noop_ckpt):
    before = deployer.live()
    with pytest.raises(ServingError, match="answers the probes exactly as the base model"):
        deployer.deploy(*noop_ckpt, 9)
    assert deployer.live() == before and "t-noop" not in _models(deployer.state().url)


def test_hot_swap_on_a_server_the_campaign_does_not_own(deployer, ckpt, base, tmp_path):
    """serving.base_url: a vLLM someone else runs (here: the module's server)."""
    url = deployer.state().url
    ext = ServerDeployer(tmp_path, base_url=f"{url}/v1", ready_timeout_s=10)
    dep = ext.ensure_base(base, "some-other-name", "fp-base")  # the only base model listed is picked
    assert dep.served_model == "bcomc-tiny" and not dep.server_started and not ext.owns_server
    dep = ext.deploy(*_named(ckpt, "ext-it1"), 1)
    assert dep.endpoint == f"{url}/v1" and "ext-it1" in _models(url)
    assert ext.stop() is False and process.healthy(url)  # not ours to stop


# -- restart ----------------------------------------------------------------------------------------
def _server_temp_files() -> set[str]:
    """What model servers leave in the system temp folder: vLLM's uuid-named sockets, our socket folders."""
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    return {
        p.name
        for p in Path(tempfile.gettempdir()).iterdir()
        if uuid.fullmatch(p.name) or p.name.startswith("bcomc-")
    }


def test_restart_mode_replaces_the_server_only_once_the_new_one_is_verified(base, ckpt, noop_ckpt, tmp_path):
    before = _server_temp_files()
    d = ServerDeployer(tmp_path, engine=process.VLLM_ENGINE, mode="restart", ready_timeout_s=240)
    d.ensure_base(base, "bcomc-tiny", weights_fingerprint(base))
    old = d.state()
    try:
        path, manifest = ckpt
        dep = d.deploy(path, manifest, 1)
        new = d.state()
        assert dep.mode == "restart" and dep.server_started and dep.fingerprint == manifest.merged_fingerprint
        assert new.pid != old.pid and not process.pid_alive(old.pid) and not process.healthy(old.url)
        assert _models(new.url)["t-it1"]["root"] == str(path / "merged")
        assert d.live().model == "t-it1"

        # a new server that never gets ready: stopped, and the old one keeps serving
        d.ready_timeout_s = 1
        with pytest.raises(ServingError, match=r"not ready within 1 s \(stopped it\)"):
            d.deploy(*_named(ckpt, "t-it2"), 2)
        assert d.state().pid == new.pid and d.live().model == "t-it1"
        # weights that change nothing: the new server is stopped again
        d.ready_timeout_s = 240
        with pytest.raises(ServingError, match="exactly as the base model"):
            d.deploy(*noop_ckpt, 3)
        assert d.state().pid == new.pid and d.live().model == "t-it1"
        # a corrupt merged checkpoint never starts a server
        bad = tmp_path / "bad"
        shutil.copytree(path, bad)
        (bad / "merged" / "model.safetensors").write_bytes(b"x")
        with pytest.raises(ServingError, match="does not match the manifest's"):
            d.deploy(bad, manifest, 4)
        assert d.live().model == "t-it1"
    finally:
        d.stop()
    assert d.live() is None
    assert _server_temp_files() <= before  # three servers started and stopped: no socket left behind


# -- start-up faults --------------------------------------------------------------------------------
def test_server_that_never_gets_ready_is_stopped_with_a_clear_error(base, tmp_path):
    d = ServerDeployer(tmp_path, engine=process.VLLM_ENGINE, ready_timeout_s=2)
    with pytest.raises(ServingError, match=r"not ready within 2 s \(stopped it\)"):
        d.ensure_base(base, "bcomc-tiny", "fp")
    assert d.state() is None  # nothing recorded as live


def test_server_that_crashes_at_start_is_reported(tmp_path):
    (tmp_path / "model").mkdir()  # no config.json: vLLM exits
    d = ServerDeployer(tmp_path / "s", engine=process.VLLM_ENGINE, ready_timeout_s=240)
    with pytest.raises(ServingError, match="exited before it was ready"):
        d.ensure_base(tmp_path / "model", "broken", "fp")


def test_external_server_that_is_not_there(base, tmp_path):
    d = ServerDeployer(tmp_path, base_url=f"http://127.0.0.1:{process.free_port()}", ready_timeout_s=1)
    with pytest.raises(ServingError, match="not ready within 1 s"):
        d.ensure_base(base, "bcomc-tiny", "fp")
