"""Launching campaigns against a Dagster instance, and driving one in this process.

``launch`` validates the config, stores it, registers the campaign partition and materialises
``campaign_config``; on an instance with a running daemon (``dagster dev``) the sensor takes it from there.
``drive`` evaluates the same sensor tick by tick here and executes each run it requests in process: the
demo's way, needing no daemon.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import dagster as dg
from dagster._core.storage.tags import RUN_KEY_TAG

from bcomc_dagster import stages
from bcomc_dagster.artifacts import ArtifactStore, check_campaign_name
from bcomc_dagster.config import CampaignConfig
from bcomc_dagster.defs.partitions import campaigns as campaign_partitions
from bcomc_dagster.defs.partitions import iteration_key, iterations
from bcomc_dagster.defs.resources import default_home
from bcomc_dagster.defs.sensors import WATCHED, evaluate_tick
from bcomc_dagster.errors import InputError, StageFailed
from bcomc_dagster.loop import Decision

Print = Callable[[str], None]
QUIET_RUN = {"loggers": {"progress": {}}}


def ensure_dagster_home() -> Path:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(default_home()) / "dagster")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists() and Path("dagster.yaml").is_file():
        shutil.copy("dagster.yaml", home / "dagster.yaml")
    return home


def load_defs() -> dg.Definitions:
    from bcomc_dagster.definitions import defs

    return defs()


def default_campaign_name(prefix: str = "campaign") -> str:
    return f"{prefix}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


def launch(
    instance: dg.DagsterInstance, defs: dg.Definitions, store: ArtifactStore, cfg: CampaignConfig, campaign: str
) -> None:
    check_campaign_name(campaign)
    if instance.has_dynamic_partition(campaign_partitions.name, campaign):
        raise InputError(f"campaign {campaign!r} exists already; choose another --campaign name")
    instance.add_dynamic_partitions(campaign_partitions.name, [campaign])
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey("campaign_config")})
    launch_config = cfg.model_dump(mode="json", exclude_none=True)  # Dagster maps take no nulls; None = default
    run_config = {**QUIET_RUN, "ops": {"campaign_config": {"config": launch_config}}}
    result = job.execute_in_process(
        instance=instance, partition_key=campaign, tags={"campaign": campaign}, run_config=run_config,
        raise_on_error=False,
    )  # fmt: skip
    if not result.success:
        raise _failure(campaign, "campaign_config", result)


def _latest_cursor(instance: dg.DagsterInstance) -> str:
    cursor = {}
    for asset in WATCHED:
        recs = instance.fetch_materializations(dg.AssetKey(asset), limit=1).records
        if recs:
            cursor[asset] = recs[0].storage_id
    return json.dumps(cursor)


def _summarise(out: Print, result: dg.ExecuteInProcessResult) -> None:
    for ev in result.get_asset_materialization_events():
        mat = ev.event_specific_data.materialization
        md = {k: v.value for k, v in mat.metadata.items()}
        name = mat.asset_key.to_user_string()
        if name in ("baseline_eval", "eval_report"):
            delta = md.get("improvement_delta")
            split = (f"; analyzed part {md['pass_rate_analyzed']:.1f}%, held-out part {md['pass_rate_held_out']:.1f}%"
                     if "pass_rate_held_out" in md else "")  # fmt: skip
            out(f"  {name}: pass rate {md['pass_rate']:.1f}%" + (f" (delta {delta:+.1f})" if name == "eval_report" else "") + split)
            out("    " + md["per_service"].replace("\n", "\n    "))
        elif name == "failure_analysis":
            out(f"  failure_analysis: targets {', '.join(md['datagen_services'])}")
        elif name == "training_dataset":
            dropped = ", ".join(f"{k} {v}" for k, v in md["dropped_by_reason"].items() if v) or "none"
            out(f"  training_dataset: +{md['rows_added']} rows, {md['rows_total']} in all; dropped: {dropped}")
        elif name == "checkpoint":
            out(f"  checkpoint: {md['steps']} steps, final loss {md['final_loss']:.3f}, {md['elapsed_s']:.0f} s")
        elif name == "deployment":
            out(f"  deployment: {md['served_model']} live at {md['endpoint']} ({md['mode']}, {md['elapsed_s']:.1f} s)")
        elif name == "campaign_outcome":
            out(f"  campaign_outcome: {md['status']}")


def _failure(campaign: str, label: str, res: dg.ExecuteInProcessResult) -> StageFailed:
    """What failed, and why, in one line: the step, the error class and its message."""
    for e in res.all_events:
        if e.is_step_failure:
            err = e.step_failure_data.error
            cause = err.cause or err
            first = (cause.message or "").strip().splitlines()[0] if cause.message else ""
            return StageFailed(
                f"campaign {campaign!r}: {label} failed at {e.step_key}: {cause.cls_name}: {first} (run {res.run_id})",
                cause=cause.cls_name,
            )
    return StageFailed(f"campaign {campaign!r}: {label} failed (run {res.run_id})")


@contextmanager
def _quiet(logger: str):
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(level)


def drive(
    instance: dg.DagsterInstance, defs: dg.Definitions, store: ArtifactStore, campaign: str, out: Print = print,
    cursor: str | None = None, max_runs: int = 200,
) -> stages.Outcome | None:
    """Tick the sensor and run what it asks for this campaign, until it asks for nothing more."""
    done_keys: set[str] = set()
    t0 = time.monotonic()
    for _ in range(max_runs):
        ctx = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
        with _quiet("dagster"):  # the tick's decisions are printed below, step by step
            result = evaluate_tick(ctx, store)
        cursor = result.cursor
        for req in result.dynamic_partitions_requests or []:
            instance.add_dynamic_partitions(req.partitions_def_name, list(req.partition_keys))
        mine = [r for r in result.run_requests or [] if r.tags.get("campaign") == campaign and r.run_key not in done_keys]
        if not mine:
            break
        for req in mine:
            done_keys.add(req.run_key)
            label = f"iteration {req.partition_key.keys_by_dimension['iteration']}" if isinstance(
                req.partition_key, dg.MultiPartitionKey) else req.job_name.removesuffix("_job")  # fmt: skip
            out(f"[{time.monotonic() - t0:6.0f} s] {campaign}: {label}")
            started = time.monotonic()
            res = defs.resolve_job_def(req.job_name).execute_in_process(
                instance=instance, partition_key=req.partition_key, run_config=QUIET_RUN,
                tags={**req.tags, RUN_KEY_TAG: req.run_key},  # the daemon's sensor then skips this run key
                raise_on_error=False,
            )  # fmt: skip
            _summarise(out, res)
            out(f"  ({time.monotonic() - started:.0f} s)")
            if not res.success:
                raise _failure(campaign, label, res)
    outcome_path = store.path(campaign, None, stages.OUTCOME)
    return stages.Outcome.model_validate_json(outcome_path.read_text()) if outcome_path.exists() else None


def advance(instance: dg.DagsterInstance, defs: dg.Definitions, store: ArtifactStore, campaign: str, out: Print = print) -> Decision:
    """Run the next iteration of a campaign by hand (for auto_advance: false), at the same stop rules."""
    last = stages.latest_iteration(store, campaign)
    report = stages.read_report(store, campaign, last)
    decision = stages.next_decision(store, campaign, last, report.pass_rate, auto_advance=True)
    if decision.final:
        out(f"{campaign}: not advancing: {decision.value} at iteration {last} ({report.pass_rate:.1f}%)")
        return decision
    nxt = last + 1
    instance.add_dynamic_partitions(iterations.name, [str(nxt)])
    out(f"{campaign}: iteration {nxt}")
    res = defs.resolve_job_def("iteration_job").execute_in_process(
        instance=instance, partition_key=iteration_key(campaign, nxt),
        tags={"campaign": campaign, RUN_KEY_TAG: f"{campaign}:{nxt}"},
        run_config=QUIET_RUN, raise_on_error=False,
    )  # fmt: skip
    _summarise(out, res)
    if not res.success:
        raise _failure(campaign, f"iteration {nxt}", res)
    return Decision.ADVANCE
