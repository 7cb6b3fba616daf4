"""Artifacts addressed by ``{campaign}/{iteration}/{name}`` under one root (local directory).

Writes are atomic (write to a temporary name, then rename), so no reader sees half a file. Campaign and
artifact names are validated so that no key escapes the root.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from bcomc_dagster.errors import InputError, PredecessorMissing

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")  # whole names only: fullmatch, never match


def check_campaign_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name:
        raise InputError(
            f"campaign name {name!r}: expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
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
            raise InputError(f"{rel!r}: not a path inside campaign {campaign!r}'s folder; refusing to write it")
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
        return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (having is None or (p / having).exists()))

    def path(self, campaign: str, iteration: int | None, name: str) -> Path:
        if not NAME.fullmatch(name):
            raise InputError(f"artifact name {name!r}: expected a plain file name")
        base = self.campaign_dir(campaign) if iteration is None else self.iteration_dir(campaign, iteration)
        return base / name

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def write_bytes(self, campaign: str, iteration: int | None, name: str, data: bytes) -> Path:
        target = self.path(campaign, iteration, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{name}-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
        return target

    def write_text(self, campaign: str, iteration: int | None, name: str, text: str) -> Path:
        return self.write_bytes(campaign, iteration, name, text.encode())

    def write_json(self, campaign: str, iteration: int | None, name: str, data) -> Path:
        text = data.model_dump_json(indent=2) if hasattr(data, "model_dump_json") else json.dumps(data, indent=2)
        return self.write_text(campaign, iteration, name, text)

    def require(self, campaign: str, iteration: int | None, name: str, what: str) -> Path:
        """The path of an artifact that must exist; PredecessorMissing names it otherwise."""
        p = self.path(campaign, iteration, name)
        if not p.exists():
            where = "the campaign" if iteration is None else f"iteration {iteration}"
            raise PredecessorMissing(
                f"campaign {campaign!r}: {what} of {where} is missing ({p}); materialise it first"
            )
        return p

    def read_json(self, campaign: str, iteration: int | None, name: str, what: str) -> dict:
        return json.loads(self.require(campaign, iteration, name, what).read_text())
