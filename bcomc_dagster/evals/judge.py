"""Judges grade one answer against one question. The embedded judge is reference-based."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bcomc_dagster.evals.suite import Question
from bcomc_dagster.text import normalise


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    error: bool = False  # the judge could not grade: counted apart, neither a pass nor a fail


class Judge(Protocol):
    name: str

    def grade(self, question: Question, answer: str) -> Verdict: ...


class ReferenceJudge:
    """Passes an answer that equals, or contains as whole words, the reference or one of its aliases."""

    name = "reference"

    def grade(self, question: Question, answer: str) -> Verdict:
        said = f" {normalise(answer)} "
        for expected in (question.reference, *question.aliases):
            want = normalise(expected)
            if want and f" {want} " in said:
                return Verdict(True, f"contains {expected!r}")
        return Verdict(False, f"expected {question.reference!r}")
