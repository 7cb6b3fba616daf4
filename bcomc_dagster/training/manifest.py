"""The record of a checkpoint (``manifest.json``): what it was trained from, on what, with which settings,
and the fingerprints of its weights. Written last, so a checkpoint folder without it is incomplete."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bcomc_dagster.errors import InputError, PredecessorMissing, field_errors

MANIFEST = "manifest.json"

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]


class TrainSettings(BaseModel):
    """What a fine-tune needs of ``finetune.*`` in the campaign config (the same fields) and its seed."""

    model_config = ConfigDict(extra="forbid")

    rank: int = 16
    alpha: int | None = Field(None, description="LoRA alpha; default 2 x rank.")
    epochs: float = 4
    learning_rate: float = 1e-3
    batch_size: int = 16
    min_steps: int = 0
    max_length: int = 1024
    seed: int = 0
    threads: int | None = None
    device: Device = "auto"
    precision: Precision = "auto"
    packing: bool = True
    gradient_checkpointing: bool = False


class Hardware(BaseModel):
    """What a fine-tune ran on, and how fast."""

    device: str  # cpu, or cuda with the card's name
    precision: str
    tokens: int  # tokens trained on (prompt and answer, no padding), all epochs
    tokens_per_second: float
    peak_memory_mb: float  # GPU: torch's peak allocation; CPU: the process's peak resident set
    mfu: float | None = (
        None  # model FLOPs utilisation (6 x params x tokens/s over the card's peak); None on CPU
    )


class Manifest(BaseModel):
    base_model: str
    base_fingerprint: str
    data_rows: int
    data_sha256: str
    adapter_name: str
    adapter_fingerprint: str
    merged_fingerprint: str
    settings: TrainSettings
    steps: int
    final_loss: float
    loss_curve: list[tuple[int, float]]
    train_seconds: float
    truncated: int = 0  # examples cut to max_length tokens
    max_length: int = 0  # what was applied: settings.max_length capped at the base's context length
    merged_dtype: str = "float32"  # the base's dtype
    hardware: Hardware | None = None


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (folder / MANIFEST).write_text(manifest.model_dump_json(indent=2))


def read_manifest(folder: Path) -> Manifest:
    """The manifest of the checkpoint in ``folder``; PredecessorMissing when the checkpoint is incomplete."""
    path = folder / MANIFEST
    if not path.is_file():
        raise PredecessorMissing(f"{path}: the checkpoint has no manifest; it is incomplete")
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValidationError as e:
        raise InputError(
            f"{path}: not a checkpoint manifest: {'; '.join(field_errors(e, 'manifest'))}"
        ) from None
