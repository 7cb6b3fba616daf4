"""The eval report (names kept from the plan: run_id, pass_rate, results_by_service, failures,
improvement_delta) and its per-service table."""

from __future__ import annotations

from typing import Any

import pandas as pd
from pydantic import BaseModel


def pass_rate(passed: int, graded: int) -> float:
    """Percent of the graded answers that passed, to 2 decimals (0 when none was graded)."""
    return round(100.0 * passed / graded, 2) if graded else 0.0


class ServiceResult(BaseModel):
    passed: int
    total: int
    errors: int = 0  # answers the judge could not grade: in neither passed nor the denominator

    @property
    def pass_rate(self) -> float:
        return pass_rate(self.passed, self.total - self.errors)


class Answer(BaseModel):
    id: str
    service: str
    question: str
    reference: str
    answer: str
    passed: bool
    reason: str
    held_out: bool = False  # measured only: never shown to the analyzer
    judge_error: bool = False  # the judge gave no valid verdict


class EvalReport(BaseModel):
    run_id: str
    suite: str
    model: str
    endpoint: str
    judge: str
    pass_rate: float  # percent, 0-100, like target_pass_rate; over the answers the judge graded
    results_by_service: dict[str, ServiceResult]
    failures: list[Answer]
    answers: list[Answer]
    improvement_delta: float | None = None  # pass_rate minus the previous iteration's
    service_deltas: dict[str, float] = {}
    seconds: float = 0.0
    pass_rate_analyzed: float | None = None  # with a held-out split: the part the analyzer sees
    pass_rate_held_out: float | None = None  # ... and the part it never sees
    judge_errors: int = 0

    @classmethod
    def build(cls, answers: list[Answer], **fields: Any) -> EvalReport:
        rate, by_service = summarise(answers)
        held = [a for a in answers if a.held_out]
        split = {}
        if held:
            split = {
                "pass_rate_analyzed": summarise([a for a in answers if not a.held_out])[0],
                "pass_rate_held_out": summarise(held)[0],
            }
        return cls(
            pass_rate=rate,
            results_by_service=by_service,
            failures=failed(answers),
            answers=answers,
            judge_errors=sum(a.judge_error for a in answers),
            **split,
            **fields,
        )

    def analyzed(self) -> EvalReport:
        """The report restricted to the questions the analyzer may see (all of them without a split)."""
        if self.pass_rate_held_out is None:
            return self
        seen = [a for a in self.answers if not a.held_out]
        rate, by_service = summarise(seen)
        return self.model_copy(
            update={
                "pass_rate": rate,
                "results_by_service": by_service,
                "answers": seen,
                "failures": failed(seen),
                "pass_rate_held_out": None,
            }
        )

    def table(self) -> pd.DataFrame:
        rows = [
            {
                "service": s,
                "passed": r.passed,
                "total": r.total,
                "pass_rate": r.pass_rate,
                "delta": self.service_deltas.get(s),
            }
            for s, r in sorted(self.results_by_service.items())
        ]
        return pd.DataFrame(rows, columns=["service", "passed", "total", "pass_rate", "delta"])

    def with_previous(self, previous: EvalReport | None) -> EvalReport:
        """Fill the deltas against the previous iteration's report."""
        if previous is None:
            return self
        deltas = {
            s: round(r.pass_rate - previous.results_by_service[s].pass_rate, 2)
            for s, r in self.results_by_service.items()
            if s in previous.results_by_service
        }
        return self.model_copy(
            update={
                "improvement_delta": round(self.pass_rate - previous.pass_rate, 2),
                "service_deltas": deltas,
            }
        )


def failed(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if not a.passed and not a.judge_error]


def summarise(answers: list[Answer]) -> tuple[float, dict[str, ServiceResult]]:
    """The pass rate over graded answers (judge errors left out) and the per-service results."""
    by_service: dict[str, ServiceResult] = {}
    for a in answers:
        r = by_service.setdefault(a.service, ServiceResult(passed=0, total=0))
        r.total += 1
        r.passed += int(a.passed)
        r.errors += int(a.judge_error)
    graded = sum(not a.judge_error for a in answers)
    return pass_rate(sum(a.passed for a in answers), graded), by_service
