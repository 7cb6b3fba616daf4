"""Where a campaign stands, told truthfully from its artifacts, its lock and its model servers: its
state, its history of eval reports, which checkpoint is live, its failures and skipped services.

A campaign is ``launched`` (config stored, no baseline yet), ``running``, ``failed`` (a stage failed or
its process died, and nothing has run since), ``stopped`` (``bcomc stop``), or finished:
``target_reached`` / ``max_iterations_reached`` / ``budget_exhausted``.

One process at a time works on a campaign: whoever runs its stages here holds ``.lock`` in its folder
(an ``flock``, so a killed process releases it at once); a second one is told who holds it.

Over 300 lines: everything the stages, the sensor, the CLI and the report read about a campaign, in one
place, so that none of them reads artifacts its own way.
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
from typing import cast

from pydantic import BaseModel

from bcomc_dagster import artifacts as names
from bcomc_dagster import registries
from bcomc_dagster.analysis.effectiveness import Effectiveness, effectiveness
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import CampaignConfig
from bcomc_dagster.datagen import dataset, quality
from bcomc_dagster.errors import BcomcError, InputError, PredecessorMissing
from bcomc_dagster.evals.report import EvalReport
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.secrets import redact
from bcomc_dagster.serving import process
from bcomc_dagster.serving.deployer import Live
from bcomc_dagster.text import clip

FINAL = ("target_reached", "max_iterations_reached", "budget_exhausted")
STATES = ("launched", "running", "failed", "stopped", *FINAL)
STOPPED = "stopped.json"
INTERRUPTED = "interrupted.json"  # a run of the campaign whose process died: failed until resumed
LOCK = ".lock"


FAILURE_TEXT = 2000  # characters of an error kept in failure.json


class CampaignBusy(BcomcError):
    """Another process is running this campaign's stages."""


# -- the history of eval reports and what is live ---------------------------------------------------
def latest_iteration(store: ArtifactStore, campaign: str) -> int:
    done = store.iterations(campaign, having=names.REPORT)
    if not done:
        raise PredecessorMissing(f"campaign {campaign!r}: no eval report yet (not even the baseline)")
    return max(done)


def history(store: ArtifactStore, campaign: str, upto: int) -> list[EvalReport]:
    """Reports 0..upto; ``upto`` must exist, earlier ones are included where present."""
    earlier = [store.report(campaign, i) for i in range(upto) if store.has(campaign, i, names.REPORT)]
    return [*earlier, store.report(campaign, upto)]


def reports(store: ArtifactStore, campaign: str) -> dict[int, EvalReport]:
    """Every eval report of the campaign, by iteration."""
    return {i: store.report(campaign, i) for i in store.iterations(campaign, having=names.REPORT)}


def live_iteration(store: ArtifactStore, campaign: str, upto: int) -> int:
    """The newest iteration up to ``upto`` whose checkpoint was promoted (0: the base). An iteration with a
    report and no promotion record (a campaign from before the gate) counts as promoted."""
    for i in range(upto, 0, -1):
        if store.has(campaign, i, names.REPORT):
            p = store.promotion(campaign, i)
            if p is None or p.promoted:
                return i
    return 0


def live(store: ArtifactStore, campaign: str) -> Live | None:
    """What the campaign's endpoint serves now (None: nothing, or the server is down)."""
    env = registries.Env(store, store.config(campaign), campaign)
    return registries.deployer(env).live()


def skipped_services(store: ArtifactStore, campaign: str) -> dict[int, list[str]]:
    """Per iteration, the services whose generation kept failing and were skipped."""
    out = {}
    for i in store.iterations(campaign, having=names.GENERATION):
        if (g := store.generation(campaign, i)) and g.skipped_services:
            out[i] = sorted(g.skipped_services)
    return out


# -- failures -------------------------------------------------------------------------------------
class Failure(BaseModel):
    iteration: int
    stage: str
    error: str
    restored: str | None = None  # what was made live again
    at: float


def record_failure(
    store: ArtifactStore,
    campaign: str,
    iteration: int,
    stage: str,
    error: Exception,
    restored: str | None = None,
) -> None:
    error_text = clip(redact(str(error)), FAILURE_TEXT)
    failure = Failure(iteration=iteration, stage=stage, error=error_text, restored=restored, at=time.time())
    store.write_json(campaign, iteration, names.FAILURE, failure)


def last_failure(store: ArtifactStore, campaign: str) -> Failure | None:
    """The failure of an iteration after the newest eval report, if any: the campaign is stuck there."""
    try:
        done = latest_iteration(store, campaign)
    except PredecessorMissing:
        done = -1
    fails = [i for i in store.iterations(campaign, having=names.FAILURE) if i > done]
    return (
        Failure.model_validate(store.read_json(campaign, fails[-1], names.FAILURE, "the failure"))
        if fails
        else None
    )


# -- data and effectiveness -----------------------------------------------------------------------
def requests_made(store: ArtifactStore, campaign: str, iteration: int) -> dict[str, int]:
    """Generator calls made per service up to ``iteration``: where the next round's variants start, so
    that no iteration asks a fact again in a wording it was asked before."""
    made: dict[str, int] = {}
    for i in range(1, iteration + 1):
        if (g := store.generation(campaign, i)) is not None:
            for service, n in g.requested.items():
                made[service] = made.get(service, 0) + n
    rows = dataset.rows_by_service(store.dataset(campaign, iteration))  # a dataset made elsewhere
    return {s: max(made.get(s, 0), rows.get(s, 0)) for s in made.keys() | rows.keys()}


def eval_index(cfg: CampaignConfig) -> quality.EvalIndex:
    """Every eval question, held out or not: no training question may resemble any of them."""
    q = cfg.quality
    questions = {x.id: x.question for x in load_suite(cfg.eval_suite).questions}
    return quality.EvalIndex(questions, q.decontamination_ngram, q.decontamination_threshold)


def contamination(store: ArtifactStore, campaign: str, iteration: int) -> list[dict[str, object]]:
    """The rows of the iteration's dataset that resemble an eval question."""
    return quality.contaminated(store.dataset(campaign, iteration), eval_index(store.config(campaign)))


def effectiveness_of(store: ArtifactStore, campaign: str) -> Effectiveness:
    """The effectiveness report over every iteration with an eval report (read only)."""
    cfg = store.config(campaign)
    by_iteration = reports(store, campaign)
    last = latest_iteration(store, campaign)
    targeted = {
        i: store.analysis(campaign, i).datagen_services
        for i in by_iteration
        if i > 0 and store.has(campaign, i, names.ANALYSIS)
    }
    added: dict[int, int] = {}
    contaminated = None
    if last > 0 and store.has(campaign, last, names.DATASET):
        rows = store.dataset(campaign, last)
        for r in rows:
            added[r.provenance.iteration] = added.get(r.provenance.iteration, 0) + 1
        contaminated = len(quality.contaminated(rows, eval_index(cfg)))
    dropped: dict[str, int] = {}
    for i in (i for i in store.iterations(campaign, having=names.QUALITY) if i <= last):
        for reason, n in store.quality(campaign, i).dropped_by_reason.items():
            dropped[reason] = dropped.get(reason, 0) + n
    promoted = {i: p.promoted for i in by_iteration if (p := store.promotion(campaign, i)) is not None}
    return effectiveness(
        campaign,
        cfg.target_pass_rate,
        by_iteration,
        targeted,
        added,
        contaminated,
        dropped,
        promoted,
        pairs_asked={
            i: sum(g.asked.values())
            for i in by_iteration
            if i > 0 and (g := store.generation(campaign, i)) is not None and g.asked
        },
    )


def require(store: ArtifactStore, campaign: str) -> None:
    if not store.path(campaign, None, names.CONFIG).exists():
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
            raise CampaignBusy(
                f"campaign {campaign!r} is busy: {f.read().strip() or 'another process'}"
            ) from None
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
    """The campaign's state; ``runs_active``: a Dagster run of it is queued or running elsewhere (the
    daemon)."""
    require(store, campaign)
    out = store.path(campaign, None, names.OUTCOME)
    if out.exists() and (status := json.loads(out.read_text()).get("status")) in FINAL:
        return cast(str, status)  # one of FINAL
    if store.path(campaign, None, STOPPED).exists():
        return "stopped"
    if runs_active or holder(store, campaign):
        return "running"
    if last_failure(store, campaign) or store.path(campaign, None, INTERRUPTED).exists():
        return "failed"
    return "running" if store.path(campaign, 0, names.REPORT).exists() else "launched"


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
            out.append(
                Orphan(campaign=campaign, pid=rec.pid, port=rec.port, why="not the campaign's live server")
            )
        elif current in ("failed", "stopped", "launched", "unreadable"):
            out.append(
                Orphan(campaign=campaign, pid=rec.pid, port=rec.port, why=f"the campaign is {current}")
            )
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
        keep = not store.config(campaign).serving.stop_at_end
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
