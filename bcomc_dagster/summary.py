"""What the CLI prints after each stage: a few lines read from the stage's own result on the store."""

from __future__ import annotations

from bcomc_dagster.artifacts import ArtifactStore


def stage_lines(store: ArtifactStore, asset: str, campaign: str, iteration: int) -> list[str]:
    """The summary of ``asset``'s result for (campaign, iteration); none for an asset with nothing to say."""
    if asset in ("baseline_eval", "eval_report"):
        r = store.report(campaign, iteration)
        delta = (
            f" (delta {r.improvement_delta or 0.0:+.1f} vs iteration {r.compared_with}, the live model)"
            if asset == "eval_report" and r.compared_with is not None
            else ""
        )
        split = (
            f"; held-out part {r.pass_rate_held_out:.1f}% (drives no decision), "
            f"whole suite {r.pass_rate:.1f}%"
            if r.pass_rate_held_out is not None
            else ""
        )
        graded = ", ".join(f"{g} {n}" for g, n in sorted(r.grades.items()))
        lines = [f"  {asset}: pass rate {r.decided_pass_rate:.1f}%{delta}{split}"]
        if graded:
            lines.append(f"    judge {r.judge}: {graded}")
        lines.append("    " + r.table().to_markdown(index=False).replace("\n", "\n    "))
        if asset == "eval_report" and (gate := store.promotion(campaign, iteration)):
            lines.append(f"  promotion gate: {gate.reason}")
        return lines
    if asset == "failure_analysis":
        a = store.analysis(campaign, iteration)
        rehearse = (
            f"; rehearses {len(a.rehearsal_services)} learned services ({a.rehearsal_count} pairs each)"
            if a.rehearsal_services
            else ""
        )
        return [f"  failure_analysis: targets {', '.join(a.datagen_services)}{rehearse}"]
    if asset == "generated_examples" and (g := store.generation(campaign, iteration)) and g.asked:
        asked, delivered = sum(g.asked.values()), sum(g.delivered.values())
        lines = [
            f"  generated_examples: {delivered} clean pairs of {asked} asked "
            f"({sum(g.produced.values())} made in {g.rounds} round(s))"
        ]
        lines += [f"    {s} skipped: {why}" for s, why in g.skipped_services.items()]
        lines += [f"    {s} short: {why}" for s, why in g.short.items()]
        return lines
    if asset == "training_dataset":
        q = store.quality(campaign, iteration)
        dropped = ", ".join(f"{k} {v}" for k, v in q.dropped_by_reason.items() if v) or "none"
        rows, added = q.rows, q.added
        if rows is None or added is None:  # written before the quality record counted rows: count them
            rows = len(store.dataset(campaign, iteration))
            added = rows - len(store.dataset(campaign, iteration - 1))
        return [f"  training_dataset: +{added} rows, {rows} in all; dropped: {dropped}"]
    if asset == "checkpoint":
        m = store.manifest(campaign, iteration)
        return [f"  checkpoint: {m.steps} steps, final loss {m.final_loss:.3f}, {m.train_seconds:.0f} s"]
    if asset == "deployment":
        d = store.deployment(campaign, iteration)
        return [f"  deployment: {d.served_model} live at {d.endpoint} ({d.mode}, {d.deploy_seconds:.1f} s)"]
    if asset == "campaign_outcome" and (o := store.outcome(campaign)):
        return [f"  campaign_outcome: {o.status}"]
    return []
