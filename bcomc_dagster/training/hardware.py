"""Where a fine-tune runs and what it achieved there: the device and precision a run gets, the parameters
that compute per token, and the throughput figures of its manifest (tokens/s, peak memory, MFU)."""

from __future__ import annotations

import resource
from typing import Any

from bcomc_dagster import gpu
from bcomc_dagster.training.manifest import Device, Hardware, Precision

GPU_MIN_PARAMS = 20_000_000  # device 'auto': below this a model trains faster on the CPU than through CUDA


def choose_device(want: Device, params: int) -> str:
    """'cuda' or 'cpu': auto takes CUDA when present for models of GPU_MIN_PARAMS parameters or more."""
    import torch

    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "finetune.device: 'cuda' asked for, but torch sees no CUDA device here (install the [gpu] "
            "extra on a GPU host)"
        )
    if want == "auto":
        if not torch.cuda.is_available():
            gpu.warn_unusable(torch.version.cuda, gpu.cards())  # a card torch cannot use: say so, once
            return "cpu"
        return "cuda" if params >= GPU_MIN_PARAMS else "cpu"
    return want


def choose_precision(want: Precision, device: str) -> str:
    """auto: bf16 on a GPU that has it (fp16 on one that does not), fp32 on the CPU."""
    import torch

    if want != "auto":
        if device == "cpu" and want == "fp16":
            raise ValueError("finetune.precision: 'fp16' needs a GPU; use 'fp32' or 'bf16' on the CPU")
        return want
    if device == "cpu":
        return "fp32"
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def compute_params(model: Any) -> int:
    """Parameters that cost matrix FLOPs per token: all but the input embedding (a lookup); an output
    head tied to it still computes, so it counts then."""
    seen: dict[int, int] = {id(p): p.numel() for p in model.parameters()}
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is emb
    return sum(seen.values()) - (0 if tied else emb.numel())


def hardware(
    device: str, precision: str, params: int, trainable: int, tokens: float, timed: tuple[float, float]
) -> Hardware:
    """What ran where; tokens/s over the timed steps (``timed``: seconds, tokens), MFU with the LoRA FLOP
    count (``gpu.lora_flops_per_token``) against the card's own peak at the run's precision."""
    import torch

    seconds, timed_tokens = timed
    rate = timed_tokens / seconds if seconds > 0 else 0.0
    if device == "cuda":
        card = torch.cuda.get_device_name()
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
        return Hardware(
            device=f"cuda ({card})",
            precision=precision,
            tokens=int(tokens),
            tokens_per_second=round(rate, 1),
            peak_memory_mb=round(peak_mb, 1),
            mfu=gpu.mfu(rate, gpu.lora_flops_per_token(params, trainable), gpu.peak_tflops(card, precision)),
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    return Hardware(
        device="cpu",
        precision=precision,
        tokens=int(tokens),
        tokens_per_second=round(rate, 1),
        peak_memory_mb=round(peak_mb, 1),
    )
