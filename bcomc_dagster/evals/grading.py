"""Grade answers produced anywhere (``bcomc grade``): a JSONL file of ``{"id", "answer"}`` against a suite."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bcomc_dagster.errors import InputError, field_errors
from bcomc_dagster.evals.judge import Judge
from bcomc_dagster.evals.report import pass_rate
from bcomc_dagster.evals.suite import Question, Suite


class GivenAnswer(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)  # other keys (model, latency) are kept apart

    id: str = Field(min_length=1)
    answer: str


class Graded(BaseModel):
    id: str
    passed: bool
    grade: str
    reason: str


class Grading(BaseModel):
    suite: str
    judge: str
    results: list[Graded]
    pass_rate: float  # percent of the answers given
    grades: dict[str, int]
    questions: int  # in the suite; the answers may cover only some

    def summary(self) -> str:
        counts = ", ".join(f"{g} {n}" for g, n in sorted(self.grades.items()))
        passed = sum(r.passed for r in self.results)
        return (
            f"pass rate {self.pass_rate:.1f}% ({passed} of {len(self.results)} answers; the suite has "
            f"{self.questions} questions); {counts}; judge {self.judge}"
        )


def read_answers(path: Path, suite: Suite) -> list[tuple[Question, str]]:
    """The answers of ``path`` with their questions; a malformed line, an unknown or a repeated id is an
    InputError naming the file and line."""
    if not path.is_file():
        raise InputError(f"{path}: {'not a regular file' if path.exists() else 'no such answers file'}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    by_id = {q.id: q for q in suite.questions}
    out: list[tuple[Question, str]] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            given = GivenAnswer.model_validate(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as e:
            raise InputError(
                f'{where}: not a JSON object ({e}); expected {{"id": ..., "answer": ...}}'
            ) from None
        except ValidationError as e:
            raise InputError(f"{where}: {'; '.join(field_errors(e, 'line'))}") from None
        if given.id not in by_id:
            raise InputError(f"{where}: id {given.id!r} is not a question of suite {suite.name!r}")
        if given.id in seen:
            raise InputError(f"{where}: id {given.id!r} is answered twice (first at line {seen[given.id]})")
        seen[given.id] = lineno
        out.append((by_id[given.id], given.answer))
    if not out:
        raise InputError(f"{path}: no answers")
    return out


def grade_answers(judge: Judge, suite: Suite, answers: list[tuple[Question, str]]) -> Grading:
    results = []
    for q, text in answers:
        v = judge.grade(q, text)
        results.append(Graded(id=q.id, passed=v.passed, grade=v.grade, reason=v.reason))
    return Grading(
        suite=suite.name,
        judge=judge.name,
        results=results,
        pass_rate=pass_rate(sum(r.passed for r in results), len(results)),
        grades=dict(Counter(r.grade for r in results)),
        questions=len(suite.questions),
    )
