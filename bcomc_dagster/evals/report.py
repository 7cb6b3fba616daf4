"""The eval report (names kept from the plan: run_id, pass_rate, results_by_service, failures,
improvement_delta) and its per-service table."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pandas as pd
from pydantic import BaseModel

from bcomc_dagster.evals.judge import Grade


def pass_rate(passed: int, graded: int) -> float:
    """Percent of the graded answers that passed, to 2 decimals (0 when none was graded)."""
    return round(100.0 * passed / graded, 2) if graded else 0.0


class ServiceResult(BaseModel):
    passed: int
    total: int
    errors: int = 0  # answers the judge could not grade: failed questions, counted here too

    @property
    def pass_rate(self) -> float:
        return pass_rate(self.passed, self.total)


class Answer(BaseModel):
    id: str
    service: str
    question: str
    reference: str
    answer: str
    passed: bool
    reason: str
    held_out: bool = False  # measured only: never shown to the analyzer, and drives no decision
    judge_error: bool = False  # the judge gave no valid verdict: a failed question
    grade: Grade | None = None  # correct / incorrect / not_attempted / error (None: an older report)


class EvalReport(BaseModel):
    run_id: str
    suite: str
    model: str
    endpoint: str
    judge: str
    pass_rate: float  # percent, 0-100, over every question of the suite (an ungraded one fails)
    results_by_service: dict[str, ServiceResult]
    failures: list[Answer]
    answers: list[Answer]
    improvement_delta: float | None = None  # decided part, minus the live model's (``compared_with``)
    compared_with: int | None = None  # the iteration whose report the deltas are taken against
    service_deltas: dict[str, float] = {}
    seconds: float = 0.0
    pass_rate_analyzed: float | None = None  # with a held-out split: the part that decides ...
    pass_rate_held_out: float | None = None  # ... and the part that is only measured (unbiased)
    judge_errors: int = 0
    grades: dict[str, int] = {}  # answers by grade

    @property
    def decided_pass_rate(self) -> float:
        """The figure the loop decides on (target, gate, stop, best): the analyzed part, or the whole
        suite when nothing is held out."""
        return self.pass_rate if self.pass_rate_analyzed is None else self.pass_rate_analyzed

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
            grades=dict(Counter(a.grade or ("correct" if a.passed else "incorrect") for a in answers)),
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
                "grades": dict(Counter(a.grade or ("correct" if a.passed else "incorrect") for a in seen)),
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

    def against(self, live: EvalReport | None, live_iteration: int | None = None) -> EvalReport:
        """Fill the deltas against the live model's report (decided part overall, every service)."""
        if live is None:
            return self
        deltas = {
            s: round(r.pass_rate - live.results_by_service[s].pass_rate, 2)
            for s, r in self.results_by_service.items()
            if s in live.results_by_service
        }
        return self.model_copy(
            update={
                "improvement_delta": round(self.decided_pass_rate - live.decided_pass_rate, 2),
                "compared_with": live_iteration,
                "service_deltas": deltas,
            }
        )


def failed(answers: list[Answer]) -> list[Answer]:
    return [a for a in answers if not a.passed]


def summarise(answers: list[Answer]) -> tuple[float, dict[str, ServiceResult]]:
    """The pass rate over every answer (a judge error is a failed question) and the per-service results."""
    by_service: dict[str, ServiceResult] = {}
    for a in answers:
        r = by_service.setdefault(a.service, ServiceResult(passed=0, total=0))
        r.total += 1
        r.passed += int(a.passed)
        r.errors += int(a.judge_error)
    return pass_rate(sum(a.passed for a in answers), len(answers)), by_service


class Sample(BaseModel):
    """One question as a reader checks a grade: the base's answer and the candidate's, each graded."""

    service: str
    id: str
    question: str
    reference: str
    held_out: bool
    base_answer: str
    base_grade: str
    base_reason: str
    answer: str
    grade: str
    reason: str


def _grade(a: Answer) -> str:
    return a.grade or ("correct" if a.passed else "incorrect")


def samples(base: EvalReport, current: EvalReport, per_service: int = 3) -> list[Sample]:
    """A few questions per service, those whose grade changed first, then the current model's failures,
    then the rest: enough for a person to spot a lenient or a harsh grade without opening JSON."""
    before = {a.id: a for a in base.answers}
    out = []
    by_service: dict[str, list[Answer]] = {}
    for a in current.answers:
        if a.id in before:
            by_service.setdefault(a.service, []).append(a)
    for service in sorted(by_service):
        ranked = sorted(
            by_service[service],
            key=lambda a: (before[a.id].passed == a.passed, a.passed, a.id),
        )
        for a in ranked[:per_service]:
            b = before[a.id]
            out.append(
                Sample(
                    service=service,
                    id=a.id,
                    question=a.question,
                    reference=a.reference,
                    held_out=a.held_out,
                    base_answer=b.answer,
                    base_grade=_grade(b),
                    base_reason=b.reason,
                    answer=a.answer,
                    grade=_grade(a),
                    reason=a.reason,
                )
            )
    return out


def samples_markdown(rows: list[Sample], clip_at: int = 120) -> str:
    """The samples as a Markdown table (cells on one line, pipes escaped)."""

    def cell(text: str) -> str:
        text = " ".join(text.split()).replace("|", "\\|")
        return text if len(text) <= clip_at else text[: clip_at - 1] + "…"

    lines = [
        "| service | question | reference | base answer | base grade | answer | grade | judge's reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in rows:
        held = " (held out)" if s.held_out else ""
        lines.append(
            f"| {cell(s.service)} | {cell(s.question)}{held} | {cell(s.reference)} | {cell(s.base_answer)} | "
            f"{s.base_grade} | {cell(s.answer)} | {s.grade} | {cell(s.reason)} |"
        )
    return "\n".join(lines)
