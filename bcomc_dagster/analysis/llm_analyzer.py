"""The analyzer on a chat model: the failure report in, the plan's analysis JSON out.

The answer is forced through the provider's structured-output mechanism and validated against the suite
(known services, how many to target, how many pairs); an invalid answer is retried with the validation
error, then the deterministic analyzer takes over and the analysis says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from bcomc_dagster.analysis.analyzer import Analysis, analyze, trend
from bcomc_dagster.evals.report import EvalReport
from bcomc_dagster.llm.base import ChatRequest, Message, TransientLLMError
from bcomc_dagster.llm.client import LLMClient
from bcomc_dagster.llm.structured import ask_structured, schema_of
from bcomc_dagster.text import REASON, clip

ANSWER_CHARS = 200  # of each failed answer shown to the analyzer model


class AnalysisOut(BaseModel):
    summary: str = Field(description="Two or three sentences on where the model fails and why.")
    priority_services: dict[str, int] = Field(description="Service -> priority, 1 = most urgent.")
    datagen_services: list[str] = Field(
        description="The services to generate training pairs for, most urgent first."
    )
    datagen_count: int = Field(description="Training pairs to generate per chosen service.")
    suggested_actions: list[str] = Field(description="Concrete next steps.")
    trend_analysis: dict[str, str] = Field(
        description="Service -> improving / regressing / flat / first measurement."
    )


SCHEMA = schema_of(AnalysisOut, "failure_analysis", "Record the analysis of the evaluation failures.")
SYSTEM = (
    "You analyse the evaluation of a model that is being fine-tuned service by service. From the "
    "per-service pass "
    "rates, their trend over iterations and example failures, choose the weakest services to generate "
    "training data "
    "for next, most urgent first, and say why. Use only service names that appear in the report."
)


def failure_report(
    history: list[EvalReport], examples_per_service: int = 3, regressed: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """What the analyzer model sees: the last report per service, the trend, a few failures each, and the
    services the last checkpoint made worse than the live model."""
    last = history[-1]
    services = {}
    for s, r in sorted(last.results_by_service.items()):
        fails = [a for a in last.failures if a.service == s][:examples_per_service]
        services[s] = {
            "pass_rate": r.pass_rate,
            "passed": r.passed,
            "total": r.total,
            "trend": trend(history, s),
            "history": [h.results_by_service[s].pass_rate for h in history if s in h.results_by_service],
            "example_failures": [
                {"question": a.question, "expected": a.reference, "got": a.answer[:ANSWER_CHARS]}
                for a in fails
            ],
        }
    out = {"overall_pass_rate": last.pass_rate, "iterations_so_far": len(history) - 1, "services": services}
    return {**out, "regressed_services": sorted(regressed)} if regressed else out


def validator(
    services: set[str], failing: int, min_services: int, max_services: int, max_count: int
) -> Callable[[dict[str, Any]], Analysis]:
    low = min(min_services, failing)

    def parse(data: dict[str, Any]) -> Analysis:
        out = AnalysisOut.model_validate(data)
        unknown = [s for s in [*out.datagen_services, *out.priority_services] if s not in services]
        if unknown:
            raise ValueError(f"unknown services {unknown}; choose among {sorted(services)}")
        if len(set(out.datagen_services)) != len(out.datagen_services):
            raise ValueError("datagen_services lists a service twice")
        if not low <= len(out.datagen_services) <= max_services:
            raise ValueError(
                f"datagen_services has {len(out.datagen_services)} services; expected {low} to {max_services}"
            )
        if not 1 <= out.datagen_count <= max_count:
            raise ValueError(f"datagen_count {out.datagen_count}; expected 1 to {max_count}")
        return Analysis(**out.model_dump(), analyzer="")

    return parse


def llm_analyze(
    client: LLMClient,
    history: list[EvalReport],
    examples_per_service: int,
    min_services: int = 3,
    max_services: int = 5,
    retries: int = 2,
    regressed: list[str] | tuple[str, ...] = (),
) -> Analysis:
    last = history[-1]
    failing = sum(1 for r in last.results_by_service.values() if r.pass_rate < 100)
    user = (
        f"Evaluation report (JSON):\n{json.dumps(failure_report(history, regressed=regressed), indent=1)}\n\n"
        f"Choose {min(min_services, failing)} to {max_services} services and at most "
        f"{examples_per_service} pairs per service."
    )
    req = ChatRequest(
        system=SYSTEM, messages=[Message(role="user", content=user)], max_tokens=1500, schema=SCHEMA
    )
    parse = validator(set(last.results_by_service), failing, min_services, max_services, examples_per_service)
    try:
        analysis, attempts = ask_structured(client, req, parse, retries)
    except TransientLLMError as e:
        fallback = analyze(history, examples_per_service, min_services, max_services, regressed)
        return fallback.model_copy(
            update={"analyzer": "embedded (fallback)", "fallback_reason": clip(str(e), REASON)}
        )
    return analysis.model_copy(update={"analyzer": client.label, "attempts": attempts})
