"""Launching campaigns against a Dagster instance, and driving one in this process.

``launch`` validates the config, stores it, registers the campaign partition and materialises
``campaign_config``; on an instance with a running daemon (``dagster dev``) the sensor takes it from there.
``drive`` evaluates the same sensor tick by tick here and executes each run it requests in process: the
demo's way, needing no daemon.

Over 300 lines: launch, drive, advance, resume and stop are the five ways a CLI process runs Dagster
jobs, and they share the run, summary, interruption and settle helpers here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg

from bcomc_dagster import campaign_state, stages
from bcomc_dagster.artifacts import (
    ANALYSIS,
    CHECKPOINT,
    CONFIG,
    DATASET,
    DEPLOYMENT,
    FAILURE,
    GENERATION,
    OUTCOME,
    REPORT,
    ArtifactStore,
    check_campaign_name,
)
from bcomc_dagster.config import CampaignConfig
from bcomc_dagster.defs.partitions import campaigns as campaign_partitions
from bcomc_dagster.defs.partitions import iteration_key, iterations
from bcomc_dagster.defs.sensors import WATCHED, evaluate_tick
from bcomc_dagster.errors import BcomcError, InputError, StageFailed
from bcomc_dagster.files import home
from bcomc_dagster.loop import Decision, Outcome
from bcomc_dagster.serving import process
from bcomc_dagster.summary import stage_lines
from bcomc_dagster.training.manifest import MANIFEST

Print = Callable[[str], None]
QUIET_RUN: dict[str, Any] = {"loggers": {"progress": {}}}
# the tag a sensor's run request sets on its run (the daemon's sensor then skips that run key); Dagster names
# it
# in a private module only, so its value is written here
RUN_KEY_TAG = "dagster/run_key"
PID_TAG, HOST_TAG = "bcomc/pid", "bcomc/host"  # on runs executed in a CLI process: a dead one is a failed run
ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def _here() -> dict[str, str]:
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def settle_runs(instance: dg.DagsterInstance, store: ArtifactStore, campaign: str) -> bool:
    """Mark the campaign's runs whose CLI process on this host is gone as failed (recording why in the
    iteration's folder); returns whether a run of it is still queued or running anywhere."""
    active = False
    for run in instance.get_runs(dg.RunsFilter(tags={"campaign": campaign}, statuses=ACTIVE)):
        pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
        if pid and host == socket.gethostname() and not process.pid_alive(int(pid)):
            why = f"run {run.run_id} ({run.job_name}) was interrupted: its process (pid {pid}) is gone"
            instance.report_run_failed(run, why)
            i = _iteration_of(run)
            if run.job_name != "outcome_job" and not store.path(campaign, i, REPORT).exists():
                campaign_state.record_failure(store, campaign, i, run.job_name, RuntimeError(why))
            store.write_json(
                campaign,
                None,
                campaign_state.INTERRUPTED,
                {"run_id": run.run_id, "job": run.job_name, "why": why},
            )
            continue
        active = True
    return active


def _iteration_of(run: dg.DagsterRun) -> int:
    key = run.tags.get("dagster/partition", "")
    return int(key.split("|", 1)[1]) if "|" in key else 0


def ensure_dagster_home() -> Path:
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(home() / "dagster")))
    dagster_home.mkdir(parents=True, exist_ok=True)
    if not (dagster_home / "dagster.yaml").exists() and Path("dagster.yaml").is_file():
        shutil.copy("dagster.yaml", dagster_home / "dagster.yaml")
    return dagster_home


def load_defs() -> dg.Definitions:
    from bcomc_dagster.definitions import defs

    return defs()


def default_campaign_name(prefix: str = "campaign") -> str:
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def launch(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    store: ArtifactStore,
    cfg: CampaignConfig,
    campaign: str,
) -> None:
    check_campaign_name(campaign)
    cfg = cfg.resolved()
    exists = InputError(f"campaign {campaign!r} exists already; choose another --campaign name")
    assert campaign_partitions.name is not None  # named in defs/partitions.py
    if (
        instance.has_dynamic_partition(campaign_partitions.name, campaign)
        or store.path(campaign, None, CONFIG).exists()
    ):
        raise exists
    try:
        instance.add_dynamic_partitions(campaign_partitions.name, [campaign])
    except Exception:  # noqa: BLE001 - a launch of the same name at the same instant won the insert
        if instance.has_dynamic_partition(campaign_partitions.name, campaign):
            raise exists from None
        raise
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("campaign_config")}
    )
    launch_config = cfg.model_dump(
        mode="json", exclude_none=True
    )  # Dagster maps take no nulls; None = default
    run_config = {**QUIET_RUN, "ops": {"campaign_config": {"config": launch_config}}}
    result = job.execute_in_process(
        instance=instance,
        partition_key=campaign,
        tags={"campaign": campaign},
        run_config=run_config,
        raise_on_error=False,
    )
    if not result.success:
        raise _failure(campaign, "campaign_config", result)


def _latest_cursor(instance: dg.DagsterInstance) -> str:
    cursor = {}
    for asset in WATCHED:
        recs = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        if recs:
            cursor[asset] = recs[0].storage_id
    return json.dumps(cursor)


def _summarise(out: Print, store: ArtifactStore, result: dg.ExecuteInProcessResult) -> None:
    """A few lines per materialised asset, read from the stage's result on the store."""
    for ev in result.get_asset_materialization_events():
        partition = ev.partition or ""
        campaign, _, iteration = partition.partition("|")
        assert ev.asset_key is not None  # a materialisation event names its asset
        for line in stage_lines(store, ev.asset_key.to_user_string(), campaign, int(iteration or 0)):
            out(line)


def _failure(campaign: str, label: str, res: dg.ExecuteInProcessResult) -> StageFailed:
    """What failed, and why, in one line: the step, the error class and its message."""
    for e in res.all_events:
        if e.is_step_failure:
            err = e.step_failure_data.error
            assert err is not None  # a step failure carries its error
            cause = err.cause or err
            first = (cause.message or "").strip().splitlines()[0] if cause.message else ""
            return StageFailed(
                f"campaign {campaign!r}: {label} failed at {e.step_key}: {cause.cls_name}: {first} (run "
                f"{res.run_id})",
                cause=cause.cls_name,
            )
    return StageFailed(f"campaign {campaign!r}: {label} failed (run {res.run_id})")


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def _failed(store: ArtifactStore, campaign: str, label: str, res: dg.ExecuteInProcessResult) -> StageFailed:
    """A run failed: record it where status finds it (if the stage did not), stop the campaign's servers
    unless it keeps them live at the end (nothing uses them until it is resumed, which serves the model
    again), and say why."""
    err = _failure(campaign, label, res)
    i = int(label.split()[-1]) if label.startswith("iteration") else 0
    if not store.path(campaign, i, FAILURE).exists() and not store.path(campaign, i, REPORT).exists():
        campaign_state.record_failure(store, campaign, i, label, err)
    campaign_state.stop_after_failure(store, campaign)
    return err


def drive(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    store: ArtifactStore,
    campaign: str,
    out: Print = print,
    cursor: str | None = None,
    max_runs: int = 200,
) -> Outcome | None:
    """Tick the sensor and run what it asks for this campaign, until it asks for nothing more; one process
    at a time (the campaign's lock)."""
    with campaign_state.locked(store, campaign, "driving the campaign"):
        if settle_runs(instance, store, campaign):
            raise campaign_state.CampaignBusy(
                f"campaign {campaign!r} has a run queued or running (the daemon's); wait for it"
            )
        if store.path(campaign, None, campaign_state.INTERRUPTED).exists():
            raise InputError(f"campaign {campaign!r} was interrupted: `bcomc resume {campaign}` continues it")
        return _drive(instance, defs, store, campaign, out, cursor, max_runs)


@contextmanager
def _stops_on_interrupt(store: ArtifactStore, campaign: str, what: str) -> Iterator[None]:
    """Ctrl-C (or SIGTERM turned into it) while a stage runs here: stop the campaign's servers and mark it
    interrupted, so that status says failed and resume picks it up."""
    try:
        yield
    except KeyboardInterrupt:
        campaign_state.stop_after_failure(store, campaign)
        store.write_json(
            campaign, None, campaign_state.INTERRUPTED, {"job": what, "why": "interrupted (Ctrl-C)"}
        )
        raise


def _drive(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    store: ArtifactStore,
    campaign: str,
    out: Print,
    cursor: str | None,
    max_runs: int,
) -> Outcome | None:
    done_keys: set[str] = set()
    t0 = time.monotonic()
    for _ in range(max_runs):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        with _quiet("dagster"):  # the tick's decisions are printed below, step by step
            result = evaluate_tick(ctx, store, locked_here=campaign)
        cursor = result.cursor
        for part_req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(part_req.partitions_def_name, list(part_req.partition_keys))
        mine = [
            r
            for r in result.run_requests or []
            if r.tags.get("campaign") == campaign and r.run_key not in done_keys
        ]
        if not mine:
            break
        for req in mine:
            assert req.run_key is not None and req.job_name is not None  # evaluate_tick sets both
            done_keys.add(req.run_key)
            label = (
                f"iteration {req.partition_key.keys_by_dimension['iteration']}"
                if isinstance(req.partition_key, dg.MultiPartitionKey)
                else req.job_name.removesuffix("_job")
            )
            out(f"[{time.monotonic() - t0:6.0f} s] {campaign}: {label}")
            started = time.monotonic()
            with _stops_on_interrupt(store, campaign, label):
                res = defs.resolve_job_def(req.job_name).execute_in_process(
                    instance=instance,
                    partition_key=req.partition_key,
                    run_config=QUIET_RUN,
                    tags={
                        **req.tags,
                        RUN_KEY_TAG: req.run_key,
                        **_here(),
                    },  # the daemon's sensor then skips this run key
                    raise_on_error=False,
                )
            _summarise(out, store, res)
            out(f"  ({time.monotonic() - started:.0f} s)")
            if not res.success:
                raise _failed(store, campaign, label, res)
    return store.outcome(campaign)


def advance(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    store: ArtifactStore,
    campaign: str,
    out: Print = print,
) -> Decision:
    """Run the next iteration of a campaign by hand (for auto_advance: false), at the same stop rules; at a
    final decision, record the outcome (and stop the servers) if that was not done yet."""
    campaign_state.require(store, campaign)
    with campaign_state.locked(store, campaign, "advancing the campaign"):
        if settle_runs(instance, store, campaign):
            raise campaign_state.CampaignBusy(
                f"campaign {campaign!r} has a run queued or running (the daemon's); wait for it"
            )
        if store.path(
            campaign, None, campaign_state.INTERRUPTED
        ).exists():  # a failed stage is simply run again
            raise InputError(f"campaign {campaign!r} was interrupted: `bcomc resume {campaign}` continues it")
        last = campaign_state.latest_iteration(store, campaign)
        report = store.report(campaign, last)
        decision = stages.next_decision(store, campaign, last, auto_advance=True)
        if decision.final:
            out(f"{campaign}: not advancing: {decision.value} at iteration {last} ({report.pass_rate:.1f}%)")
            if not store.path(campaign, None, OUTCOME).exists():
                _run(
                    instance,
                    defs,
                    store,
                    campaign,
                    "outcome_job",
                    campaign,
                    f"{campaign}:outcome",
                    "outcome",
                    out,
                )
            return decision
        nxt = last + 1
        assert iterations.name is not None  # named in defs/partitions.py
        instance.add_dynamic_partitions(iterations.name, [str(nxt)])
        out(f"{campaign}: iteration {nxt}")
        _run(
            instance,
            defs,
            store,
            campaign,
            "iteration_job",
            iteration_key(campaign, nxt),
            f"{campaign}:{nxt}",
            f"iteration {nxt}",
            out,
        )
        return Decision.ADVANCE


def _run(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    store: ArtifactStore,
    campaign: str,
    job: str,
    partition: str,
    run_key: str,
    label: str,
    out: Print,
    assets: list[str] | None = None,
) -> None:
    job_def = defs.resolve_job_def(job)
    if assets:  # resume: only the stages an interrupted run did not finish
        job_def = job_def.get_subset(asset_selection={dg.AssetKey(a) for a in assets})
    with _stops_on_interrupt(store, campaign, label):
        res = job_def.execute_in_process(
            instance=instance,
            partition_key=partition,
            tags={"campaign": campaign, RUN_KEY_TAG: run_key, **_here()},
            run_config=QUIET_RUN,
            raise_on_error=False,
        )
    _summarise(out, store, res)
    if not res.success:
        raise _failed(store, campaign, label, res)


ITERATION_STAGES = (  # each iteration asset and the artifact that says it is done
    ("failure_analysis", ANALYSIS),
    ("generated_examples", GENERATION),
    ("training_dataset", DATASET),
    ("checkpoint", f"{CHECKPOINT}/{MANIFEST}"),
    ("deployment", DEPLOYMENT),
    ("eval_report", REPORT),
)


def resume(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    store: ArtifactStore,
    campaign: str,
    out: Print = print,
) -> Outcome | None:
    """Continue a campaign after a crash, a failed stage or ``bcomc stop``: from its last complete stage,
    with what a killed stage left half-written removed; then on as ``drive`` goes."""
    campaign_state.require(store, campaign)
    with campaign_state.locked(store, campaign, "resuming the campaign"):
        if settle_runs(instance, store, campaign):
            raise campaign_state.CampaignBusy(
                f"campaign {campaign!r} has a run queued or running (the daemon's); wait for it"
            )
        store.path(campaign, None, campaign_state.INTERRUPTED).unlink(missing_ok=True)
        for p in campaign_state.clean_temp(store, campaign):
            out(
                f"{campaign}: removed {p.relative_to(store.campaign_dir(campaign))} (left by an "
                "interrupted stage)"
            )
        for pid in campaign_state.stop_servers(store, campaign):  # served again from the artifacts below
            out(f"{campaign}: stopped model server pid {pid} (left by the interrupted process)")
        store.path(campaign, None, campaign_state.STOPPED).unlink(missing_ok=True)
        store.path(campaign, None, OUTCOME).unlink(missing_ok=True) if _outcome_not_final(
            store, campaign
        ) else None
        if not store.path(campaign, 0, REPORT).exists():
            out(f"{campaign}: baseline")
            _run(
                instance,
                defs,
                store,
                campaign,
                "baseline_job",
                campaign,
                f"{campaign}:0:resume",
                "baseline",
                out,
            )
        started = [
            i for i in store.iterations(campaign) if i > 0 and store.path(campaign, i, ANALYSIS).exists()
        ]
        last = started[-1] if started else 0
        if last and not store.path(campaign, last, REPORT).exists():
            todo = [
                a
                for a, artifact in ITERATION_STAGES
                if not (store.iteration_dir(campaign, last) / artifact).exists()
            ]
            if "deployment" not in todo and "eval_report" in todo:
                todo.insert(
                    0, "deployment"
                )  # the server was lost with the process: serve this checkpoint again
            todo = [a for a, _ in ITERATION_STAGES if a in todo or (todo and _after(a, todo[0]))]
            out(f"{campaign}: iteration {last}, from {todo[0]}")
            _run(
                instance,
                defs,
                store,
                campaign,
                "iteration_job",
                iteration_key(campaign, last),
                f"{campaign}:{last}:resume",
                f"iteration {last}",
                out,
                assets=todo,
            )
        return _drive(instance, defs, store, campaign, out, None, 200)


def _after(asset: str, first: str) -> bool:
    names = [a for a, _ in ITERATION_STAGES]
    return names.index(asset) >= names.index(first)


def _outcome_not_final(store: ArtifactStore, campaign: str) -> bool:
    path = store.path(campaign, None, OUTCOME)
    return path.exists() and json.loads(path.read_text()).get("status") not in campaign_state.FINAL


def finished(store: ArtifactStore, campaign: str) -> str | None:
    """The final status of a campaign that has ended (target reached, max iterations, budget), else None."""
    campaign_state.require(store, campaign)
    try:
        outcome = store.outcome(campaign)
    except BcomcError:
        return None
    return outcome.status if outcome and outcome.status in campaign_state.FINAL else None


def stop(instance: dg.DagsterInstance, store: ArtifactStore, campaign: str) -> list[int]:
    """Stop a campaign: mark it stopped (the sensor advances it no more) and stop its model servers."""
    campaign_state.require(store, campaign)
    with campaign_state.locked(store, campaign, "stopping the campaign"):
        settle_runs(instance, store, campaign)
        store.write_json(campaign, None, campaign_state.STOPPED, {"at": time.time()})
        return campaign_state.stop_servers(store, campaign)
