"""Asset metadata, built in one place from each stage's result type."""

from pathlib import Path
from typing import Any, cast

import dagster as dg

from bcomc_dagster import costs
from bcomc_dagster.analysis.analyzer import Analysis
from bcomc_dagster.analysis.effectiveness import Effectiveness
from bcomc_dagster.artifacts import REPORT, ArtifactStore
from bcomc_dagster.config import CampaignConfig
from bcomc_dagster.datagen.coordinator import GenerationResult
from bcomc_dagster.evals.report import EvalReport, samples, samples_markdown
from bcomc_dagster.loop import Outcome, Promotion
from bcomc_dagster.reports import plots
from bcomc_dagster.reports.campaign import CampaignReport, figures
from bcomc_dagster.serving.deployer import Deployment
from bcomc_dagster.stages import DatasetSummary
from bcomc_dagster.text import GLIMPSE, clip
from bcomc_dagster.tracking import Tracked
from bcomc_dagster.training.manifest import Manifest

Metadata = dict[str, Any]


def config_metadata(cfg: CampaignConfig) -> Metadata:
    return {
        "config": dg.MetadataValue.json(cfg.model_dump()),
        "target_pass_rate": cfg.target_pass_rate,
        "max_iterations": cfg.max_iterations,
        "auto_advance": cfg.auto_advance,
        "eval_suite": cfg.eval_suite,
        "model_name": cfg.model_name,
    }


def analysis_metadata(a: Analysis) -> Metadata:
    return {
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
    }


def generation_metadata(r: GenerationResult, elapsed_s: float) -> Metadata:
    return {
        "pairs": len(r.pairs),
        "asked": sum(r.asked.values()),
        "delivered": sum(r.delivered.values()),
        "rounds": r.rounds,
        "asked_by_service": dg.MetadataValue.json(r.asked),
        "delivered_by_service": dg.MetadataValue.json(r.delivered),
        "dropped_by_service": dg.MetadataValue.json(r.dropped),
        **({"short_services": dg.MetadataValue.json(r.short)} if r.short else {}),
        "produced_by_service": dg.MetadataValue.json(r.produced),
        "skipped_services": dg.MetadataValue.json(r.skipped_services),
        "attempts": dg.MetadataValue.json(r.attempts),
        "elapsed_s": dg.MetadataValue.float(round(elapsed_s, 2)),
        **({"synthesis": dg.MetadataValue.json(r.synthesis)} if r.synthesis else {}),
    }


def dataset_metadata(s: DatasetSummary) -> Metadata:
    return {
        "rows_total": s.rows,
        "rows_added": s.added,
        "dropped_by_reason": dg.MetadataValue.json(s.dropped),
        "rows_by_service": dg.MetadataValue.json(s.by_service),
        "dataset_card": dg.MetadataValue.md(s.card),
        "path": dg.MetadataValue.path(s.path),
    }


def checkpoint_metadata(m: Manifest, i: int) -> Metadata:
    return {
        "final_loss": dg.MetadataValue.float(m.final_loss),
        "loss_curve": dg.MetadataValue.json(m.loss_curve),
        "loss_plot": dg.MetadataValue.md(
            plots.markdown_image(plots.loss_figure(m.loss_curve, f"Training loss, iteration {i}"), "loss")
        ),
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
        **(
            {
                "device": m.hardware.device,
                "precision": m.hardware.precision,
                "tokens_per_s": dg.MetadataValue.float(m.hardware.tokens_per_second),
                "peak_memory_mb": dg.MetadataValue.float(m.hardware.peak_memory_mb),
                "mfu": dg.MetadataValue.float(m.hardware.mfu)
                if m.hardware.mfu is not None
                else "n/a (no peak figure for this device)",
            }
            if m.hardware
            else {}
        ),
    }


def deployment_metadata(d: Deployment) -> Metadata:
    return {
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


def outcome_metadata(o: Outcome, eff: Effectiveness) -> Metadata:
    return {
        "effectiveness": dg.MetadataValue.md(eff.markdown()),
        "iterations_to_target": eff.iterations_to_target
        if eff.iterations_to_target is not None
        else "not reached",
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


def report_metadata(
    report: EvalReport, iteration: int, gate: Promotion | None = None, base: EvalReport | None = None
) -> Metadata:
    failures = "\n".join(
        f"- **{a.service}** {a.question} → `{clip(a.answer, GLIMPSE)}` ({a.reason})"
        for a in report.failures[:10]
    )
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
        "grades": dg.MetadataValue.json(report.grades),
        "decided_pass_rate": dg.MetadataValue.float(report.decided_pass_rate),
        **({"compared_with_iteration": report.compared_with} if report.compared_with is not None else {}),
        **(
            {"answers_to_check": dg.MetadataValue.md(samples_markdown(samples(base, report)))} if base else {}
        ),
        "iteration": iteration,
        **({"promoted": gate.promoted, "promotion": gate.reason} if gate else {}),
        **(
            {
                # set together with pass_rate_held_out
                "pass_rate_analyzed": dg.MetadataValue.float(cast(float, report.pass_rate_analyzed)),
                "pass_rate_held_out": dg.MetadataValue.float(report.pass_rate_held_out),
            }
            if report.pass_rate_held_out is not None
            else {}
        ),
    }


def cost_metadata(store: ArtifactStore, campaign: str, iteration: int, stage: str) -> Metadata:
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


def progress_plots(store: ArtifactStore, campaign: str, iteration: int) -> Metadata:
    """The campaign so far, as the UI shows it beside each eval report: the pass-rate curve with the
    target, the per-service heatmap, and the cost per iteration."""
    cfg = store.config(campaign)
    reports = {
        i: store.report(campaign, i) for i in store.iterations(campaign, having=REPORT) if i <= iteration
    }
    rates = {i: r.pass_rate for i, r in reports.items()}
    held = {i: r.pass_rate_held_out for i, r in reports.items() if r.pass_rate_held_out is not None}
    per_service = {
        s: {i: r.results_by_service[s].pass_rate for i, r in reports.items() if s in r.results_by_service}
        for s in reports[iteration].results_by_service
    }
    spend = {
        i: {s: c.cost_usd for s in costs.STAGES if (c := costs.stage_cost(store, campaign, i, s))}
        for i in reports
    }
    out = {
        "pass_rate_plot": dg.MetadataValue.md(
            plots.markdown_image(
                plots.pass_rate_figure(rates, cfg.target_pass_rate, held or None), "pass rate"
            )
        ),
        "service_heatmap": dg.MetadataValue.md(
            plots.markdown_image(plots.service_heatmap(per_service), "per-service pass rate")
        ),
    }
    if any(v for stage_costs in spend.values() for v in stage_costs.values()):
        out["cost_plot"] = dg.MetadataValue.md(
            plots.markdown_image(plots.cost_figure(spend), "cost per iteration")
        )
    return out


def report_page_metadata(html: Path, markdown: Path, r: CampaignReport) -> Metadata:
    figs = figures(r)
    return {
        "html": dg.MetadataValue.path(str(html)),
        "markdown": dg.MetadataValue.path(str(markdown)),
        "status": r.status,
        "pass_rate_plot": dg.MetadataValue.md(plots.markdown_image(figs["pass_rate"], "pass rate")),
        "service_heatmap": dg.MetadataValue.md(
            plots.markdown_image(figs["services"], "per-service pass rate")
        ),
        "cost_usd": dg.MetadataValue.float(r.cost_usd),
    }


def tracking_metadata(t: Tracked | None, iteration: int | None) -> Metadata:
    """Where MLflow holds this step's run (``iteration`` None: the campaign's run); nothing when untracked."""
    if t is None:
        return {}
    run = t.campaign_run if iteration is None else t.iteration_runs.get(iteration, t.campaign_run)
    out: Metadata = {"mlflow_experiment_id": t.experiment_id, "mlflow_run_id": run}
    if t.uri.startswith(("http://", "https://")):
        out["mlflow_run"] = dg.MetadataValue.url(
            f"{t.uri.rstrip('/')}/#/experiments/{t.experiment_id}/runs/{run}"
        )
    if iteration is None and t.model_version:
        out["mlflow_model_version"] = f"{t.registered_model} v{t.model_version}"
    return out
