"""One page per campaign, as self-contained HTML (images inline) and as Markdown (images beside it):
the outcome, the curves, the per-service table, what each iteration targeted and gained, the cost,
and links to the artifacts (relative to the campaign's folder, where the pages are written)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
from pydantic import BaseModel

from bcomc_dagster import campaign_state, costs
from bcomc_dagster.analysis.effectiveness import Effectiveness
from bcomc_dagster.artifacts import (
    ANALYSIS,
    CARD,
    CHECKPOINT,
    CONFIG,
    DATASET,
    DEPLOYMENT,
    EFFECTIVENESS_MD,
    REPORT,
    ArtifactStore,
)
from bcomc_dagster.evals.report import Sample, samples, samples_markdown
from bcomc_dagster.reports import plots
from bcomc_dagster.training.manifest import MANIFEST

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HTML = "report.html"
MARKDOWN = "report.md"
_env = jinja2.Environment(
    loader=jinja2.PackageLoader("bcomc_dagster.reports", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


class CampaignReport(BaseModel):
    campaign: str
    status: str
    model_name: str
    eval_suite: str
    target: float
    max_iterations: int
    rates: dict[int, float]
    held_out: dict[int, float]
    effectiveness: Effectiveness
    cost_by_iteration: dict[int, dict[str, float]]
    cost_usd: float
    loss_curves: dict[int, list[tuple[int, float]]]
    live_model: str | None = None
    artifacts: list[tuple[str, str]]  # (label, path relative to the campaign folder)
    live_iteration: int = 0
    samples: list[Sample] = []  # per service: the base's and the live model's answers, graded
    rejected: dict[int, str] = {}  # iteration -> why the gate kept its checkpoint off
    judge: str = ""


def collect(store: ArtifactStore, campaign: str) -> CampaignReport:
    cfg = store.config(campaign)
    last = campaign_state.latest_iteration(store, campaign)
    reports = {i: store.report(campaign, i) for i in store.iterations(campaign, having=REPORT)}
    status = store.outcome(campaign)
    curves = {i: store.manifest(campaign, i).loss_curve for i in reports if i > 0}
    artifacts = [("effectiveness report", EFFECTIVENESS_MD), ("launch config", CONFIG)]
    for i in reports:
        names = [
            (REPORT, "eval report"),
            (ANALYSIS, "failure analysis"),
            (DATASET, "training dataset"),
            (CARD, "dataset card"),
            (f"{CHECKPOINT}/{MANIFEST}", "checkpoint manifest"),
            (DEPLOYMENT, "deployment"),
        ]
        artifacts += [
            (f"iteration {i}: {label}", f"{i}/{name}")
            for name, label in names
            if store.campaign_dir(campaign).joinpath(str(i), name).exists()
        ]
    live = campaign_state.live_iteration(store, campaign, last)
    gates = {i: store.promotion(campaign, i) for i in reports if i > 0}
    return CampaignReport(
        live_iteration=live,
        samples=samples(reports[0], reports[live]) if 0 in reports and live in reports else [],
        rejected={i: g.reason for i, g in gates.items() if g is not None and not g.promoted},
        judge=reports[live].judge if live in reports else cfg.judge,
        campaign=campaign,
        status=status.status if status else "running",
        model_name=cfg.model_name,
        eval_suite=cfg.eval_suite,
        target=cfg.target_pass_rate,
        max_iterations=cfg.max_iterations,
        rates={i: r.pass_rate for i, r in reports.items()},
        held_out={i: r.pass_rate_held_out for i, r in reports.items() if r.pass_rate_held_out is not None},
        effectiveness=campaign_state.effectiveness_of(store, campaign),
        cost_by_iteration={
            i: {s: c.cost_usd for s in costs.STAGES if (c := costs.stage_cost(store, campaign, i, s))}
            for i in range(last + 1)
        },
        cost_usd=costs.campaign_cost(store, campaign),
        loss_curves=curves,
        live_model=status.live_model if status else None,
        artifacts=artifacts,
    )


def figures(r: CampaignReport) -> dict[str, Figure]:
    figs = {
        "pass_rate": plots.pass_rate_figure(
            r.rates, r.target, r.held_out or None, title=f"Pass rate — {r.campaign}"
        ),
        "services": plots.service_heatmap(r.effectiveness.per_service),
    }
    if r.cost_usd > 0:  # the embedded defaults cost nothing: no empty chart
        figs["cost"] = plots.cost_figure(r.cost_by_iteration)
    if r.loss_curves:
        last = max(r.loss_curves)
        figs["loss"] = plots.loss_figure(r.loss_curves[last], title=f"Training loss, iteration {last}")
    return figs


def _context(r: CampaignReport, images: dict[str, str]) -> dict[str, Any]:
    e = r.effectiveness
    return {
        "r": r,
        "e": e,
        "images": images,
        "services_html": e.service_table().to_html(
            float_format=lambda v: f"{v:.1f}", classes="table", border=0
        ),
        "services_md": e.service_table().to_markdown(floatfmt=".1f"),
        "samples_md": samples_markdown(r.samples) if r.samples else "(no eval report yet)",
        "iterations_md": e.iteration_table().to_markdown(index=False, floatfmt=".1f")
        if e.iterations
        else "(baseline only)",
    }


def render_html(r: CampaignReport) -> str:
    images = {name: plots.data_uri(fig) for name, fig in figures(r).items()}
    return _env.get_template("campaign.html.j2").render(**_context(r, images))


def render_markdown(r: CampaignReport, images: dict[str, str]) -> str:
    return _env.get_template("campaign.md.j2").render(**_context(r, images))


def write(store: ArtifactStore, campaign: str) -> tuple[Path, Path]:
    """Write report.html, report.md and its images into the campaign's folder; returns both paths."""
    r = collect(store, campaign)
    images = {}
    for name, fig in figures(r).items():
        images[name] = f"report-{name}.png"
        store.write_bytes(campaign, None, images[name], plots.png(fig))
    html = store.write_text(campaign, None, HTML, render_html(r))
    md = store.write_text(campaign, None, MARKDOWN, render_markdown(r, images))
    return html, md
