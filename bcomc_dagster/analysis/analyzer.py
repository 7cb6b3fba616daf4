"""The embedded analyzer: ranks services by failure rate (and trend) and plans the next generation.

Its output keeps the plan's names: summary, priority_services, datagen_services, datagen_count,
suggested_actions, trend_analysis.
"""

from __future__ import annotations

from pydantic import BaseModel

from bcomc_dagster.evals.report import EvalReport


class Analysis(BaseModel):
    summary: str
    priority_services: dict[str, int]  # service -> priority, 1 = most urgent
    datagen_services: list[str]
    datagen_count: int  # pairs to generate per service
    rehearsal_services: list[
        str
    ] = []  # learned before, not targeted now: new phrasings so they are not forgotten
    rehearsal_count: int = 0  # pairs per rehearsed service (datagen.rehearsal_share of datagen_count)
    suggested_actions: list[str]
    trend_analysis: dict[str, str]
    analyzer: str = "embedded"
    attempts: int = 1  # calls the analyzer model needed for a valid answer
    fallback_reason: str | None = None  # why the deterministic analyzer took over from the model


def trend(history: list[EvalReport], service: str) -> str:
    rates = [r.results_by_service[service].pass_rate for r in history if service in r.results_by_service]
    if len(rates) < 2:
        return "first measurement"
    delta = rates[-1] - rates[-2]
    return "improving" if delta > 0 else "regressing" if delta < 0 else "flat"


def analyze(
    history: list[EvalReport],
    examples_per_service: int,
    min_services: int = 3,
    max_services: int = 5,
    regressed: list[str] | tuple[str, ...] = (),
) -> Analysis:
    """``history`` is every report so far, oldest first; the last one is analysed. ``regressed``: services the
    last checkpoint made worse than the live model (the promotion gate's record); they come first."""
    report = history[-1]
    rates = {s: r.pass_rate for s, r in report.results_by_service.items()}
    trends = {s: trend(history, s) for s in rates}
    order = {"regressing": 0, "flat": 1, "first measurement": 1, "improving": 2}
    ranked = sorted(rates, key=lambda s: (s not in regressed, rates[s], order[trends[s]], s))
    failing = [s for s in ranked if rates[s] < 100.0]
    chosen = failing[:max_services]
    if len(chosen) < min_services:
        chosen = failing  # fewer than min_services still fail: target those, never a perfect one
    actions = [
        f"generate {examples_per_service} grounded pairs for {s} ({rates[s]:.0f}% passing)" for s in chosen
    ]
    watch = sorted(set(regressed) | {s for s, t in trends.items() if t == "regressing"})
    if watch:
        actions.append(f"watch regressions: {', '.join(watch)}")
    return Analysis(
        summary=(
            f"{report.pass_rate:.1f}% overall; {len(failing)} of {len(rates)} services below 100%; "
            f"targeting {', '.join(chosen) or 'none'}"
        ),
        priority_services={s: i + 1 for i, s in enumerate(chosen)},
        datagen_services=chosen,
        datagen_count=examples_per_service,
        suggested_actions=actions,
        trend_analysis=trends,
    )
