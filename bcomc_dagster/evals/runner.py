"""Run a suite against a live OpenAI-compatible endpoint, with bounded concurrency, and judge it."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from bcomc_dagster.errors import BcomcError, ServingError
from bcomc_dagster.evals.judge import Judge
from bcomc_dagster.evals.report import Answer, EvalReport
from bcomc_dagster.evals.suite import Question, Suite
from bcomc_dagster.serving.endpoint import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, NO_KEY, Endpoint


class EvalIncomplete(BcomcError):
    """Too many answers went ungraded: a partial report is not passed off as whole."""


def run_suite(
    suite: Suite,
    endpoint: str,
    model: str,
    judge: Judge,
    concurrency: int = 8,
    max_tokens: int = 48,
    api_key: str = NO_KEY,
    on_progress: Callable[[int, int], None] | None = None,
    held_out: frozenset[str] = frozenset(),
    max_judge_error_rate: float = 0.05,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_retries: int = DEFAULT_RETRIES,
) -> EvalReport:
    """Ask every question (temperature 0) and grade every answer; any unanswered question fails the run,
    and so do judge errors (verdicts that never came) above ``max_judge_error_rate`` of the questions.
    Below it, each judge error is a failed question: it can only lower the pass rate."""
    client = Endpoint(endpoint, api_key, timeout_s, max_retries)
    started = time.monotonic()
    done = 0

    def ask(q: Question) -> Answer:
        nonlocal done
        try:
            text = client.chat(model, q.question, max_tokens)
        except ServingError as e:
            raise ServingError(f"{endpoint} model {model!r}: question {q.id} got no answer: {e}") from e
        verdict = judge.grade(q, text)
        done += 1
        if on_progress:
            on_progress(done, len(suite.questions))
        return Answer(
            id=q.id,
            service=q.service,
            question=q.question,
            reference=q.reference,
            answer=text,
            passed=verdict.passed,
            reason=verdict.reason,
            held_out=q.id in held_out,
            judge_error=verdict.error,
            grade=verdict.grade,
        )

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        answers = list(pool.map(ask, suite.questions))
    errors = [a for a in answers if a.judge_error]
    if len(errors) > max_judge_error_rate * len(answers):
        raise EvalIncomplete(
            f"judge {judge.name}: no verdict for {len(errors)} of {len(answers)} answers (allowed: "
            f"{max_judge_error_rate:.0%}); first: {errors[0].id}: {errors[0].reason}"
        )
    return EvalReport.build(
        answers,
        run_id=uuid.uuid4().hex[:12],
        suite=suite.name,
        model=model,
        endpoint=endpoint,
        judge=judge.name,
        seconds=round(time.monotonic() - started, 2),
    )
