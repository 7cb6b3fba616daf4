"""Where a campaign stands, told truthfully from its artifacts, its lock and its model servers.

A campaign is ``launched`` (config stored, no baseline yet), ``running``, ``failed`` (a stage failed or
its process died, and nothing has run since), ``stopped`` (``bcomc stop``), or finished:
``target_reached`` / ``max_iterations_reached`` / ``budget_exhausted``.

One process at a time works on a campaign: whoever runs its stages here holds ``.lock`` in its folder
(an ``flock``, so a killed process releases it at once); a second one is told who holds it.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from bcomc_dagster import stages
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.errors import BcomcError, InputError
from bcomc_dagster.serving import process

FINAL = ("target_reached", "max_iterations_reached", "budget_exhausted")
STATES = ("launched", "running", "failed", "stopped", *FINAL)
STOPPED = "stopped.json"
INTERRUPTED = "interrupted.json"  # a run of the campaign whose process died: failed until resumed
LOCK = ".lock"


class CampaignBusy(BcomcError):
    """Another process is running this campaign's stages."""


def require(store: ArtifactStore, campaign: str) -> None:
    if not store.path(campaign, None, stages.CONFIG).exists():
        raise InputError(f"campaign {campaign!r}: no such campaign under {store.root}")


def holder(store: ArtifactStore, campaign: str) -> str | None:
    """What holds the campaign's lock (``pid N: what, since T``), or None when it is free."""
    path = store.campaign_dir(campaign) / LOCK
    if not path.exists():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            return f.read().strip() or "another process"
        fcntl.flock(f, fcntl.LOCK_UN)
    return None


@contextmanager
def locked(store: ArtifactStore, campaign: str, what: str) -> Iterator[None]:
    """Hold the campaign's lock while ``what`` runs; CampaignBusy names the holder when it is taken."""
    folder = store.campaign_dir(campaign)
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / LOCK, "a+")  # noqa: SIM115 - held open for the duration
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise CampaignBusy(f"campaign {campaign!r} is busy: {f.read().strip() or 'another process'}") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {what}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
        f.flush()
        yield
    finally:
        f.close()  # releases the lock


class Orphan(BaseModel):
    campaign: str
    pid: int
    port: int
    why: str


def state(store: ArtifactStore, campaign: str, runs_active: bool = False) -> str:
    """The campaign's state; ``runs_active``: a Dagster run of it is queued or running elsewhere (the daemon)."""
    require(store, campaign)
    out = store.path(campaign, None, stages.OUTCOME)
    if out.exists() and (status := json.loads(out.read_text()).get("status")) in FINAL:
        return status
    if store.path(campaign, None, STOPPED).exists():
        return "stopped"
    if runs_active or holder(store, campaign):
        return "running"
    if stages.last_failure(store, campaign) or store.path(campaign, None, INTERRUPTED).exists():
        return "failed"
    return "running" if store.path(campaign, 0, stages.REPORT).exists() else "launched"


def orphans(store: ArtifactStore, campaign: str, current: str) -> list[Orphan]:
    """Model servers this campaign started that still run but serve nothing it needs: any server of a
    campaign that is not running and not finished with its final model left live on purpose, and any
    recorded server the campaign's serving state no longer names."""
    workdir = store.campaign_dir(campaign) / "serving"
    live_pid = None
    if (workdir / "serving.json").is_file():
        live_pid = json.loads((workdir / "serving.json").read_text()).get("pid")
    out = []
    for rec in process.records(workdir):
        if not process.is_ours(rec):
            continue
        if rec.pid != live_pid:
            out.append(Orphan(campaign=campaign, pid=rec.pid, port=rec.port, why="not the campaign's live server"))
        elif current in ("failed", "stopped", "launched"):
            out.append(Orphan(campaign=campaign, pid=rec.pid, port=rec.port, why=f"the campaign is {current}"))
    return out


def reap(store: ArtifactStore, found: list[Orphan]) -> list[Orphan]:
    """Stop the orphaned servers ``found``; a campaign's live server is left unless it is among them."""
    for o in found:
        process.stop_recorded(store.campaign_dir(o.campaign) / "serving", o.pid)
        state_file = store.campaign_dir(o.campaign) / "serving" / "serving.json"
        if state_file.is_file() and json.loads(state_file.read_text()).get("pid") == o.pid:
            state_file.unlink()
    return found


def stop_after_failure(store: ArtifactStore, campaign: str) -> list[int]:
    """After a failed or interrupted run: stop the campaign's servers, unless its config keeps them live at
    the end (``serving.stop_at_end: false``: the last good model stays served, as the rollback left it)."""
    try:
        keep = not stages.load_campaign(store, campaign).serving.stop_at_end
    except BcomcError:
        keep = False
    return [] if keep else stop_servers(store, campaign)


def stop_servers(store: ArtifactStore, campaign: str) -> list[int]:
    """Stop every model server the campaign started here (recorded), live or not."""
    workdir = store.campaign_dir(campaign) / "serving"
    stopped = process.stop_recorded(workdir)
    (workdir / "serving.json").unlink(missing_ok=True)
    return stopped


def clean_temp(store: ArtifactStore, campaign: str) -> list[Path]:
    """Remove what a killed stage left half-written: every file or folder whose name starts with a dot
    (atomic writes and the fine-tune build in such temporary names, then rename). Call it holding the lock."""
    removed = []
    for p in sorted(store.campaign_dir(campaign).rglob(".*"), key=lambda p: len(p.parts)):
        if p.name == LOCK or not p.exists():
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        removed.append(p)
    return removed
