"""The eval report (names kept from the plan: run_id, pass_rate, results_by_service, failures,
improvement_delta) and its per-service table."""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel


class ServiceResult(BaseModel):
    passed: int
    total: int

    @property
    def pass_rate(self) -> float:
        return round(100.0 * self.passed / self.total, 2) if self.total else 0.0


class Answer(BaseModel):
    id: str
    service: str
    question: str
    reference: str
    answer: str
    passed: bool
    reason: str


class EvalReport(BaseModel):
    run_id: str
    suite: str
    model: str
    endpoint: str
    judge: str
    pass_rate: float  # percent, 0-100, like target_pass_rate
    results_by_service: dict[str, ServiceResult]
    failures: list[Answer]
    answers: list[Answer]
    improvement_delta: float | None = None  # pass_rate minus the previous iteration's
    service_deltas: dict[str, float] = {}
    seconds: float = 0.0

    def table(self) -> pd.DataFrame:
        rows = [
            {"service": s, "passed": r.passed, "total": r.total, "pass_rate": r.pass_rate,
             "delta": self.service_deltas.get(s)}
            for s, r in sorted(self.results_by_service.items())
        ]  # fmt: skip
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
            update={"improvement_delta": round(self.pass_rate - previous.pass_rate, 2), "service_deltas": deltas}
        )


def summarise(answers: list[Answer]) -> tuple[float, dict[str, ServiceResult]]:
    by_service: dict[str, ServiceResult] = {}
    for a in answers:
        r = by_service.setdefault(a.service, ServiceResult(passed=0, total=0))
        r.total += 1
        r.passed += int(a.passed)
    total = len(answers)
    rate = round(100.0 * sum(a.passed for a in answers) / total, 2) if total else 0.0
    return rate, by_service
