import dagster as dg

campaigns = dg.DynamicPartitionsDefinition(name="campaign")
iterations = dg.DynamicPartitionsDefinition(name="iteration")
campaign_iterations = dg.MultiPartitionsDefinition({"campaign": campaigns, "iteration": iterations})


def iteration_key(campaign: str, iteration: int) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"campaign": campaign, "iteration": str(iteration)})


def keys(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, int]:
    """(campaign, iteration) of a (campaign, iteration) partition, in an asset or an asset check."""
    key = context.partition_key
    assert isinstance(key, dg.MultiPartitionKey)  # the iteration assets' partitions are multi-partitions
    k = key.keys_by_dimension
    return k["campaign"], int(k["iteration"])


PENDING = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def earlier_in_backfill(context: dg.AssetExecutionContext) -> list[int]:
    """Earlier iterations of this run's campaign that the same backfill has still to run. A job backfill
    (`dagster job backfill -j iteration_job`) submits iterations in order; an asset backfill may not."""
    backfill = context.run.tags.get("dagster/backfill")
    if not backfill:
        return []
    campaign, i = keys(context)
    runs = context.instance.get_runs(
        dg.RunsFilter(
            tags={"dagster/backfill": backfill, "dagster/partition/campaign": campaign}, statuses=PENDING
        )
    )
    return sorted(
        int(r.tags["dagster/partition/iteration"])
        for r in runs
        if int(r.tags["dagster/partition/iteration"]) < i
    )
