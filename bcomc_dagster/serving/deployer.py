"""What every deployer shares: the record of a deployment, the interface, and the checks that a
checkpoint is intact and that an endpoint really serves its weights.

A deployer makes one model live for one campaign. ``ensure_base`` serves the base model and records
its answers to a few probe prompts; ``deploy`` makes a checkpoint live under a new name and verifies it
(listed by the endpoint, pointing at this checkpoint, answering the probes differently from the base)
before it returns. On any failure the previous model stays live: a deployer never leaves the endpoint
on a half-loaded model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel

from bcomc_dagster.errors import ServingError
from bcomc_dagster.training.manifest import Manifest
from bcomc_dagster.training.weights import weights_fingerprint

PROBES = ("What is the default port?", "Which command-line tool is used?", "What is the retention period?")
PROBE_TOKENS = 24  # longest probe answer: enough to tell two models apart

Mode = Literal["base", "hot-swap", "restart", "by-path", "ollama-create"]


class Deployment(BaseModel):
    """One verified deployment: what is live, where, and what it replaced."""

    endpoint: str  # OpenAI-compatible base URL (…/v1) the re-eval talks to
    served_model: str
    iteration: int
    engine: str
    mode: Mode
    fingerprint: str
    replaced: str | None = None
    server_started: bool = False
    ready_seconds: float = 0.0
    deploy_seconds: float = 0.0
    api_key_env: str | None = None


class Live(BaseModel):
    """What a campaign's endpoint serves right now."""

    endpoint: str
    model: str
    iteration: int
    fingerprint: str


class Deployer(Protocol):
    engine: str
    owns_server: bool  # True: stop() stops the server; False: the server is the user's and keeps running

    def ensure_base(self, base_dir: Path, base_name: str, fingerprint: str) -> Deployment: ...

    def deploy(self, checkpoint_dir: Path, manifest: Manifest, iteration: int) -> Deployment: ...

    def live(self) -> Live | None: ...

    def stop(self) -> bool: ...


def intact(folder: Path, marker: str, fingerprint: str) -> Path:
    """``folder`` exists with ``marker`` and its weights hash to ``fingerprint`` (the manifest's)."""
    if not (folder / marker).is_file():
        raise ServingError(f"{folder}: no {marker}; the checkpoint is missing or incomplete")
    try:
        actual = weights_fingerprint(folder)
    except FileNotFoundError as e:
        raise ServingError(f"{e}; the checkpoint is missing or incomplete") from e
    if actual != fingerprint:
        raise ServingError(
            f"{folder}: weights fingerprint {actual[:12]}… does not match the manifest's "
            f"{fingerprint[:12]}…; "
            "the checkpoint is corrupt or was changed after training"
        )
    return folder


def differs_from_base(model: str, answers: list[str], base_answers: list[str]) -> None:
    """An adapter that does not apply yields base-model output: demand at least one different answer."""
    if base_answers and answers == base_answers:
        raise ServingError(
            f"{model!r} answers the probes exactly as the base model: the new weights do not apply"
        )
