"""Asset metadata built from the stages' results."""

import dagster as dg

from bcomc_dagster import costs, stages
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.evals.report import EvalReport
from bcomc_dagster.reports import plots


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


def progress_plots(store: ArtifactStore, campaign: str, iteration: int) -> dict:
    """The campaign so far, as the UI shows it beside each eval report: the pass-rate curve with the
    target, the per-service heatmap, and the cost per iteration."""
    cfg = stages.load_campaign(store, campaign)
    reports = {i: stages.read_report(store, campaign, i) for i in store.iterations(campaign, having=stages.REPORT) if i <= iteration}
    rates = {i: r.pass_rate for i, r in reports.items()}
    held = {i: r.pass_rate_held_out for i, r in reports.items() if r.pass_rate_held_out is not None}
    per_service = {s: {i: r.results_by_service[s].pass_rate for i, r in reports.items() if s in r.results_by_service}
                   for s in reports[iteration].results_by_service}  # fmt: skip
    spend = {i: {s: c.cost_usd for s in costs.STAGES if (c := costs.stage_cost(store, campaign, i, s))} for i in reports}
    out = {
        "pass_rate_plot": dg.MetadataValue.md(plots.markdown_image(plots.pass_rate_figure(rates, cfg.target_pass_rate, held or None), "pass rate")),
        "service_heatmap": dg.MetadataValue.md(plots.markdown_image(plots.service_heatmap(per_service), "per-service pass rate")),
    }
    if any(v for stage_costs in spend.values() for v in stage_costs.values()):
        out["cost_plot"] = dg.MetadataValue.md(plots.markdown_image(plots.cost_figure(spend), "cost per iteration"))
    return out
