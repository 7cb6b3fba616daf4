import dagster as dg

from bcomc_dagster.defs.partitions import campaign_iterations, campaigns

CAMPAIGN_TAG = "campaign"

baseline_job = dg.define_asset_job(
    "baseline_job", selection=["baseline_eval"], partitions_def=campaigns,
    description="01 EVALUATE the base model of a campaign.",
)  # fmt: skip
iteration_job = dg.define_asset_job(
    "iteration_job",
    selection=dg.AssetSelection.assets(
        "failure_analysis", "generated_examples", "training_dataset", "checkpoint", "deployment", "eval_report"
    ),
    partitions_def=campaign_iterations,
    description="One iteration: analyze, generate, cumulative dataset, fine-tune, deploy, re-evaluate.",
)
outcome_job = dg.define_asset_job(
    "outcome_job", selection=["campaign_outcome", "campaign_report"], partitions_def=campaigns,
    description="Record how a campaign ended, stop its servers, and write its report.",
)  # fmt: skip
