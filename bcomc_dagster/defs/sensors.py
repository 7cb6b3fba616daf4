"""The auto-advance sensor: a plain sensor with a JSON cursor of storage ids (docs/architecture.md, section
2).

Each tick reads the materialisations that are new since the cursor:
- campaign_config[c]          -> run the baseline of c;
- baseline_eval[c] / eval_report[c|i] -> below target and under max iterations: add iteration i+1 and run
  it; at the target or max iterations: run campaign_outcome[c]; auto_advance off: wait for the user.
Run keys ``{campaign}:{iteration}`` stop the daemon from running one iteration twice (a backfill or a
re-run of an eval report does not advance the campaign again).
"""

import json
from collections.abc import Callable, Sequence
from typing import cast

import dagster as dg

from bcomc_dagster import campaign_state, stages
from bcomc_dagster.artifacts import ANALYSIS, CONFIG, FAILURE, OUTCOME, REPORT, ArtifactStore
from bcomc_dagster.defs.jobs import CAMPAIGN_TAG, baseline_job, iteration_job, outcome_job
from bcomc_dagster.defs.partitions import campaign_iterations, iteration_key, iterations
from bcomc_dagster.defs.resources import ArtifactStoreResource
from bcomc_dagster.errors import BcomcError
from bcomc_dagster.loop import Decision

WATCHED = ("campaign_config", "baseline_eval", "eval_report")


def _new_records(instance: dg.DagsterInstance, asset: str, after: int | None) -> Sequence[dg.EventLogRecord]:
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), after_storage_id=after),
        limit=1000,
        ascending=True,
    ).records


def _campaign_and_iteration(asset: str, partition: str) -> tuple[str, int]:
    if asset == "eval_report":
        k = campaign_iterations.get_partition_key_from_str(partition).keys_by_dimension
        return k["campaign"], int(k["iteration"])
    return partition, 0


def evaluate_tick(
    context: dg.SensorEvaluationContext,
    store: ArtifactStore,
    pull: Callable[[str], None] = lambda campaign: None,
    locked_here: str | None = None,
) -> dg.SensorResult:
    """``pull(campaign)`` brings a campaign's artifacts here first (from S3, when they live there).
    A campaign that a CLI process is running (its lock is held; ``locked_here``: by the caller itself) is
    deferred to a later tick, so that the two never run one iteration twice; a stopped one is left alone."""
    cursor = json.loads(context.cursor) if context.cursor else {}
    runs: list[dg.RunRequest] = []
    new_iterations: list[str] = []
    assert iterations.name is not None
    known = set(context.instance.get_dynamic_partitions(iterations.name))
    deferred = []
    pending: list[tuple[str, str, dg.EventLogRecord | None]] = [
        (a, k, None) for a, k in cursor.pop("deferred", [])
    ]
    for asset in WATCHED:
        pending += [
            (asset, cast(str, rec.partition_key), rec)  # every watched asset is partitioned
            for rec in _new_records(context.instance, asset, cursor.get(asset))
        ]
    for asset, partition, rec in pending:
        if rec is not None:
            cursor[asset] = rec.storage_id
        campaign, i = _campaign_and_iteration(asset, partition)
        if campaign != locked_here and campaign_state.holder(store, campaign):
            deferred.append([asset, partition])
            continue
        pull(campaign)
        if store.path(campaign, None, campaign_state.STOPPED).exists():
            continue
        tags = {CAMPAIGN_TAG: campaign}
        if asset == "campaign_config":
            if not store.path(campaign, 0, REPORT).exists():  # else done already (e.g. by `bcomc demo`)
                runs.append(
                    dg.RunRequest(
                        job_name=baseline_job.name, partition_key=campaign, run_key=f"{campaign}:0", tags=tags
                    )
                )
            continue
        try:
            # a materialisation record always holds its materialisation
            pass_rate = (
                cast(dg.AssetMaterialization, rec.asset_materialization).metadata["pass_rate"].value
                if rec
                else store.report(campaign, i).pass_rate
            )
            decision = stages.next_decision(store, campaign, i)
        except BcomcError as e:
            context.log.error(f"campaign {campaign}: cannot decide after iteration {i}: {e}")
            continue
        context.log.info(f"campaign {campaign} iteration {i}: {pass_rate:.1f}% -> {decision.value}")
        if decision is Decision.ADVANCE:
            if store.path(campaign, i + 1, ANALYSIS).exists():
                continue  # iteration i+1 has started already: never advance twice
            nxt = str(i + 1)
            if nxt not in known:
                known.add(nxt)
                new_iterations.append(nxt)
            runs.append(
                dg.RunRequest(
                    job_name=iteration_job.name,
                    partition_key=iteration_key(campaign, i + 1),
                    run_key=f"{campaign}:{i + 1}",
                    tags=tags,
                )
            )
        elif decision.final and not store.path(campaign, None, OUTCOME).exists():
            runs.append(
                dg.RunRequest(
                    job_name=outcome_job.name,
                    partition_key=campaign,
                    run_key=f"{campaign}:outcome",
                    tags=tags,
                )
            )
    if deferred:
        cursor["deferred"] = deferred
    return dg.SensorResult(
        run_requests=runs,
        cursor=json.dumps(cursor),
        dynamic_partitions_requests=[iterations.build_add_request(new_iterations)] if new_iterations else [],
    )


@dg.sensor(
    jobs=[baseline_job, iteration_job, outcome_job],
    minimum_interval_seconds=5,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def campaign_sensor(context: dg.SensorEvaluationContext, artifacts: ArtifactStoreResource) -> dg.SensorResult:
    """Advances every campaign to its next iteration until its target or max iterations."""
    return evaluate_tick(context, artifacts.store(), artifacts.pull)


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING, minimum_interval_seconds=5)
def campaign_failure_sensor(context: dg.RunFailureSensorContext, artifacts: ArtifactStoreResource) -> None:
    """A failed run of a campaign (the daemon's, a backfill's): record which stage failed and why in the
    iteration's folder, where `bcomc status` reads it, and stop the campaign's model servers on this machine
    unless it keeps them live at the end (nothing uses them until `bcomc resume`, which serves the model
    again)."""
    run = context.dagster_run
    campaign = run.tags.get(CAMPAIGN_TAG)
    if not campaign:
        return
    store = artifacts.store()
    key = run.tags.get("dagster/partition", "")
    i = int(key.split("|", 1)[1]) if "|" in key else 0
    if not store.path(campaign, None, CONFIG).exists():
        return
    failed = context.get_step_failure_events()
    stage = cast(str, failed[0].step_key) if failed else run.job_name  # a step's failure names its step
    error = failed[0].step_failure_data.error if failed else None
    cause = (error.cause or error) if error else None  # the stage's own error, not Dagster's wrapper
    message = (
        f"{cause.cls_name}: {cause.message.strip()}"
        if cause
        else (context.failure_event.message or "the run failed")
    )
    if not store.path(campaign, i, FAILURE).exists() and not store.path(campaign, i, REPORT).exists():
        campaign_state.record_failure(store, campaign, i, stage, RuntimeError(message))
    stopped = campaign_state.stop_after_failure(store, campaign)
    context.log.info(f"campaign {campaign}: run {run.run_id} failed at {stage}; stopped servers {stopped}")
