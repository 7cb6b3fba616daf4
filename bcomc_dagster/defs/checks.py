import dagster as dg

from bcomc_dagster import stages
from bcomc_dagster.defs.assets import training_dataset
from bcomc_dagster.defs.partitions import keys
from bcomc_dagster.defs.resources import ArtifactStoreResource


@dg.asset_check(asset=training_dataset, blocking=True)
def no_eval_questions_in_training_data(
    context: dg.AssetCheckExecutionContext, artifacts: ArtifactStoreResource
) -> dg.AssetCheckResult:
    """Fails the iteration if any eval question (normalised) appears in the training data."""
    campaign, i = keys(context)
    hits = stages.contamination(artifacts.store(), campaign, i)
    return dg.AssetCheckResult(
        passed=not hits,
        metadata={"contaminated_pairs": len(hits), "examples": dg.MetadataValue.json(hits[:20])},
    )
