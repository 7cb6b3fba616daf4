"""The loop's assets: thin wrappers over ``bcomc_dagster.stages``.

Groups follow the loop's stages; kinds name the engines an asset may run on (which one a campaign uses
is its config's choice, recorded in the metadata).
"""

import json
import os
import sys
import time

import dagster as dg

from bcomc_dagster import stages
from bcomc_dagster.config import DEMO_CONFIG, CampaignConfig
from bcomc_dagster.defs import launch_schema
from bcomc_dagster.defs.metadata import cost_metadata, progress_plots, report_metadata
from bcomc_dagster.defs.partitions import campaign_iterations, campaigns, earlier_in_backfill, keys
from bcomc_dagster.defs.resources import ArtifactStoreResource, mirrored
from bcomc_dagster.errors import PredecessorMissing
from bcomc_dagster.reports import campaign as campaign_report_page
from bcomc_dagster.reports import plots

OWNERS = ["team:bcomc"]
CODE_VERSION = "3"  # bumped when what an asset computes changes meaning

GPU_POOL = "gpu"  # deploy/dagster.yaml caps the steps of this pool running at once
# Steps that need the model's machine: on Kubernetes (k8s_job_executor) their pods ask for a GPU; on Celery
# they go to the queue BCOMC_CELERY_GPU_QUEUE (a worker on the GPU host consumes it), else the default one.
GPU_K8S = {"dagster-k8s/config": {"container_config": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}}
MODEL_HOST = {"dagster-celery/queue": os.environ.get("BCOMC_CELERY_GPU_QUEUE", "dagster")}
GPU_STEP = {**GPU_K8S, **MODEL_HOST}


def campaign_asset(group: str, **kw):
    asset = dg.asset(partitions_def=campaigns, group_name=group, owners=OWNERS, code_version=CODE_VERSION, **kw)
    return lambda fn: asset(mirrored(fn))


def iteration_asset(group: str, **kw):
    asset = dg.asset(partitions_def=campaign_iterations, group_name=group, owners=OWNERS, code_version=CODE_VERSION, **kw)
    return lambda fn: asset(mirrored(fn))


# every field of the launch schema, documented, with the demo campaign's values as defaults
LAUNCH_SCHEMA = launch_schema.fields(CampaignConfig, json.loads(DEMO_CONFIG.read_text()))


@campaign_asset("launch", kinds={"json"}, config_schema=LAUNCH_SCHEMA)
def campaign_config(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """The validated launch config of a campaign. Materialise it for a new campaign partition (from the
    launchpad, whose defaults are the demo campaign, or `bcomc launch`); the sensor then runs the
    baseline and each iteration."""
    cfg = stages.store_config(artifacts.store(), context.partition_key, context.op_execution_context.op_config)
    return dg.MaterializeResult(
        metadata={
            "config": dg.MetadataValue.json(cfg.model_dump()),
            "target_pass_rate": cfg.target_pass_rate,
            "max_iterations": cfg.max_iterations,
            "auto_advance": cfg.auto_advance,
            "eval_suite": cfg.eval_suite,
            "model_name": cfg.model_name,
        }
    )


@campaign_asset("evaluate", deps=[campaign_config], kinds={"vllm", "pandas"}, op_tags=MODEL_HOST)
def baseline_eval(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """01 EVALUATE: the base model on its own endpoint, once per campaign."""
    store = artifacts.store()
    report, dep = stages.baseline(store, context.partition_key, context.log.info)
    context.log.info(f"baseline pass rate {report.pass_rate:.1f}%")
    return dg.MaterializeResult(
        metadata={**report_metadata(report), "iteration": 0, "server_ready_s": dep.ready_seconds,
                  **cost_metadata(store, context.partition_key, 0, "eval"), **progress_plots(store, context.partition_key, 0)}  # fmt: skip
    )


@iteration_asset("analyze", deps=[baseline_eval, campaign_config], kinds={"bedrock", "anthropic", "openai"})
def failure_analysis(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """02 ANALYZE: the weakest services of the previous eval report and a generation plan."""
    campaign, i = keys(context)
    if pending := earlier_in_backfill(context):
        raise PredecessorMissing(
            f"campaign {campaign!r} iteration {i}: iteration {pending[0]} of the same backfill has not run yet, and this "
            f"one would read what it is about to replace; re-run iteration {i} after it (backfills of iteration_job "
            "submit iterations in order)"
        )
    store = artifacts.store()
    a = stages.analyze_failures(store, campaign, i)
    context.log.info(a.summary)
    if a.fallback_reason:
        context.log.warning(f"the analyzer model gave no valid analysis; the deterministic analyzer took over: {a.fallback_reason}")
    return dg.MaterializeResult(
        metadata={
            "summary": a.summary,
            "datagen_services": dg.MetadataValue.json(a.datagen_services),
            "priority_services": dg.MetadataValue.json(a.priority_services),
            "datagen_count": a.datagen_count,
            "rehearsal_services": dg.MetadataValue.json(a.rehearsal_services),
            "rehearsal_count": a.rehearsal_count,
            "trend_analysis": dg.MetadataValue.json(a.trend_analysis),
            "analyzer": a.analyzer,
            "analyzer_attempts": a.attempts,
            **({"fallback_reason": a.fallback_reason} if a.fallback_reason else {}),
            **cost_metadata(store, campaign, i, "analyze"),
        }
    )


@iteration_asset("generate", deps=[failure_analysis], kinds={"bedrock", "anthropic", "openai"})
def generated_examples(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """03 GENERATE: grounded Q&A pairs for the targeted services, one worker call per pair."""
    campaign, i = keys(context)
    t0 = time.monotonic()
    store = artifacts.store()
    r = stages.generate_examples(store, campaign, i, context.log.info)
    if r.skipped_services:
        context.log.warning(f"skipped services: {r.skipped_services}")
    return dg.MaterializeResult(
        metadata={
            "pairs": len(r.pairs),
            "produced_by_service": dg.MetadataValue.json(r.produced),
            "skipped_services": dg.MetadataValue.json(r.skipped_services),
            "attempts": dg.MetadataValue.json(r.attempts),
            "elapsed_s": dg.MetadataValue.float(round(time.monotonic() - t0, 2)),
            **({"synthesis": dg.MetadataValue.json(r.synthesis)} if r.synthesis else {}),
            **cost_metadata(store, campaign, i, "generate"),
        }
    )


@iteration_asset("generate", deps=[generated_examples], kinds={"json", "pandas"})
def training_dataset(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """The cumulative dataset: the previous iteration's rows plus this iteration's pairs that pass validation,
    grounding, decontamination and dedup (drops counted by reason; a dataset card per partition)."""
    campaign, i = keys(context)
    store = artifacts.store()
    s = stages.build_dataset(store, campaign, i)
    context.log.info(f"dataset: {s.added} pairs added, {s.rows} rows; dropped {s.dropped}")
    return dg.MaterializeResult(
        metadata={
            "rows_total": s.rows,
            "rows_added": s.added,
            "dropped_by_reason": dg.MetadataValue.json(s.dropped),
            "rows_by_service": dg.MetadataValue.json(s.by_service),
            "dataset_card": dg.MetadataValue.md(s.card),
            "path": dg.MetadataValue.path(s.path),
            **cost_metadata(store, campaign, i, "dataset"),
        }
    )


@iteration_asset("fine_tune", deps=[training_dataset], kinds={"peft", "pytorch", "transformers"}, pool=GPU_POOL, op_tags=GPU_STEP)
def checkpoint(
    context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource, finetune_pipes: dg.PipesSubprocessClient
) -> dg.MaterializeResult:
    """04 FINE-TUNE: LoRA from the base on the cumulative dataset; adapter, merged weights, manifest.
    With finetune.runner 'pipes' the training runs in a Dagster Pipes process (another machine, in production)."""
    campaign, i = keys(context)
    store = artifacts.store()
    if stages.load_campaign(store, campaign).finetune.runner == "pipes":
        extras = {"root": str(store.root), "campaign": campaign, "iteration": i, **artifacts.s3_extras()}
        finetune_pipes.run(context=context, command=[sys.executable, "-m", "bcomc_dagster.training.remote"], extras=extras)
        artifacts.pull(campaign)  # what a process on another machine wrote to the bucket
        m = stages.read_manifest(store, campaign, i)
    else:
        m = stages.train_checkpoint(store, campaign, i, context.log.info)
    return dg.MaterializeResult(
        metadata={
            "final_loss": dg.MetadataValue.float(m.final_loss),
            "loss_curve": dg.MetadataValue.json(m.loss_curve),
            "loss_plot": dg.MetadataValue.md(plots.markdown_image(plots.loss_figure(m.loss_curve, f"Training loss, iteration {i}"), "loss")),
            "steps": m.steps,
            "data_rows": m.data_rows,
            "adapter_name": m.adapter_name,
            "adapter_fingerprint": m.adapter_fingerprint,
            "merged_fingerprint": m.merged_fingerprint,
            "base_model": m.base_model,
            "elapsed_s": dg.MetadataValue.float(m.train_seconds),
            "max_length": m.max_length,
            "truncated": m.truncated,  # examples cut to max_length tokens
            "merged_dtype": m.merged_dtype,
            **({"device": m.hardware.device, "precision": m.hardware.precision,
                "tokens_per_s": dg.MetadataValue.float(m.hardware.tokens_per_second),
                "peak_memory_mb": dg.MetadataValue.float(m.hardware.peak_memory_mb),
                "mfu": dg.MetadataValue.float(m.hardware.mfu) if m.hardware.mfu is not None else "n/a (no peak figure for this device)"}
               if m.hardware else {}),  # fmt: skip
        }
    )


@iteration_asset("deploy", deps=[checkpoint], kinds={"vllm", "ollama"}, pool=GPU_POOL, op_tags=GPU_STEP)
def deployment(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """05 DEPLOY: the endpoint now serving this checkpoint, verified before anything evaluates it."""
    campaign, i = keys(context)
    d = stages.deploy_checkpoint(artifacts.store(), campaign, i, context.log.info)
    return dg.MaterializeResult(
        metadata={
            "endpoint": dg.MetadataValue.url(d.endpoint),
            "served_model": d.served_model,
            "engine": d.engine,
            "mode": d.mode,
            "fingerprint": d.fingerprint,
            "live": f"{d.served_model} (iteration {d.iteration})",
            "replaced": d.replaced or "",
            "server_started": d.server_started,
            "ready_s": dg.MetadataValue.float(d.ready_seconds),
            "elapsed_s": dg.MetadataValue.float(d.deploy_seconds),
        }
    )


@iteration_asset("evaluate", deps=[deployment], kinds={"vllm", "pandas"}, op_tags=MODEL_HOST)
def eval_report(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """06 RE-EVAL: the same suite against the live deployment; delta vs the previous iteration."""
    campaign, i = keys(context)
    store = artifacts.store()
    r = stages.reevaluate(store, campaign, i, context.log.info)
    context.log.info(f"iteration {i}: pass rate {r.pass_rate:.1f}% (delta {r.improvement_delta:+.1f})")
    gate = stages.read_promotion(store, campaign, i)
    promotion = {"promoted": gate.promoted, "promotion": gate.reason} if gate else {}
    return dg.MaterializeResult(
        metadata={**report_metadata(r), "iteration": i, **promotion, **cost_metadata(store, campaign, i, "eval"),
                  **progress_plots(store, campaign, i)}  # fmt: skip
    )


@campaign_asset("outcome", deps=[eval_report], kinds={"pandas"}, op_tags=MODEL_HOST)  # stops the servers
def campaign_outcome(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """How the campaign ended: target reached or max iterations; the best iteration; what is left live."""
    store = artifacts.store()
    o = stages.conclude(store, context.partition_key, context.log.info)
    eff = stages.campaign_effectiveness(store, context.partition_key)
    return dg.MaterializeResult(
        metadata={
            "effectiveness": dg.MetadataValue.md(eff.markdown()),
            "iterations_to_target": eff.iterations_to_target if eff.iterations_to_target is not None else "not reached",
            "regressions": len(eff.regressions),
            "contaminated_pairs": eff.contaminated_pairs if eff.contaminated_pairs is not None else 0,
            "dropped_by_reason": dg.MetadataValue.json(eff.dropped_by_reason),
            "status": o.status,
            "iterations": o.iterations,
            "baseline_pass_rate": dg.MetadataValue.float(o.baseline_pass_rate),
            "final_pass_rate": dg.MetadataValue.float(o.final_pass_rate),
            "best_iteration": o.best_iteration,
            "pass_rates": dg.MetadataValue.json({str(k): v for k, v in o.pass_rates.items()}),
            "final_model": f"{o.final_model} (iteration {o.final_iteration})",
            "live_model": o.live_model or "",
            "servers_stopped": o.servers_stopped,
            "campaign_cost_usd": dg.MetadataValue.float(o.cost_usd),
            **({"stop_reason": o.stop_reason} if o.stop_reason else {}),
            **({"final_model_error": o.final_model_error} if o.final_model_error else {}),
        }
    )


@campaign_asset("outcome", deps=[campaign_outcome], kinds={"html", "markdown"})
def campaign_report(context: dg.AssetExecutionContext, artifacts: ArtifactStoreResource) -> dg.MaterializeResult:
    """One page per campaign (self-contained HTML, and Markdown): outcome, curves, per-service table,
    what each iteration targeted and gained, cost, links to the artifacts. `bcomc report` writes it too."""
    store = artifacts.store()
    html, md = campaign_report_page.write(store, context.partition_key)
    r = campaign_report_page.collect(store, context.partition_key)
    figs = campaign_report_page.figures(r)
    return dg.MaterializeResult(
        metadata={
            "html": dg.MetadataValue.path(str(html)),
            "markdown": dg.MetadataValue.path(str(md)),
            "status": r.status,
            "pass_rate_plot": dg.MetadataValue.md(plots.markdown_image(figs["pass_rate"], "pass rate")),
            "service_heatmap": dg.MetadataValue.md(plots.markdown_image(figs["services"], "per-service pass rate")),
            "cost_usd": dg.MetadataValue.float(r.cost_usd),
        }
    )
