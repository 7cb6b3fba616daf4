"""The campaign's curves as matplotlib figures: pass rate per iteration with the target, a per-service
heatmap across iterations, a checkpoint's training loss, and cost per iteration by stage.

Figures are built with the object API (no pyplot state), so they are safe in threads and tests can
read their titles, series and values. ``png`` and ``markdown_image`` turn one into what the Dagster UI
and the reports show.
"""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")  # files only, never a window

from matplotlib.figure import Figure  # noqa: E402

BLUE, ORANGE, GREY = "#1f77b4", "#ff7f0e", "#7f7f7f"


def pass_rate_figure(
    rates: dict[int, float],
    target: float,
    held_out: dict[int, float] | None = None,
    title: str = "Pass rate by iteration",
) -> Figure:
    fig = Figure(figsize=(6, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    its = sorted(rates)
    ax.plot(its, [rates[i] for i in its], marker="o", color=BLUE, label="pass rate")
    for i in its:
        ax.annotate(
            f"{rates[i]:.1f}",
            (i, rates[i]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    if held_out:
        h = sorted(held_out)
        ax.plot(h, [held_out[i] for i in h], marker="s", linestyle=":", color=ORANGE, label="held-out part")
    ax.axhline(target, color=GREY, linestyle="--", label=f"target {target:g}%")
    ax.set(
        title=title,
        xlabel="iteration (0 = baseline)",
        ylabel="pass rate (%)",
        ylim=(0, 108),
        xticks=its,
        xlim=(its[0] - 0.4, its[-1] + 0.4),
    )  # room for the first and last labels
    ax.legend(loc="lower right", fontsize=8)
    return fig


def service_heatmap(per_service: dict[str, dict[int, float]], title: str = "Pass rate per service") -> Figure:
    services = sorted(per_service)
    its = sorted({i for rates in per_service.values() for i in rates})
    grid = [[per_service[s].get(i, float("nan")) for i in its] for s in services]
    fig = Figure(figsize=(1.2 + 0.7 * len(its), 0.9 + 0.32 * len(services)), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(its)), [str(i) for i in its])
    ax.set_yticks(range(len(services)), services)
    for r, row in enumerate(grid):
        for c, v in enumerate(row):
            if v == v:  # not NaN
                ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=7)
    ax.set(title=title, xlabel="iteration (0 = baseline)")
    fig.colorbar(im, ax=ax, label="%")
    return fig


def loss_figure(curve: list[tuple[int, float]], title: str = "Training loss") -> Figure:
    fig = Figure(figsize=(6, 3), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.plot([s for s, _ in curve], [v for _, v in curve], color=BLUE)
    ax.set(title=title, xlabel="step", ylabel="loss")
    return fig


def cost_figure(by_iteration: dict[int, dict[str, float]], title: str = "Cost per iteration") -> Figure:
    """Stacked bars: ``by_iteration[i][stage]`` in USD."""
    its = sorted(by_iteration)
    stages = sorted({s for costs in by_iteration.values() for s in costs})
    fig = Figure(figsize=(6, 3), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    bottom = [0.0] * len(its)
    for stage in stages:
        values = [by_iteration[i].get(stage, 0.0) for i in its]
        ax.bar([str(i) for i in its], values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set(title=title, xlabel="iteration (0 = baseline)", ylabel="USD")
    if stages:
        ax.legend(fontsize=8)
    return fig


def png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def data_uri(fig: Figure) -> str:
    return "data:image/png;base64," + base64.b64encode(png(fig)).decode()


def markdown_image(fig: Figure, alt: str) -> str:
    """Markdown that the Dagster UI renders as the image itself."""
    return f"![{alt}]({data_uri(fig)})"
