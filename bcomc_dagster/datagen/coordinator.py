"""The generation coordinator: fans out one worker call per pair, each given one documentation snippet.

Calls run with bounded concurrency. A service whose calls keep failing is retried up to ``max_retries``
times, then skipped whole and reported: a partial service is never passed off as complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from bcomc_dagster.datagen.schema import Provenance, QAPair
from bcomc_dagster.datagen.snippets import Snippet, extract_snippets
from bcomc_dagster.evals.suite import Suite
from bcomc_dagster.llm.base import PermanentLLMError
from bcomc_dagster.llm.cost import BudgetExceeded

log = logging.getLogger(__name__)


class Worker(Protocol):
    name: str

    def generate(self, snippet: Snippet, variant: int, prompt_config: dict | None = None) -> tuple[str, str]: ...


@dataclass(frozen=True)
class PairRequest:
    service: str
    snippet: Snippet
    variant: int


class GenerationResult(BaseModel):
    pairs: list[QAPair]
    requested: dict[str, int]
    produced: dict[str, int]
    skipped_services: dict[str, str]  # service -> why
    attempts: dict[str, int]
    synthesis: dict | None = None  # the synthesis pass: batches, rewritten, failed_batches


def plan_requests(suite: Suite, service: str, count: int, already: int) -> list[PairRequest]:
    """``count`` requests cycling over the service's snippets; ``already`` (pairs of this service in
    earlier iterations) moves the phrasing variant on, so that each iteration asks for new wordings."""
    snippets = extract_snippets(service, suite.docs[service])
    if not snippets:
        return []
    out = []
    for k in range(count):
        g = already + k
        out.append(PairRequest(service, snippets[g % len(snippets)], g // len(snippets)))
    return out


def generate(
    suite: Suite,
    services: list[str],
    count_per_service: int,
    worker: Worker,
    campaign: str,
    iteration: int,
    already: dict[str, int] | None = None,
    max_retries: int = 2,
    concurrency: int = 8,
    prompt_config: dict | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> GenerationResult:
    already = already or {}
    requested, produced, skipped, attempts = {}, {}, {}, {}
    pairs: list[QAPair] = []
    pending = {s: plan_requests(suite, s, count_per_service, already.get(s, 0)) for s in services}
    for s, reqs in pending.items():
        requested[s] = len(reqs)
        if not reqs:
            skipped[s] = f"docs/{s}.md has no reference lines ('- Attribute: value') to ground pairs in"
    pending = {s: r for s, r in pending.items() if r}
    total = sum(len(r) for r in pending.values())
    finished = 0
    results: dict[str, dict[int, QAPair]] = {s: {} for s in pending}
    errors: dict[str, str] = {}

    def call(item: tuple[str, int, PairRequest, int]) -> tuple[str, int, QAPair | None, str | None]:
        service, idx, req, attempt = item
        try:
            question, answer = worker.generate(req.snippet, req.variant, prompt_config)
            prov = Provenance(
                campaign=campaign, iteration=iteration, model=worker.name, attempt=attempt, snippet=req.snippet.text
            )
            return service, idx, QAPair(service=service, question=question, answer=answer, provenance=prov), None
        except (PermanentLLMError, BudgetExceeded):
            raise  # will not heal by retrying: fail the stage at once
        except Exception as e:  # noqa: BLE001 - a worker's failure is recorded per service, not swallowed
            return service, idx, None, f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for attempt in range(1, max_retries + 2):
            todo = [
                (s, i, r, attempt)
                for s, reqs in pending.items()
                if s not in skipped
                for i, r in enumerate(reqs)
                if i not in results[s]
            ]
            if not todo:
                break
            for s in {t[0] for t in todo}:
                attempts[s] = attempt
            for service, idx, pair, err in pool.map(call, todo):
                if pair is not None:
                    results[service][idx] = pair
                    finished += 1
                    if on_progress:
                        on_progress(finished, total)
                else:
                    errors[service] = err or "unknown error"
            for s in pending:
                if len(results[s]) < len(pending[s]) and attempt == max_retries + 1:
                    skipped[s] = f"failed after {attempt} attempts: {errors.get(s)}"
                    log.warning("skipping service %s: %s", s, skipped[s])
    for s in pending:
        if s in skipped:
            continue
        got = [results[s][i] for i in sorted(results[s])]
        pairs.extend(got)
        produced[s] = len(got)
    return GenerationResult(
        pairs=pairs, requested=requested, produced=produced, skipped_services=skipped, attempts=attempts
    )
