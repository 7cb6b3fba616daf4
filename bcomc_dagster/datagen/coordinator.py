"""The generation coordinator: fans out one worker call per pair, each given one passage of the docs and,
where the passage states facts, the fact to ask about.

Calls run with bounded concurrency. A service whose calls keep failing is retried up to ``max_retries``
times, then skipped whole and reported: a partial service is never passed off as complete. Given the
dataset's filters as a screen, a service whose clean pairs fall short is asked again in new variants.

Over 300 lines: the plan, the fan-out and the top-up rounds share one set of per-service counts (asked,
requested, made, delivered, dropped), which is what the stage reports.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

from bcomc_dagster.datagen.facts import DEFAULT_FORMS, Fact, extract_facts
from bcomc_dagster.datagen.passages import DEFAULT_BUDGET, Passage, kind_of, split
from bcomc_dagster.datagen.presets import DEFAULT, Prompting
from bcomc_dagster.datagen.quality import FilterResult
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
    variant: int  # the n-th call on this fact (or passage): another style of question
    peers: tuple[Fact, ...] = ()  # the service's facts: what a question must tell its fact apart from


class Worker(Protocol):
    name: str
    needs_facts: bool  # True: only passages that state facts are of use to it

    def generate(self, request: PairRequest, prompt_config: Prompting | None = None) -> tuple[str, str]: ...


def passages(suite: Suite, service: str, budget: int = DEFAULT_BUDGET) -> list[Passage]:
    file = suite.doc_file(service)
    return split(service, suite.docs[service], kind_of(file), file, budget)


def groundings(
    suite: Suite,
    service: str,
    needs_facts: bool,
    budget: int = DEFAULT_BUDGET,
    forms: tuple[str, ...] = DEFAULT_FORMS,
) -> list[Grounding]:
    """Every fact of the service's docs (in the given forms), in order; with ``needs_facts`` false,
    passages without facts too."""
    out = []
    for p in passages(suite, service, budget):
        facts = extract_facts(p, forms)
        out += [Grounding(p, f) for f in facts] or ([] if needs_facts else [Grounding(p, None)])
    return out


NO_FACTS = (
    "the embedded generator finds no facts in it: state them as reference lines ('- Attribute: value'), "
    "table rows, or sentences such as 'The <attribute> of <Service> is <value>.', or use an LLM generator "
    "(datagen.generator_backend)"
)


def check_docs(
    suite: Suite, needs_facts: bool, budget: int = DEFAULT_BUDGET, forms: tuple[str, ...] = DEFAULT_FORMS
) -> None:
    """Every service's doc gives the generator something to ground pairs in; InputError names the files."""
    bad = [
        suite.path / suite.doc_file(s)
        for s in suite.services
        if not groundings(suite, s, needs_facts, budget, forms)
    ]
    if bad:
        raise InputError(f"{', '.join(map(str, bad))}: {NO_FACTS if needs_facts else 'no passage of text'}")


class GenerationResult(BaseModel):
    pairs: list[QAPair]
    requested: dict[str, int]  # worker calls planned per service, top-up rounds included
    produced: dict[str, int]  # pairs the worker returned, per service (a skipped service: none)
    skipped_services: dict[str, str]  # service -> why
    attempts: dict[str, int]
    asked: dict[str, int] = {}  # what the plan asked for, per service
    delivered: dict[str, int] = {}  # pairs that pass the quality filters, per service
    dropped: dict[str, dict[str, int]] = {}  # per service, by reason: what the filters will drop
    rounds: int = 1  # generation rounds: the first, then top-ups for services short of their count
    short: dict[str, str] = {}  # service -> why it got less than half of what was asked
    synthesis: dict[str, Any] | None = None  # the synthesis pass: batches, rewritten, failed_batches


def _fact_key(g: Grounding) -> tuple[str, ...]:
    """One fact stated twice (a sentence and a settings line, perhaps naming it in other words) is one
    unit, asked once per variant: keyed by its value, which is what every answer about it states."""
    return ("fact", g.fact.value.lower()) if g.fact else ("passage", g.passage.id)


def plan_requests(
    suite: Suite,
    service: str,
    count: int,
    already: int,
    needs_facts: bool = True,
    budget: int = DEFAULT_BUDGET,
    forms: tuple[str, ...] = DEFAULT_FORMS,
) -> list[PairRequest]:
    """``count`` requests cycling over the service's distinct facts (or passages); ``already`` (requests
    made for this service before) moves the variant on, so that each round asks in new wordings. A fact
    stated in several passages is grounded in each in turn."""
    units: dict[tuple[str, ...], list[Grounding]] = {}
    for g in groundings(suite, service, needs_facts, budget, forms):
        units.setdefault(_fact_key(g), []).append(g)
    if not units:
        return []
    order = list(units.values())
    peers = tuple(g.fact for gs in order for g in gs if g.fact is not None)
    out = []
    for n in range(already, already + count):
        unit, variant = order[n % len(order)], n // len(order)
        out.append(PairRequest(service, unit[variant % len(unit)], variant, peers))
    return out


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
    prompt_config: Prompting | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    budget: int = DEFAULT_BUDGET,
    screen: Callable[[list[QAPair]], FilterResult] | None = None,
    top_up_rounds: int = 0,
) -> GenerationResult:
    """``count`` pairs per service. With ``screen`` (the quality filters the dataset will apply), a
    service whose clean pairs fall short is asked again, in new variants, up to ``top_up_rounds`` times."""
    made = dict(already or {})
    forms = (prompt_config or DEFAULT).fact_forms
    asked = (
        count_per_service
        if isinstance(count_per_service, dict)
        else dict.fromkeys(services, count_per_service)
    )
    asked = {s: asked[s] for s in services}
    requested: dict[str, int] = dict.fromkeys(services, 0)
    skipped: dict[str, str] = {}
    attempts: dict[str, int] = {}
    got: dict[str, list[QAPair]] = {s: [] for s in services}
    want = dict(asked)
    delivered: dict[str, int] = {}
    dropped: dict[str, dict[str, int]] = {}
    topped_up_failed: dict[str, str] = {}
    rounds = 0
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for rounds in range(1, top_up_rounds + 2):
            plan = {
                s: plan_requests(suite, s, n, made.get(s, 0), worker.needs_facts, budget, forms)
                for s, n in want.items()
                if n > 0 and s not in skipped
            }
            for s, reqs in plan.items():
                if not reqs and rounds == 1:
                    why = NO_FACTS if worker.needs_facts else "no passage of text"
                    skipped[s] = f"{suite.doc_file(s)}: {why}"
                requested[s] += len(reqs)
                made[s] = made.get(s, 0) + len(reqs)
            plan = {s: r for s, r in plan.items() if r}
            if not plan:
                break
            out = _fan_out(
                pool, plan, worker, campaign, iteration, max_retries, prompt_config, on_progress, attempts
            )
            for s, (pairs, failure) in out.items():
                if failure and rounds == 1:
                    skipped[s] = failure
                    log.warning("skipping service %s: %s", s, failure)
                elif failure:  # a top-up failed: the complete first round stands, short of its count
                    topped_up_failed[s] = failure
                else:
                    got[s] += pairs
            if screen is None:
                break
            result = screen([p for s in services if s not in skipped for p in got[s]])
            before, delivered = delivered, dict(Counter(p.service for p in result.kept))
            dropped = {}
            for d in result.dropped:
                dropped.setdefault(d.service, Counter())[d.reason] += 1
            want = {
                s: asked[s] - delivered.get(s, 0)
                for s in services
                if s not in skipped
                and s not in topped_up_failed
                # a top-up that delivered nothing new will not do better in the next round
                and (rounds == 1 or delivered.get(s, 0) > before.get(s, 0))
            }
            if all(n <= 0 for n in want.values()):
                break
    kept = [s for s in services if s not in skipped]
    produced = {s: len(got[s]) for s in kept}
    if screen is None:
        delivered = dict(produced)
    short = {
        s: f"{delivered.get(s, 0)} clean pairs of {asked[s]} asked after {rounds} round(s); "
        f"dropped: {dict(dropped.get(s, {})) or 'none'}"
        + (f"; a top-up failed: {topped_up_failed[s]}" if s in topped_up_failed else "")
        for s in kept
        if delivered.get(s, 0) * 2 < asked[s]
    }
    for s, why in short.items():
        log.warning("service %s got less than half of what was asked: %s", s, why)
    return GenerationResult(
        pairs=[p for s in kept for p in got[s]],
        requested={s: requested[s] for s in services},
        produced=produced,
        skipped_services=skipped,
        attempts=attempts,
        asked=asked,
        delivered={s: delivered.get(s, 0) for s in kept},
        dropped={s: dict(c) for s, c in dropped.items()},
        rounds=rounds,
        short=short,
    )


def _fan_out(
    pool: ThreadPoolExecutor,
    plan: dict[str, list[PairRequest]],
    worker: Worker,
    campaign: str,
    iteration: int,
    max_retries: int,
    prompt_config: Prompting | None,
    on_progress: Callable[[int, int], None] | None,
    attempts: dict[str, int],
) -> dict[str, tuple[list[QAPair], str | None]]:
    """One call per request, failed calls retried; per service its pairs in plan order, or why it failed
    (a service with any call still failing after ``max_retries`` is failed whole: never partial)."""
    total = sum(len(r) for r in plan.values())
    finished = 0
    results: dict[str, dict[int, QAPair]] = {s: {} for s in plan}
    errors: dict[str, str] = {}
    failed: dict[str, str] = {}

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

    for attempt in range(1, max_retries + 2):
        todo = [
            (s, i, r, attempt)
            for s, reqs in plan.items()
            if s not in failed
            for i, r in enumerate(reqs)
            if i not in results[s]
        ]
        if not todo:
            break
        for s in {t[0] for t in todo}:
            attempts[s] = max(attempts.get(s, 0), attempt)
        for service, idx, pair, err in pool.map(call, todo):
            if pair is not None:
                results[service][idx] = pair
                finished += 1
                if on_progress:
                    on_progress(finished, total)
            else:
                errors[service] = err or "unknown error"
        for s in plan:
            if len(results[s]) < len(plan[s]) and attempt == max_retries + 1:
                failed[s] = f"failed after {attempt} attempts: {errors.get(s)}"
    return {
        s: ([], failed[s]) if s in failed else ([results[s][i] for i in sorted(results[s])], None)
        for s in plan
    }
