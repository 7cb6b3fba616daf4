import dagster as dg

campaigns = dg.DynamicPartitionsDefinition(name="campaign")
iterations = dg.DynamicPartitionsDefinition(name="iteration")
campaign_iterations = dg.MultiPartitionsDefinition({"campaign": campaigns, "iteration": iterations})


def iteration_key(campaign: str, iteration: int) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"campaign": campaign, "iteration": str(iteration)})


def keys(context: dg.AssetExecutionContext) -> tuple[str, int]:
    """(campaign, iteration) of a (campaign, iteration) partition."""
    k = context.partition_key.keys_by_dimension
    return k["campaign"], int(k["iteration"])
