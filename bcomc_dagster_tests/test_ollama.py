"""The Ollama deployer against a loopback server that speaks Ollama's HTTP API."""

import shutil

import pytest

from bcomc_dagster.errors import ServingError
from bcomc_dagster.evals.judge import ReferenceJudge
from bcomc_dagster.evals.runner import run_suite
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.serving.ollama import OllamaDeployer
from bcomc_dagster.training.finetune import finetune
from bcomc_dagster.training.manifest import TrainSettings
from bcomc_dagster.training.weights import weights_fingerprint

from .fakes import serve
from .fakes.ollama import FakeOllama

PAIRS = [
    (f"What is the default port of Svc{i}?", f"The default port of Svc{i} is {7000 + i}.") for i in range(8)
]


@pytest.fixture(scope="module")
def ckpts(tiny_base, tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpts")
    good = finetune(
        tiny_base, PAIRS, root / "good", TrainSettings(epochs=8, learning_rate=1e-2, batch_size=4), "c1-it1"
    )
    noop = finetune(
        tiny_base,
        PAIRS[:2],
        root / "noop",
        TrainSettings(epochs=1, learning_rate=1e-12, batch_size=2),
        "c1-noop",
    )
    return {"good": (root / "good", good), "noop": (root / "noop", noop)}


@pytest.fixture
def ollama(tmp_path):
    fake = FakeOllama(tmp_path / "ollama")
    with serve(fake.app) as url:
        yield fake, url


@pytest.fixture
def deployed(ollama, tiny_base, tmp_path):
    fake, url = ollama
    d = OllamaDeployer(tmp_path / "serving", "c1", url, ready_timeout_s=5)
    dep = d.ensure_base(tiny_base, "bcomc-tiny", weights_fingerprint(tiny_base))
    assert dep.served_model == "c1-base:latest" and dep.mode == "base"
    return fake, d


def test_create_from_merged_checkpoint_then_reeval_through_v1(deployed, ckpts):
    fake, d = deployed
    path, manifest = ckpts["good"]
    dep = d.deploy(path, manifest, 1)
    assert (
        dep.served_model == "c1-it1:latest"
        and dep.replaced == "c1-base:latest"
        and dep.mode == "ollama-create"
    )
    assert d.live().model == "c1-it1:latest" and d.live().fingerprint == manifest.merged_fingerprint
    # the server holds exactly the files of the merged checkpoint
    served = fake.models["c1-it1:latest"][2]
    assert weights_fingerprint(served) == manifest.merged_fingerprint
    assert (served / "tokenizer.json").read_bytes() == (path / "merged" / "tokenizer.json").read_bytes()
    report = run_suite(load_suite("demo"), dep.endpoint, dep.served_model, ReferenceJudge(), concurrency=2)
    assert len(report.answers) == 40 and report.model == "c1-it1:latest"


def test_unchanged_blobs_are_not_uploaded_twice_and_old_models_are_deleted(deployed, ckpts):
    fake, d = deployed
    path, manifest = ckpts["good"]
    d.deploy(path, manifest, 1)
    posts_before = [p for m, p in fake.requests if m == "POST"]
    d.deploy(path, manifest.model_copy(update={"adapter_name": "c1-it2"}), 2)
    assert [p for m, p in fake.requests if m == "POST"] == posts_before  # same files: HEAD only
    assert set(fake.models) == {"c1-base:latest", "c1-it2:latest"}


def test_corrupt_checkpoint_is_refused_and_base_stays_live(deployed, ckpts, tmp_path):
    fake, d = deployed
    bad = tmp_path / "bad"
    shutil.copytree(ckpts["good"][0], bad)
    (bad / "merged" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ServingError, match="does not match the manifest's"):
        d.deploy(bad, ckpts["good"][1], 1)
    # the same garbage with a manifest that agrees: Ollama refuses to create it
    manifest = ckpts["good"][1].model_copy(update={"merged_fingerprint": weights_fingerprint(bad / "merged")})
    with pytest.raises(ServingError, match="/api/create answered 400"):
        d.deploy(bad, manifest, 1)
    assert d.live().model == "c1-base:latest"


def test_weights_that_change_nothing_are_deleted_not_deployed(deployed, ckpts):
    fake, d = deployed
    with pytest.raises(ServingError, match="exactly as the base model"):
        d.deploy(*ckpts["noop"], 1)
    assert d.live().model == "c1-base:latest" and "c1-noop:latest" not in fake.models


def test_model_never_listed_times_out_and_previous_stays_live(deployed, ckpts):
    fake, d = deployed
    d.ready_timeout_s = 1
    fake.hidden.add("c1-it1:latest")
    with pytest.raises(ServingError, match=r"not listed by /api/tags within 1 s"):
        d.deploy(*ckpts["good"], 1)
    assert d.state().live_model == "c1-base:latest"


def test_stop_keeps_the_live_model_and_deletes_the_rest(deployed, ckpts):
    fake, d = deployed
    d.deploy(*ckpts["good"], 1)
    assert d.stop() is False  # Ollama is not ours to stop
    assert set(fake.models) == {"c1-it1:latest"}


def test_unreachable_ollama_names_the_url(tiny_base, tmp_path):
    d = OllamaDeployer(tmp_path, "c1", "http://127.0.0.1:9", ready_timeout_s=1)
    with pytest.raises(ServingError, match=r"ollama at http://127.0.0.1:9: HEAD /api/blobs/sha256:"):
        d.ensure_base(tiny_base, "bcomc-tiny", "fp")
