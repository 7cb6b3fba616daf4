"""The dataset card of one training_dataset partition: what it holds, where it came from, what was dropped."""

from __future__ import annotations

import pandas as pd

from bcomc_dagster.datagen.quality import FilterResult
from bcomc_dagster.datagen.schema import QAPair


def rows_table(rows: list[QAPair]) -> pd.DataFrame:
    """Rows by service (index) and the iteration that generated them (columns), with totals."""
    if not rows:
        return pd.DataFrame()
    df = pd.DataFrame(
        {"service": [r.service for r in rows], "iteration": [r.provenance.iteration for r in rows]}
    )
    return pd.crosstab(df["service"], df["iteration"], margins=True, margins_name="total")


def dataset_card(
    campaign: str, iteration: int, rows: list[QAPair], result: FilterResult, samples: int = 5
) -> str:
    counts = {k: v for k, v in result.counts().items() if v}
    lines = [
        f"# Training dataset — campaign `{campaign}`, iteration {iteration}",
        "",
        f"{len(rows)} rows: {len(rows) - len(result.kept)} from earlier iterations, {len(result.kept)} "
        "added now; "
        f"{len(result.dropped)} generated pairs dropped.",
        "",
        "## Rows by service and iteration",
        "",
        rows_table(rows).to_markdown() if rows else "(empty)",
        "",
        "## Dropped this iteration, by reason",
        "",
        pd.DataFrame(sorted(counts.items()), columns=["reason", "pairs"]).to_markdown(index=False)
        if counts
        else "none",
        "",
    ]
    for d in result.dropped[:samples]:
        lines.append(f"- {d.reason}: {d.question!r} ({d.detail})")
    lines += ["", "## Sample pairs added", ""]
    for r in result.kept[:samples]:
        lines.append(
            f"- **{r.service}** Q: {r.question} A: {r.answer} (from "
            f"`{r.provenance.fact or r.provenance.passage or r.provenance.snippet[:120]}`, "
            f"{r.provenance.model})"
        )
    return "\n".join(lines).rstrip() + "\n"
