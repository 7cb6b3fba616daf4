"""The generation coordinator: fans out one worker call per pair, each given one passage of the docs and,
where the passage states facts, the fact to ask about.

Calls run with bounded concurrency. A service whose calls keep failing is retried up to ``max_retries``
times, then skipped whole and reported: a partial service is never passed off as complete.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from bcomc_dagster.datagen.facts import Fact, extract_facts
from bcomc_dagster.datagen.passages import DEFAULT_BUDGET, Passage, kind_of, split
from bcomc_dagster.datagen.schema import Provenance, QAPair
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import Suite
from bcomc_dagster.llm.base import PermanentLLMError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grounding:
    """What one call is given: a passage, and the fact to ask about (None: the passage states no fact the
    extractive reader finds; an LLM worker then picks its own angle)."""

    passage: Passage
    fact: Fact | None


@dataclass(frozen=True)
class PairRequest:
    service: str
    grounding: Grounding
    variant: int  # the n-th call on this grounding: another style of question


class Worker(Protocol):
    name: str
    needs_facts: bool  # True: only passages that state facts are of use to it

    def generate(
        self, request: PairRequest, prompt_config: dict[str, str] | None = None
    ) -> tuple[str, str]: ...


def passages(suite: Suite, service: str, budget: int = DEFAULT_BUDGET) -> list[Passage]:
    file = suite.doc_file(service)
    return split(service, suite.docs[service], kind_of(file), file, budget)


def groundings(
    suite: Suite, service: str, needs_facts: bool, budget: int = DEFAULT_BUDGET
) -> list[Grounding]:
    """Every fact of the service's docs, in order; with ``needs_facts`` false, passages without facts too."""
    out = []
    for p in passages(suite, service, budget):
        facts = extract_facts(p)
        out += [Grounding(p, f) for f in facts] or ([] if needs_facts else [Grounding(p, None)])
    return out


NO_FACTS = (
    "the embedded generator finds no facts in it: state them as reference lines ('- Attribute: value'), "
    "table rows, or sentences such as 'The <attribute> of <Service> is <value>.', or use an LLM generator "
    "(datagen.generator_backend)"
)


def check_docs(suite: Suite, needs_facts: bool, budget: int = DEFAULT_BUDGET) -> None:
    """Every service's doc gives the generator something to ground pairs in; InputError names the files."""
    bad = [
        suite.path / suite.doc_file(s)
        for s in suite.services
        if not groundings(suite, s, needs_facts, budget)
    ]
    if bad:
        raise InputError(f"{', '.join(map(str, bad))}: {NO_FACTS if needs_facts else 'no passage of text'}")


class GenerationResult(BaseModel):
    pairs: list[QAPair]
    requested: dict[str, int]
    produced: dict[str, int]
    skipped_services: dict[str, str]  # service -> why
    attempts: dict[str, int]
    synthesis: dict[str, Any] | None = None  # the synthesis pass: batches, rewritten, failed_batches


def plan_requests(
    suite: Suite,
    service: str,
    count: int,
    already: int,
    needs_facts: bool = True,
    budget: int = DEFAULT_BUDGET,
) -> list[PairRequest]:
    """``count`` requests cycling over the service's groundings; ``already`` (pairs of this service in
    earlier iterations) moves the variant on, so that each iteration asks for new wordings."""
    units = groundings(suite, service, needs_facts, budget)
    if not units:
        return []
    return [
        PairRequest(service, units[g % len(units)], g // len(units)) for g in range(already, already + count)
    ]


def generate(
    suite: Suite,
    services: list[str],
    count_per_service: int | dict[str, int],
    worker: Worker,
    campaign: str,
    iteration: int,
    already: dict[str, int] | None = None,
    max_retries: int = 2,
    concurrency: int = 8,
    prompt_config: dict[str, str] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    budget: int = DEFAULT_BUDGET,
) -> GenerationResult:
    already = already or {}
    requested, produced, skipped, attempts = {}, {}, {}, {}
    pairs: list[QAPair] = []
    count = (
        count_per_service
        if isinstance(count_per_service, dict)
        else dict.fromkeys(services, count_per_service)
    )
    pending = {
        s: plan_requests(suite, s, count[s], already.get(s, 0), worker.needs_facts, budget) for s in services
    }
    for s, reqs in pending.items():
        requested[s] = len(reqs)
        if not reqs:
            skipped[s] = f"{suite.doc_file(s)}: {NO_FACTS if worker.needs_facts else 'no passage of text'}"
    pending = {s: r for s, r in pending.items() if r}
    total = sum(len(r) for r in pending.values())
    finished = 0
    results: dict[str, dict[int, QAPair]] = {s: {} for s in pending}
    errors: dict[str, str] = {}

    def call(item: tuple[str, int, PairRequest, int]) -> tuple[str, int, QAPair | None, str | None]:
        service, idx, req, attempt = item
        try:
            question, answer = worker.generate(req, prompt_config)
            g = req.grounding
            prov = Provenance(
                campaign=campaign,
                iteration=iteration,
                model=worker.name,
                attempt=attempt,
                snippet=g.passage.render(),
                passage=g.passage.id,
                fact=g.fact.text if g.fact else None,
            )
            return (
                service,
                idx,
                QAPair(service=service, question=question, answer=answer, provenance=prov),
                None,
            )
        except PermanentLLMError:
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
