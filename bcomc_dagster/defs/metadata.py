"""Asset metadata built from the stages' results."""

import dagster as dg

from bcomc_dagster import costs
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.evals.report import EvalReport


def report_metadata(report: EvalReport) -> dict:
    failures = "\n".join(f"- **{a.service}** {a.question} → `{a.answer[:80]}` ({a.reason})" for a in report.failures[:10])
    return {
        "pass_rate": dg.MetadataValue.float(report.pass_rate),
        "improvement_delta": dg.MetadataValue.float(report.improvement_delta or 0.0),
        "per_service": dg.MetadataValue.md(report.table().to_markdown(index=False)),
        "questions": len(report.answers),
        "failures": len(report.failures),
        "example_failures": dg.MetadataValue.md(failures or "none"),
        "served_model": report.model,
        "endpoint": report.endpoint,
        "judge": report.judge,
        "run_id": report.run_id,
        "elapsed_s": dg.MetadataValue.float(report.seconds),
        "judge_errors": report.judge_errors,
        **(
            {"pass_rate_analyzed": dg.MetadataValue.float(report.pass_rate_analyzed),
             "pass_rate_held_out": dg.MetadataValue.float(report.pass_rate_held_out)}
            if report.pass_rate_held_out is not None else {}
        ),  # fmt: skip
    }


def cost_metadata(store: ArtifactStore, campaign: str, iteration: int, stage: str) -> dict:
    """The stage's model-call cost, by role, and the running totals of the iteration and the campaign."""
    c = costs.stage_cost(store, campaign, iteration, stage)
    if c is None:
        return {}
    roles = {r: s.model_dump() for r, s in c.roles.items()}
    return {
        "cost_usd": dg.MetadataValue.float(c.cost_usd),
        "cost_by_role": dg.MetadataValue.json(roles),
        "iteration_cost_usd": dg.MetadataValue.float(costs.iteration_cost(store, campaign, iteration)),
        "campaign_cost_usd": dg.MetadataValue.float(costs.campaign_cost(store, campaign)),
        **({"unpriced_models": dg.MetadataValue.json(c.unpriced)} if c.unpriced else {}),
    }
