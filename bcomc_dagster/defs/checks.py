import dagster as dg

from bcomc_dagster import campaign_state
from bcomc_dagster.defs.assets import training_dataset
from bcomc_dagster.defs.partitions import keys
from bcomc_dagster.defs.resources import ArtifactStoreResource, mirrored


@dg.asset_check(asset=training_dataset, blocking=True)
@mirrored
def no_eval_questions_in_training_data(
    context: dg.AssetCheckExecutionContext, artifacts: ArtifactStoreResource
) -> dg.AssetCheckResult:
    """Fails the iteration if any training question resembles an eval question (word n-gram overlap at or
    above quality.decontamination_threshold); names the offending pairs."""
    campaign, i = keys(context)
    hits = campaign_state.contamination(artifacts.store(), campaign, i)
    return dg.AssetCheckResult(
        passed=not hits,
        metadata={"contaminated_pairs": len(hits), "offending_pairs": dg.MetadataValue.json(hits[:50])},
    )
