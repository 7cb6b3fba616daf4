"""The loop's assets: thin wrappers over ``bcomc_dagster.stages``.

Groups follow the loop's stages; kinds name the engines an asset may run on (which one a campaign uses
is its config's choice, recorded in the metadata).
"""

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import dagster as dg

from bcomc_dagster import stages, tracking
from bcomc_dagster.config import DEMO_CONFIG, CampaignConfig
from bcomc_dagster.defs import launch_schema
from bcomc_dagster.defs import metadata as md
from bcomc_dagster.defs.partitions import campaign_iterations, campaigns, earlier_in_backfill, keys
from bcomc_dagster.defs.resources import ArtifactStoreResource, mirrored
from bcomc_dagster.errors import PredecessorMissing
from bcomc_dagster.reports import campaign as campaign_report_page

OWNERS = ["team:bcomc"]
CODE_VERSION = "3"  # bumped when what an asset computes changes meaning

GPU_POOL = "gpu"  # deploy/dagster.yaml caps the steps of this pool running at once
# Steps that need the model's machine: on Kubernetes (k8s_job_executor) their pods ask for a GPU; on Celery
# they go to the queue BCOMC_CELERY_GPU_QUEUE (a worker on the GPU host consumes it), else the default one.
GPU_K8S = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}
MODEL_HOST = {"dagster-celery/queue": os.environ.get("BCOMC_CELERY_GPU_QUEUE", "dagster")}
GPU_STEP = {**GPU_K8S, **MODEL_HOST}


def campaign_asset(group: str, **kw: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    asset = dg.asset(
        partitions_def=campaigns, group_name=group, owners=OWNERS, code_version=CODE_VERSION, **kw
    )
    return lambda fn: asset(mirrored(fn))


def iteration_asset(group: str, **kw: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    asset = dg.asset(
        partitions_def=campaign_iterations, group_name=group, owners=OWNERS, code_version=CODE_VERSION, **kw
    )
    return lambda fn: asset(mirrored(fn))


# every field of the launch schema, documented, with the demo campaign's values as defaults
LAUNCH_SCHEMA = launch_schema.fields(CampaignConfig, json.loads(DEMO_CONFIG.read_text()))


@campaign_asset("launch", kinds={"json"}, config_schema=LAUNCH_SCHEMA)
def campaign_config(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """The validated launch config of a campaign. Materialise it for a new campaign partition (from the
    launchpad, whose defaults are the demo campaign, or `bcomc launch`); the sensor then runs the
    baseline and each iteration."""
    cfg = stages.store_config(
        artifacts.store(), context.partition_key, context.op_execution_context.op_config
    )
    return dg.MaterializeResult(metadata=md.config_metadata(cfg))


@campaign_asset("evaluate", deps=[campaign_config], kinds={"vllm", "pandas"}, op_tags=MODEL_HOST)
def baseline_eval(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """01 EVALUATE: the base model on its own endpoint, once per campaign."""
    store = artifacts.store()
    report, dep = stages.baseline(store, context.partition_key, context.log.info)
    context.log.info(f"baseline pass rate {report.pass_rate:.1f}%")
    campaign = context.partition_key
    tracked = tracking.sync(store, campaign, context.log.warning)
    return dg.MaterializeResult(
        metadata={
            **md.report_metadata(report, 0),
            **md.tracking_metadata(tracked, 0),
            "server_ready_s": dep.ready_seconds,
            **md.cost_metadata(store, campaign, 0, "eval"),
            **md.progress_plots(store, campaign, 0),
        }
    )


@iteration_asset("analyze", deps=[baseline_eval, campaign_config], kinds={"bedrock", "anthropic", "openai"})
def failure_analysis(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """02 ANALYZE: the weakest services of the previous eval report and a generation plan."""
    campaign, i = keys(context)
    if pending := earlier_in_backfill(context):
        raise PredecessorMissing(
            f"campaign {campaign!r} iteration {i}: iteration {pending[0]} of the same backfill has not "
            "run yet, and this "
            f"one would read what it is about to replace; re-run iteration {i} after it (backfills of "
            "iteration_job "
            "submit iterations in order)"
        )
    store = artifacts.store()
    a = stages.analyze_failures(store, campaign, i)
    context.log.info(a.summary)
    if a.fallback_reason:
        context.log.warning(
            "the analyzer model gave no valid analysis; the deterministic analyzer took over: "
            f"{a.fallback_reason}"
        )
    return dg.MaterializeResult(
        metadata={**md.analysis_metadata(a), **md.cost_metadata(store, campaign, i, "analyze")}
    )


@iteration_asset("generate", deps=[failure_analysis], kinds={"bedrock", "anthropic", "openai"})
def generated_examples(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """03 GENERATE: grounded Q&A pairs for the targeted services, one worker call per pair."""
    campaign, i = keys(context)
    t0 = time.monotonic()
    store = artifacts.store()
    r = stages.generate_examples(store, campaign, i, context.log.info)
    if r.skipped_services:
        context.log.warning(f"skipped services: {r.skipped_services}")
    elapsed = time.monotonic() - t0
    return dg.MaterializeResult(
        metadata={**md.generation_metadata(r, elapsed), **md.cost_metadata(store, campaign, i, "generate")}
    )


@iteration_asset("generate", deps=[generated_examples], kinds={"json", "pandas"})
def training_dataset(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """The cumulative dataset: the previous iteration's rows plus this iteration's pairs that pass validation,
    grounding, decontamination and dedup (drops counted by reason; a dataset card per partition)."""
    campaign, i = keys(context)
    store = artifacts.store()
    s = stages.build_dataset(store, campaign, i)
    context.log.info(f"dataset: {s.added} pairs added, {s.rows} rows; dropped {s.dropped}")
    return dg.MaterializeResult(
        metadata={**md.dataset_metadata(s), **md.cost_metadata(store, campaign, i, "dataset")}
    )


@iteration_asset(
    "fine_tune",
    deps=[training_dataset],
    kinds={"peft", "pytorch", "transformers"},
    pool=GPU_POOL,
    op_tags=GPU_STEP,
)
def checkpoint(
    context: dg.AssetExecutionContext,
    artifacts: ArtifactStoreResource,
    finetune_pipes: dg.PipesSubprocessClient,
) -> dg.MaterializeResult[Any]:
    """04 FINE-TUNE: LoRA from the base on the cumulative dataset; adapter, merged weights, manifest.
    With finetune.runner 'pipes' the training runs in a Dagster Pipes process (another machine, in
    production)."""
    campaign, i = keys(context)
    store = artifacts.store()
    if store.config(campaign).finetune.runner == "pipes":
        extras = {"root": str(store.root), "campaign": campaign, "iteration": i, **artifacts.s3_extras()}
        finetune_pipes.run(
            context=context,
            command=[sys.executable, "-m", "bcomc_dagster.defs.finetune_pipes"],
            extras=extras,
        )
        artifacts.pull(campaign)  # what a process on another machine wrote to the bucket
        m = store.manifest(campaign, i)
    else:
        m = stages.train_checkpoint(store, campaign, i, context.log.info)
    return dg.MaterializeResult(metadata=md.checkpoint_metadata(m, i))


@iteration_asset("deploy", deps=[checkpoint], kinds={"vllm", "ollama"}, pool=GPU_POOL, op_tags=GPU_STEP)
def deployment(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """05 DEPLOY: the endpoint now serving this checkpoint, verified before anything evaluates it."""
    campaign, i = keys(context)
    d = stages.deploy_checkpoint(artifacts.store(), campaign, i, context.log.info)
    return dg.MaterializeResult(metadata=md.deployment_metadata(d))


@iteration_asset("evaluate", deps=[deployment], kinds={"vllm", "pandas"}, op_tags=MODEL_HOST)
def eval_report(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """06 RE-EVAL: the same suite against the live deployment; delta vs the previous iteration."""
    campaign, i = keys(context)
    store = artifacts.store()
    r = stages.reevaluate(store, campaign, i, context.log.info)
    context.log.info(
        f"iteration {i}: pass rate {r.decided_pass_rate:.1f}% (delta {r.improvement_delta or 0:+.1f})"
    )
    tracked = tracking.sync(store, campaign, context.log.warning)
    return dg.MaterializeResult(
        metadata={
            **md.report_metadata(r, i, store.promotion(campaign, i), store.report(campaign, 0)),
            **md.tracking_metadata(tracked, i),
            **md.cost_metadata(store, campaign, i, "eval"),
            **md.progress_plots(store, campaign, i),
        }
    )


@campaign_asset("outcome", deps=[eval_report], kinds={"pandas"}, op_tags=MODEL_HOST)  # stops the servers
def campaign_outcome(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """How the campaign ended: target reached or max iterations; the best iteration; what is left live."""
    store = artifacts.store()
    o = stages.conclude(store, context.partition_key, context.log.info)
    eff = stages.record_effectiveness(store, context.partition_key)
    return dg.MaterializeResult(metadata=md.outcome_metadata(o, eff))


@campaign_asset("outcome", deps=[campaign_outcome], kinds={"html", "markdown"})
def campaign_report(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource
) -> dg.MaterializeResult[Any]:
    """One page per campaign (self-contained HTML, and Markdown): outcome, curves, per-service table,
    what each iteration targeted and gained, cost, links to the artifacts. `bcomc report` writes it too."""
    store = artifacts.store()
    html, markdown = campaign_report_page.write(store, context.partition_key)
    r = campaign_report_page.collect(store, context.partition_key)
    tracked = tracking.sync(store, context.partition_key, context.log.warning)
    return dg.MaterializeResult(
        metadata={**md.report_page_metadata(html, markdown, r), **md.tracking_metadata(tracked, None)}
    )
