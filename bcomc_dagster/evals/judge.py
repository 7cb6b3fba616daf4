"""Judges grade one answer against one question. The embedded judge is reference-based."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

from bcomc_dagster.evals.suite import Question


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    error: bool = False  # the judge could not grade: counted apart, neither a pass nor a fail


class Judge(Protocol):
    name: str

    def grade(self, question: Question, answer: str) -> Verdict: ...


def normalise(text: str) -> str:
    """Lower case, accents folded, punctuation to spaces (keeping the inner marks of 02:30, a.b, x-y)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    text = re.sub(r"(?<![\w])[^\w\s]+|[^\w\s]+(?![\w])", " ", text)
    return " ".join(text.split())


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
