"""Artifacts addressed by ``{campaign}/{iteration}/{name}`` under one root (local directory): their names,
and a typed reader for each.

Writes are atomic (write to a temporary name, then rename), so no reader sees half a file. Campaign and
artifact names are validated so that no key escapes the root. A reader of an artifact that must exist
fails with PredecessorMissing, naming it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bcomc_dagster.analysis.analyzer import Analysis
from bcomc_dagster.config import CampaignConfig, parse_config
from bcomc_dagster.datagen import dataset
from bcomc_dagster.datagen.coordinator import GenerationResult
from bcomc_dagster.datagen.quality import QualityRecord
from bcomc_dagster.datagen.schema import QAPair
from bcomc_dagster.errors import InputError, PredecessorMissing, field_errors
from bcomc_dagster.evals.report import EvalReport
from bcomc_dagster.files import atomic_write
from bcomc_dagster.loop import Outcome, Promotion
from bcomc_dagster.serving.deployer import Deployment
from bcomc_dagster.training.manifest import Manifest, read_manifest

M = TypeVar("M", bound=BaseModel)

# the campaign's own files
CONFIG = "campaign.json"
OUTCOME = "outcome.json"
EFFECTIVENESS = "effectiveness.json"
EFFECTIVENESS_MD = "effectiveness.md"
# each iteration's files (iteration 0: the baseline's report and deployment)
REPORT = "eval_report.json"
ANALYSIS = "failure_analysis.json"
GENERATED = "generated_examples.jsonl"
GENERATION = "generation.json"
DATASET = "training_dataset.jsonl"
QUALITY = "dataset_quality.json"
CARD = "dataset_card.md"
CHECKPOINT = "checkpoint"
DEPLOYMENT = "deployment.json"
PROMOTION = "promotion.json"
FAILURE = "failure.json"

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # whole names only: fullmatch, never match


def check_campaign_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise InputError(
            f"campaign name {name!r}: expected 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


class ArtifactStore:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()

    def campaign_dir(self, campaign: str) -> Path:
        return self.root / "campaigns" / check_campaign_name(campaign)

    def inside(self, campaign: str, rel: str) -> Path:
        """``rel`` under the campaign's folder, resolved; InputError when it points anywhere else (an
        absolute path, ``..``, a symlink out)."""
        root = self.campaign_dir(campaign).resolve()
        target = (root / rel).resolve()
        if not rel or rel.startswith("/") or "//" in rel or not target.is_relative_to(root) or target == root:
            raise InputError(
                f"{rel!r}: not a path inside campaign {campaign!r}'s folder; refusing to write it"
            )
        return target

    def iteration_dir(self, campaign: str, iteration: int) -> Path:
        if iteration < 0:
            raise InputError(f"iteration {iteration}: expected 0 (baseline) or more")
        return self.campaign_dir(campaign) / str(iteration)

    def iterations(self, campaign: str, having: str | None = None) -> list[int]:
        """The campaign's iteration folders, in order; with ``having``, only those holding that artifact."""
        root = self.campaign_dir(campaign)
        if not root.is_dir():
            return []
        return sorted(
            int(p.name)
            for p in root.iterdir()
            if p.name.isdigit() and (having is None or (p / having).exists())
        )

    def path(self, campaign: str, iteration: int | None, name: str) -> Path:
        if not NAME.fullmatch(name):
            raise InputError(f"artifact name {name!r}: expected a plain file name")
        base = self.campaign_dir(campaign) if iteration is None else self.iteration_dir(campaign, iteration)
        return base / name

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def write_bytes(self, campaign: str, iteration: int | None, name: str, data: bytes) -> Path:
        return atomic_write(self.path(campaign, iteration, name), data)

    def write_text(self, campaign: str, iteration: int | None, name: str, text: str) -> Path:
        return self.write_bytes(campaign, iteration, name, text.encode())

    def write_json(
        self, campaign: str, iteration: int | None, name: str, data: BaseModel | dict[str, Any]
    ) -> Path:
        text = data.model_dump_json(indent=2) if isinstance(data, BaseModel) else json.dumps(data, indent=2)
        return self.write_text(campaign, iteration, name, text)

    def has(self, campaign: str, iteration: int | None, name: str) -> bool:
        return self.path(campaign, iteration, name).exists()

    def require(self, campaign: str, iteration: int | None, name: str, what: str) -> Path:
        """The path of an artifact that must exist; PredecessorMissing names it otherwise."""
        p = self.path(campaign, iteration, name)
        if not p.exists():
            where = "the campaign" if iteration is None else f"iteration {iteration}"
            raise PredecessorMissing(
                f"campaign {campaign!r}: {what} of {where} is missing ({p}); materialise it first"
            )
        return p

    def read_json(self, campaign: str, iteration: int | None, name: str, what: str) -> dict[str, Any]:
        path = self.require(campaign, iteration, name, what)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise InputError(f"{path}: {what} is not valid JSON ({e}); re-materialise it") from None
        if not isinstance(data, dict):
            raise InputError(f"{path}: {what} is not a JSON object; re-materialise it")
        return data

    def _typed(self, model: type[M], campaign: str, iteration: int | None, name: str, what: str) -> M:
        """``name`` read as ``model``; InputError names the file and the fields that do not fit."""
        data = self.read_json(campaign, iteration, name, what)
        try:
            return model.model_validate(data)
        except ValidationError as e:
            path = self.path(campaign, iteration, name)
            raise InputError(
                f"{path}: {what} does not fit its schema: {'; '.join(field_errors(e))}"
            ) from None

    # -- typed readers -----------------------------------------------------------------------------
    def config(self, campaign: str) -> CampaignConfig:
        """The config the campaign was launched with."""
        path = self.require(campaign, None, CONFIG, "the launch config")
        return parse_config(path.read_text(), source=str(path))

    def report(self, campaign: str, iteration: int) -> EvalReport:
        what = "the baseline eval report" if iteration == 0 else "the eval report"
        return self._typed(EvalReport, campaign, iteration, REPORT, what)

    def analysis(self, campaign: str, iteration: int) -> Analysis:
        return self._typed(Analysis, campaign, iteration, ANALYSIS, "the failure analysis")

    def dataset(self, campaign: str, iteration: int) -> list[QAPair]:
        """The cumulative training dataset of ``iteration`` (none before iteration 1)."""
        if iteration < 1:
            return []
        return dataset.read_jsonl(self.require(campaign, iteration, DATASET, "the training dataset"))

    def generation(self, campaign: str, iteration: int) -> GenerationResult | None:
        """What the generate stage of ``iteration`` asked, made and delivered (its pairs are in
        ``GENERATED``), once it ran."""
        if not self.has(campaign, iteration, GENERATION):
            return None
        return self._typed(GenerationResult, campaign, iteration, GENERATION, "the generation record")

    def quality(self, campaign: str, iteration: int) -> QualityRecord:
        """What the dataset stage of ``iteration`` kept and dropped, and why."""
        return self._typed(QualityRecord, campaign, iteration, QUALITY, "the dataset quality record")

    def checkpoint(self, campaign: str, iteration: int) -> Path:
        return self.require(campaign, iteration, CHECKPOINT, "the checkpoint")

    def manifest(self, campaign: str, iteration: int) -> Manifest:
        return read_manifest(self.checkpoint(campaign, iteration))

    def deployment(self, campaign: str, iteration: int) -> Deployment:
        return self._typed(Deployment, campaign, iteration, DEPLOYMENT, "the deployment")

    def promotion(self, campaign: str, iteration: int) -> Promotion | None:
        """The promotion gate's record of ``iteration``, if its checkpoint went through the gate."""
        if not self.has(campaign, iteration, PROMOTION):
            return None
        return self._typed(Promotion, campaign, iteration, PROMOTION, "the promotion record")

    def outcome(self, campaign: str) -> Outcome | None:
        """How the campaign ended (or stands, while it waits), once its outcome was recorded."""
        if not self.has(campaign, None, OUTCOME):
            return None
        return self._typed(Outcome, campaign, None, OUTCOME, "the outcome")
