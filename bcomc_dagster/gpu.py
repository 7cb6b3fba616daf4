"""The host's GPUs, as the trainer and the model servers share them: which cards there are (nvidia-smi,
no CUDA context opened here), one card per job (a lease per card under ``$BCOMC_HOME/gpus``), how much of
a card a server may ask for, and what a fine-tune's throughput means (MFU with the LoRA FLOP count).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("bcomc")
GIB = 2**30

# dense (no sparsity) matrix-product peaks in TFLOPS, by card and precision, from NVIDIA's data sheets;
# fp32 is the plain FP32 rate (torch does not use TF32 for matmuls unless asked). The first pattern
# that matches the card's reported name wins, so the more specific come first.
PEAKS: list[tuple[str, dict[str, float]]] = [
    (r"H200.*NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0}),
    (r"H200", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),
    (r"H100.*NVL", {"bf16": 835.0, "fp16": 835.0, "fp32": 60.0}),
    (r"H100.*PCIe", {"bf16": 756.0, "fp16": 756.0, "fp32": 51.0}),
    (r"H100", {"bf16": 989.0, "fp16": 989.0, "fp32": 67.0}),  # SXM ("H100 80GB HBM3")
    (r"A100", {"bf16": 312.0, "fp16": 312.0, "fp32": 19.5}),
    (r"L40S", {"bf16": 362.0, "fp16": 362.0, "fp32": 91.6}),
    (r"A10G", {"bf16": 70.0, "fp16": 70.0, "fp32": 31.2}),
    (r"A10\b", {"bf16": 125.0, "fp16": 125.0, "fp32": 31.2}),
    (r"L4\b", {"bf16": 121.0, "fp16": 121.0, "fp32": 30.3}),
]


def peak_tflops(card: str, precision: str) -> float | None:
    """The card's dense peak for ``precision`` (bf16, fp16, fp32); None for a card not in the table."""
    for pattern, by_precision in PEAKS:
        if re.search(pattern, card):
            return by_precision.get(precision)
    return None


def lora_flops_per_token(non_embedding_params: int, trainable_params: int) -> float:
    """Training FLOPs per token of a LoRA fine-tune: the forward pass (2 N) and the backward pass through
    the frozen weights for the activations' gradients (2 N), with no weight-gradient step for them (the
    third 2 N of full training's 6 N); the adapter's own weights get all three (6 n). Attention's
    sequence-length term is left out, as in the usual MFU convention."""
    return 4.0 * non_embedding_params + 6.0 * trainable_params


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved FLOPs over the card's peak (None without a peak)."""
    return round(tokens_per_s * flops_per_token / (peak * 1e12), 4) if peak else None


# -- the cards -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Card:
    index: int
    name: str
    total_bytes: int
    free_bytes: int


def cards() -> list[Card]:
    """The host's NVIDIA cards as nvidia-smi lists them (none without the driver's tool); a
    CUDA_VISIBLE_DEVICES of this process narrows them, as CUDA would."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return visible(parse_smi(out), os.environ.get("CUDA_VISIBLE_DEVICES"))


def parse_smi(text: str) -> list[Card]:
    """nvidia-smi's CSV (index, name, total MiB, free MiB) as cards; lines it could not read are skipped."""
    out = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit() and parts[2].isdigit() and parts[3].isdigit():
            out.append(Card(int(parts[0]), parts[1], int(parts[2]) * 2**20, int(parts[3]) * 2**20))
    return out


def visible(found: list[Card], mask: str | None) -> list[Card]:
    if mask is None or not mask.strip():
        return found if mask is None else []
    wanted = [int(x) for x in mask.split(",") if x.strip().isdigit()]
    return [c for c in found if c.index in wanted]


# -- how much of a card a server may ask for -------------------------------------------------------
MIN_SHARE, HOT_SWAP_CAP, RESTART_CAP = 0.1, 0.5, 0.45


def server_share(card: Card, weights_bytes: int, servers_at_once: int = 1, shares_card: bool = True) -> float:
    """The ``--gpu-memory-utilization`` of a vLLM server: its weights, a KV cache as large as the weights
    (at least 2 GiB) and a tenth for CUDA graphs and activations, over the card's memory. It never asks
    for more than 90 % of what is free now, leaves half the card to a trainer that shares it, and under a
    restart (two servers at once, briefly) at most 0.45. vLLM reserves this share of the whole card."""
    need = 1.1 * weights_bytes + max(2 * GIB, weights_bytes)
    cap = RESTART_CAP if servers_at_once > 1 else (HOT_SWAP_CAP if shares_card else 0.9)
    share = min(max(need / card.total_bytes, MIN_SHARE), cap)
    free_share = 0.9 * card.free_bytes / card.total_bytes
    return round(max(0.01, min(share, free_share)), 3)


def weights_bytes(model_dir: Path) -> int:
    """The size of a model folder's weights (safetensors, or PyTorch's .bin / .pt files)."""
    return sum(
        p.stat().st_size for ext in ("safetensors", "bin", "pt") for p in Path(model_dir).glob(f"*.{ext}")
    )


# -- one job per card -------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """The lease's owner still runs (a zombie, dead but not yet reaped, does not)."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's process: it exists
        return True


class Allocator:
    """Leases of the host's cards, one per job (a fine-tune or a model server), kept as files under
    ``root``: a lease is held while its owner process lives. ``acquire`` takes a free card, or the one
    with the fewest live leases when none is free."""

    def __init__(self, root: Path, found: list[Card] | None = None):
        self.root = Path(root)
        self.found = cards() if found is None else found

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def leases(self) -> dict[int, list[dict[str, object]]]:
        out: dict[int, list[dict[str, object]]] = {c.index: [] for c in self.found}
        for p in self.root.glob("*.json") if self.root.is_dir() else []:
            try:
                lease = json.loads(p.read_text())
                pid, card = int(lease["pid"]), int(lease["card"])
            except (OSError, ValueError, TypeError, KeyError):
                p.unlink(missing_ok=True)  # not a lease this writes
                continue
            if card in out and pid > 0 and _alive(pid):
                out[card].append(lease)
            else:
                p.unlink(missing_ok=True)  # its owner is gone
        return out

    def acquire(self, job: str, pid: int | None = None) -> Card | None:
        """A card for ``job`` (None on a host without cards), leased to ``pid`` (default: this process)."""
        if not self.found:
            return None
        with self._locked():
            held = self.leases()
            card = min(self.found, key=lambda c: (len(held[c.index]), c.index))
            if held[card.index]:
                log.warning(
                    "every GPU has a job (%s): %s shares card %d",
                    ", ".join(str(len(v)) for v in held.values()),
                    job,
                    card.index,
                )
            owner = pid or os.getpid()
            (self.root / f"{card.index}-{owner}-{job}.json").write_text(
                json.dumps({"card": card.index, "pid": owner, "job": job})
            )
            return card

    def hand_over(self, card: Card, job: str, old_pid: int, new_pid: int) -> None:
        """Give a lease taken before a child started to the child (a model server)."""
        with self._locked():
            (self.root / f"{card.index}-{old_pid}-{job}.json").unlink(missing_ok=True)
            (self.root / f"{card.index}-{new_pid}-{job}.json").write_text(
                json.dumps({"card": card.index, "pid": new_pid, "job": job})
            )

    def release(self, card: Card | None, job: str, pid: int | None = None) -> None:
        if card is not None:
            (self.root / f"{card.index}-{pid or os.getpid()}-{job}.json").unlink(missing_ok=True)


# -- a GPU that torch cannot use -------------------------------------------------------------------
_warned: set[str] = set()


def warn_unusable(torch_cuda: str | None, found: list[Card]) -> str | None:
    """Said once, loudly, when the host has cards but torch cannot use them (a CPU build, or a driver
    too old for the CUDA build): training would fall back to the CPU without a word."""
    if not found:
        return None
    why = (
        "torch is a CPU build (run `make install-gpu`)"
        if not torch_cuda
        else f"torch is built for CUDA {torch_cuda}, which this host's driver may not support "
        "(`nvidia-smi` shows the driver's CUDA version)"
    )
    msg = f"{len(found)} GPU(s) here ({found[0].name}), but torch cannot use them: {why}; training on the CPU"
    if msg not in _warned:
        _warned.add(msg)
        log.warning(msg)
    return msg


# -- the install: what a GPU host needs before anything runs on it -----------------------------------
def install_problems() -> list[str]:
    """What stops this environment from using the host's GPUs (empty: ready): torch's CUDA build able to
    run a bf16 matrix product, vLLM's compiled kernels, and the C compiler and Python headers vLLM's
    kernels build with. Each problem says what is missing and how to get it."""
    import importlib
    import sysconfig

    problems = []
    found = cards()
    try:
        import torch
    except ImportError:
        return ["torch is not installed (make install-gpu)"]
    if not found and not (torch.version.cuda and torch.cuda.is_available()):
        problems.append("no NVIDIA GPU listed by nvidia-smi (is the driver installed?)")
    if not torch.version.cuda:
        problems.append(f"torch {torch.__version__} is a CPU build; make install-gpu installs the CUDA one")
    elif not torch.cuda.is_available():
        problems.append(
            f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no usable GPU: the driver is "
            "probably older than that CUDA version (nvidia-smi prints the driver's)"
        )
    else:
        try:
            x = torch.ones(64, 64, device="cuda", dtype=torch.bfloat16)
            if float((x @ x)[0, 0]) != 64.0:
                problems.append("a bf16 matrix product on the GPU gave a wrong result")
        except RuntimeError as e:
            problems.append(f"a bf16 matrix product on the GPU failed: {e}")
    try:
        importlib.import_module("vllm._C")
    except ImportError as e:
        problems.append(f"vLLM's CUDA kernels do not load (import vllm._C: {e}); install the [gpu] extra")
    if not (shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")):
        problems.append("no C compiler (vLLM's compiled kernels need one): apt-get install gcc")
    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").is_file():
        problems.append(f"no Python headers ({include}/Python.h): apt-get install python3-dev")
    return problems


if __name__ == "__main__":  # python -m bcomc_dagster.gpu: the install check make install-gpu runs
    import sys

    found_problems = install_problems()
    for p in found_problems:
        print(f"gpu: {p}", file=sys.stderr)
    if not found_problems:
        print("gpu: ready: " + ", ".join(f"{c.index}: {c.name}" for c in cards()))
    sys.exit(1 if found_problems else 0)
