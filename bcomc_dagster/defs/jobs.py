import os

import dagster as dg

from bcomc_dagster.defs.partitions import campaign_iterations, campaigns

CAMPAIGN_TAG = "campaign"


def step_executor() -> dg.ExecutorDefinition | None:
    """BCOMC_EXECUTOR=k8s: every step of the loop's jobs in its own Kubernetes pod (deploy/k8s);
    BCOMC_EXECUTOR=celery: steps as tasks on Celery workers (dagster-celery; broker in the run config);
    else the instance's default executor."""
    executor = os.environ.get("BCOMC_EXECUTOR")
    if executor == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if executor == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    return None


baseline_job = dg.define_asset_job(
    "baseline_job",
    selection=["baseline_eval"],
    partitions_def=campaigns,
    executor_def=step_executor(),
    description="01 EVALUATE the base model of a campaign.",
)
iteration_job = dg.define_asset_job(
    "iteration_job",
    selection=dg.AssetSelection.assets(
        "failure_analysis",
        "generated_examples",
        "training_dataset",
        "checkpoint",
        "deployment",
        "eval_report",
    ),
    partitions_def=campaign_iterations,
    executor_def=step_executor(),
    description="One iteration: analyze, generate, cumulative dataset, fine-tune, deploy, re-evaluate.",
)
outcome_job = dg.define_asset_job(
    "outcome_job",
    selection=["campaign_outcome", "campaign_report"],
    partitions_def=campaigns,
    executor_def=step_executor(),
    description="Record how a campaign ended, stop its servers, and write its report.",
)
