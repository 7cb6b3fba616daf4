"""The GPU paths, as far as a CPU host can show them: the cards nvidia-smi lists, one card per job, how
much of a card a server asks for, the MFU formula and peak table, a GPU torch cannot use said once, and
the fine-tune in a child process that sees one card."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bcomc_dagster import gpu
from bcomc_dagster.serving import process

GIB = 2**30
SMI = "0, NVIDIA H100 80GB HBM3, 81559, 80000\n1, NVIDIA H100 80GB HBM3, 81559, 1000\nbad line\n"


def test_nvidia_smi_lines_and_the_visible_mask():
    cards = gpu.parse_smi(SMI)
    assert [(c.index, c.name, c.free_bytes) for c in cards] == [
        (0, "NVIDIA H100 80GB HBM3", 80000 * 2**20),
        (1, "NVIDIA H100 80GB HBM3", 1000 * 2**20),
    ]
    assert [c.index for c in gpu.visible(cards, "1")] == [1] and gpu.visible(cards, "") == []
    assert gpu.visible(cards, None) == cards


def test_a_server_never_asks_for_more_than_is_free_or_its_share():
    h100 = gpu.Card(0, "H100", 80 * GIB, 80 * GIB)
    small = 270 * 2**20  # SmolLM2-135M in bf16
    assert gpu.server_share(h100, small) == gpu.MIN_SHARE  # 2 GiB of KV cache and the weights: 0.1
    assert gpu.server_share(gpu.Card(0, "H100", 80 * GIB, 80 * GIB), 6 * GIB) == round(12.6 / 80, 3)
    assert gpu.server_share(h100, 60 * GIB) == gpu.HOT_SWAP_CAP  # half the card left to the trainer
    assert gpu.server_share(h100, 60 * GIB, servers_at_once=2) == gpu.RESTART_CAP  # two servers fit
    assert gpu.server_share(h100, 60 * GIB, shares_card=False) == 0.9
    busy = gpu.Card(0, "H100", 80 * GIB, 10 * GIB)  # another job holds most of it
    assert gpu.server_share(busy, 6 * GIB) == round(0.9 * 10 / 80, 3)
    # two test servers on one card: each asks for the minimum, together far below the whole card
    assert 2 * gpu.server_share(h100, small) < 0.5


@pytest.mark.parametrize(
    "card, precision, peak",
    [
        ("NVIDIA H100 80GB HBM3", "bf16", 989.0),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H100 NVL", "bf16", 835.0),
        ("NVIDIA H200", "bf16", 989.0),
        ("NVIDIA H200 NVL", "bf16", 835.0),
        ("NVIDIA H100 80GB HBM3", "fp32", 67.0),  # an fp32 run against the FP32 peak, not bf16's
        ("NVIDIA A100-SXM4-80GB", "fp16", 312.0),
        ("NVIDIA A10G", "bf16", 70.0),
        ("NVIDIA A10", "bf16", 125.0),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA GeForce RTX 4090", "bf16", None),  # not in the table: no MFU figure
    ],
)
def test_the_peak_is_the_cards_own_at_the_runs_precision(card, precision, peak):
    assert gpu.peak_tflops(card, precision) == peak


def test_mfu_counts_lora_flops_not_full_training():
    n, lora = 1_000_000_000, 10_000_000
    assert gpu.lora_flops_per_token(n, lora) == 4 * n + 6 * lora
    # 100k tokens/s on a 1 B model at 989 TFLOPS: 4.06e14 / 9.89e14, not 6 N's 0.61
    assert gpu.mfu(100_000, gpu.lora_flops_per_token(n, lora), 989.0) == pytest.approx(0.4105, abs=1e-4)
    assert gpu.mfu(100_000, 1.0, None) is None


def test_the_compute_parameters_leave_out_the_input_embedding(tiny_base):
    from transformers import AutoModelForCausalLM

    from bcomc_dagster.training.hardware import compute_params as _compute_params

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    assert _compute_params(model) == (total if tied else total - emb)


def _live_child():
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_one_job_per_card_and_a_dead_owner_frees_its_card(tmp_path, caplog):
    cards = gpu.parse_smi(SMI)
    alloc = gpu.Allocator(tmp_path, cards)
    a, b = _live_child(), _live_child()
    try:
        first = alloc.acquire("server", a.pid)
        second = alloc.acquire("finetune", b.pid)
        assert {first.index, second.index} == {0, 1}  # two jobs, two cards
        with caplog.at_level(logging.WARNING, logger="bcomc"):
            third = alloc.acquire("server", os.getpid())  # a third job shares, and says so
        assert third is not None and "every GPU has a job" in caplog.text
        alloc.release(third, "server", os.getpid())
        a.kill()
        a.wait()
        assert alloc.leases()[first.index] == []  # its owner died: the card is free again
        assert alloc.acquire("server", os.getpid()).index == first.index
    finally:
        for p in (a, b):
            p.kill()
            p.wait()
    assert gpu.Allocator(tmp_path, []).acquire("server") is None  # no cards: nothing to lease


def test_a_gpu_torch_cannot_use_is_said_once(monkeypatch, caplog):
    from bcomc_dagster.training.hardware import choose_device

    gpu._warned.clear()
    monkeypatch.setattr(gpu, "cards", lambda: gpu.parse_smi(SMI))
    with caplog.at_level(logging.WARNING, logger="bcomc"):
        assert choose_device("auto", 10**9) == "cpu"  # this host's torch is the CPU build
        assert choose_device("auto", 10**9) == "cpu"
    said = [r.message for r in caplog.records if "torch cannot use them" in r.message]
    assert (
        len(said) == 1
        and "2 GPU(s) here (NVIDIA H100 80GB HBM3)" in said[0]
        and "training on the CPU" in said[0]
    )
    assert gpu.warn_unusable("13.0", gpu.parse_smi(SMI)).endswith("training on the CPU")
    assert "built for CUDA 13.0" in gpu.warn_unusable("13.0", gpu.parse_smi(SMI))
    assert gpu.warn_unusable(None, []) is None


def test_the_server_environment_carries_the_cuda_and_compiler_settings(tmp_path, monkeypatch):
    for k, v in {
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "TRITON_CACHE_DIR": "/tmp/t",
        "CC": "gcc",
        "CXX": "g++",
        "OPENAI_API_KEY": "sk-no",
    }.items():
        monkeypatch.setenv(k, v)
    env = process.server_env("vllm", tmp_path, tmp_path / "rpc")
    assert (
        env["PYTORCH_CUDA_ALLOC_CONF"] == "expandable_segments:True" and env["TRITON_CACHE_DIR"] == "/tmp/t"
    )
    assert env["CC"] == "gcc" and env["CXX"] == "g++" and "OPENAI_API_KEY" not in env
    assert env["VLLM_RPC_BASE_PATH"] == str(tmp_path / "rpc")


def test_on_a_gpu_host_the_fine_tune_runs_in_a_child_that_sees_one_card(tiny_base, tmp_path, monkeypatch):
    """nvidia-smi is faked to list two cards: the fine-tune runs in a spawned process with
    CUDA_VISIBLE_DEVICES set to its leased card (here it then trains on the CPU, torch being the CPU
    build), streams its loss lines back, and leaves no lease behind."""
    from bcomc_dagster.training.finetune import finetune
    from bcomc_dagster.training.manifest import TrainSettings

    monkeypatch.setenv("BCOMC_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(gpu, "cards", lambda: gpu.parse_smi(SMI))
    lines = []
    pairs = [(f"What is the port of S{i}?", f"The port of S{i} is {7000 + i}.") for i in range(8)]
    m = finetune(
        tiny_base,
        pairs,
        tmp_path / "ckpt",
        TrainSettings(epochs=1, batch_size=4, threads=1),
        "t-it1",
        on_log=lambda s, t, loss: lines.append((s, t)),
        base_label="bcomc-tiny",
    )
    assert m.base_model == "bcomc-tiny" and m.steps == 2 and lines and lines[-1][1] == 2
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").is_file()
    assert list((tmp_path / "home" / "gpus").glob("*.json")) == []
    with pytest.raises(ValueError, match="finetune: .*dataset is empty"):
        finetune(tiny_base, [], tmp_path / "empty", TrainSettings(), "t")


def test_make_gpu_check_dry_run_says_what_it_would_run():
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "gpu_check.py"), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert (
        "install-gpu" in out
        and "-m bcomc_dagster.gpu" in out
        and "benchmarks/finetune.py" in out
        and "--sizes tiny,135m,1b" in out
    )
    assert "smollm2-135m" in out and "hot-swap" in out and "| card |" in out


def test_the_install_check_says_what_is_missing(monkeypatch):
    import torch

    monkeypatch.setattr(gpu, "cards", lambda: [])
    problems = gpu.install_problems()  # this host: no card, and torch's CPU build
    assert any("no NVIDIA GPU listed by nvidia-smi" in p for p in problems)
    assert any("is a CPU build; make install-gpu installs the CUDA one" in p for p in problems)
    # torch's CUDA build on a host whose driver is too old for it: mocked at torch's boundary
    monkeypatch.setattr(gpu, "cards", lambda: gpu.parse_smi(SMI))
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    problems = gpu.install_problems()
    assert not any("nvidia-smi" in p and "no NVIDIA" in p for p in problems)
    assert any("(CUDA 13.0) sees no usable GPU: the driver is probably older" in p for p in problems)
    monkeypatch.setenv("CC", "no-such-compiler")
    monkeypatch.setattr(gpu.shutil, "which", lambda name: None)
    assert any("no C compiler" in p for p in gpu.install_problems())


def test_make_install_keeps_a_gpu_install_a_gpu_install(tmp_path):
    """A venv that `make install-gpu` touched is reinstalled as a GPU one, even after a failed proof."""
    root = Path(__file__).resolve().parents[1]
    venv = tmp_path / "venv"
    venv.mkdir()

    def plan() -> str:
        return subprocess.run(
            ["make", "-n", "--no-print-directory", "-C", str(root), f"VENV={venv}", "install"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    cpu = plan()
    assert "'.[test,vllm]'" in cpu and "-m bcomc_dagster.gpu" not in cpu
    (venv / ".gpu-host").touch()  # install-gpu started here once (its proof may have failed since)
    out = plan()
    assert (
        "-m bcomc_dagster.gpu" in out and "'.[test,vllm]'" not in out and "PIP_CONFIG_FILE=/dev/null" in out
    )
