"""The deployer against a real vLLM server (CPU build) on loopback."""

import httpx
import pytest

from bcomc_dagster.errors import ServingError
from bcomc_dagster.evals.judge import ReferenceJudge
from bcomc_dagster.evals.runner import run_suite
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.serving import process
from bcomc_dagster.serving.local import LocalDeployer
from bcomc_dagster.training.base_model import build_base_model
from bcomc_dagster.training.finetune import TrainSettings, finetune, weights_fingerprint

from .conftest import MODELS

pytestmark = pytest.mark.server
PAIRS = [(f"What is the default port of Svc{i}?", f"The default port of Svc{i} is {7000 + i}.") for i in range(16)]


@pytest.fixture(scope="module")
def base():
    return build_base_model(cache_dir=MODELS)


@pytest.fixture(scope="module")
def ckpt(base, tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "checkpoint"
    finetune(base, PAIRS, out, TrainSettings(epochs=6, learning_rate=5e-3, batch_size=8, threads=2), "t-it1")
    return out


@pytest.fixture(scope="module")
def deployer(base, tmp_path_factory):
    d = LocalDeployer(tmp_path_factory.mktemp("serving"), engine=process.VLLM_ENGINE, ready_timeout_s=240)
    dep = d.ensure_base(base, "bcomc-tiny", weights_fingerprint(base))
    assert dep.server_started and dep.mode == "base"
    yield d
    d.stop()


def test_hot_swap_serves_the_adapter_and_reeval_uses_it(deployer, ckpt):
    dep = deployer.deploy(ckpt, "t-it1", 1, "fp1")
    assert dep.mode == "hot-swap" and dep.served_model == "t-it1" and dep.replaced == "bcomc-tiny"
    models = {m["id"]: m for m in httpx.get(f"{deployer.state().url}/v1/models").json()["data"]}
    assert models["t-it1"]["parent"] == "bcomc-tiny" and models["t-it1"]["root"] == str(ckpt / "adapter")
    report = run_suite(load_suite("demo"), dep.endpoint, dep.served_model, ReferenceJudge(), concurrency=4)
    assert report.model == "t-it1" and len(report.answers) == 40
    assert deployer.running().live_model == "t-it1"
    # a second iteration gets a new name; the old adapter is unloaded
    dep2 = deployer.deploy(ckpt, "t-it2", 2, "fp2")
    assert dep2.replaced == "t-it1"
    ids = [m["id"] for m in httpx.get(f"{deployer.state().url}/v1/models").json()["data"]]
    assert "t-it2" in ids and "t-it1" not in ids


def test_missing_checkpoint_fails_and_previous_stays_live(deployer, tmp_path):
    before = deployer.running().live_model
    with pytest.raises(ServingError, match="no adapter_config.json; the checkpoint is missing or incomplete"):
        deployer.deploy(tmp_path / "nothing", "t-missing", 9, "x")
    assert deployer.running().live_model == before


def test_corrupt_checkpoint_fails_and_previous_stays_live(deployer, ckpt, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    (bad / "adapter" / "adapter_model.safetensors").write_bytes(b"not weights")
    before = deployer.running().live_model
    with pytest.raises(ServingError, match="load_lora_adapter answered"):
        deployer.deploy(bad, "t-bad", 9, "x")
    st = deployer.running()
    assert st is not None and st.live_model == before
    r = httpx.post(f"{st.url}/v1/chat/completions", json={"model": before, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200


def test_server_that_never_gets_ready_is_stopped_with_a_clear_error(base, tmp_path):
    d = LocalDeployer(tmp_path, engine=process.VLLM_ENGINE, ready_timeout_s=2)
    with pytest.raises(ServingError, match=r"not ready within 2 s \(stopped it\)"):
        d.ensure_base(base, "bcomc-tiny", "fp")
    assert d.state() is None  # nothing recorded as live


def test_server_that_crashes_at_start_is_reported(tmp_path):
    (tmp_path / "model").mkdir()  # no config.json: vLLM exits
    d = LocalDeployer(tmp_path / "s", engine=process.VLLM_ENGINE, ready_timeout_s=240)
    with pytest.raises(ServingError, match="exited before it was ready"):
        d.ensure_base(tmp_path / "model", "broken", "fp")
