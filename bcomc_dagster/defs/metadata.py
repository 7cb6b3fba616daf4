"""Asset metadata built from the stages' results."""

import dagster as dg

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
    }
