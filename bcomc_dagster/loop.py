"""The rules of the closed loop: stop or advance (shared by the sensor, the CLI and the demo), whether a
new checkpoint replaces the live model, and the record of how a campaign ended."""

from __future__ import annotations

import math
from enum import Enum
from typing import Literal

from pydantic import BaseModel

from bcomc_dagster.evals.report import EvalReport


class Decision(str, Enum):
    ADVANCE = "advance"
    WAIT = "wait"  # auto_advance is off: the user advances by hand
    TARGET_REACHED = "target_reached"
    MAX_ITERATIONS_REACHED = "max_iterations_reached"
    BUDGET_EXHAUSTED = "budget_exhausted"  # the next iteration would exceed the campaign's budget

    @property
    def final(self) -> bool:
        return self in (Decision.TARGET_REACHED, Decision.MAX_ITERATIONS_REACHED, Decision.BUDGET_EXHAUSTED)


def decide(
    iteration: int,
    pass_rate: float,
    target: float,
    max_iterations: int,
    auto_advance: bool,
    over_budget: bool = False,
) -> Decision:
    """``iteration`` 0 is the baseline. Stop at the target, after ``max_iterations`` iterations, or before an
    iteration that would exceed the budget."""
    if pass_rate >= target:
        return Decision.TARGET_REACHED
    if iteration >= max_iterations:
        return Decision.MAX_ITERATIONS_REACHED
    if over_budget:
        return Decision.BUDGET_EXHAUSTED
    return Decision.ADVANCE if auto_advance else Decision.WAIT


class Promotion(BaseModel):
    """Whether an iteration's checkpoint replaced the live model, and why (``serving.promote``)."""

    iteration: int
    promoted: bool
    policy: Literal["always", "if_better"]
    live_iteration: int  # what was live before this checkpoint (0: the base)
    live_pass_rate: float  # the decided part of the suite (the whole suite when nothing is held out)
    pass_rate: float
    regressed: dict[str, tuple[float, float]] = {}  # service -> (live, candidate) pass rate, a regression
    paired: dict[str, tuple[int, int]] = {}  # service -> (questions lost, gained) vs the live model
    rule: str = ""  # the regression rule it was judged by
    reason: str
    restored: str | None = None  # what was made live again after a rejection


def paired_outcomes(live: EvalReport, candidate: EvalReport) -> dict[str, tuple[int, int]]:
    """Per service, the questions the candidate lost (passed live, fails now) and gained, of the questions
    both reports graded."""
    before = {a.id: a.passed for a in live.answers}
    out: dict[str, tuple[int, int]] = {}
    for a in candidate.answers:
        if a.id in before:
            lost, gained = out.get(a.service, (0, 0))
            out[a.service] = (
                lost + (before[a.id] and not a.passed),
                gained + (a.passed and not before[a.id]),
            )
    return out


def regression_p(lost: int, gained: int) -> float:
    """The exact one-sided McNemar test: the chance of losing at least ``lost`` of the ``lost + gained``
    changed questions if each change were a coin flip (the binomial tail, exact in integers)."""
    n = lost + gained
    return sum(math.comb(n, k) for k in range(lost, n + 1)) / 2**n if n else 1.0


def gate(
    iteration: int,
    candidate: EvalReport,
    live_iteration: int,
    live: EvalReport,
    policy: str,
    max_lost: int = 1,
    alpha: float = 0.05,
) -> Promotion:
    """``if_better``: the candidate must beat the live model on the decided part of the suite (the held-out
    part drives no decision) and show no regression on the same questions: no service loses more than
    ``max_lost`` questions net, and neither the suite nor a service loses more questions than it gains
    beyond chance (exact McNemar, one-sided, at ``alpha``). A single flipped question is never a
    regression. ``always``: every checkpoint is promoted (regressions are still recorded)."""
    candidate, live = candidate.analyzed(), live.analyzed()
    paired = paired_outcomes(live, candidate)
    regressed = {
        s: (live.results_by_service[s].pass_rate, candidate.results_by_service[s].pass_rate)
        for s, (lost, gained) in paired.items()
        if lost - gained > max_lost or (lost > gained and regression_p(lost, gained) < alpha)
    }
    lost_all, gained_all = (sum(x) for x in zip(*paired.values(), strict=True)) if paired else (0, 0)
    rule = f"net loss above {max_lost} question(s) per service, or a paired loss at p < {alpha:g}"
    better = candidate.pass_rate > live.pass_rate
    why = []
    if not better:
        why.append(
            f"pass rate {candidate.pass_rate:.1f}% does not beat the live model's {live.pass_rate:.1f}% "
            f"(iteration {live_iteration})"
        )
    if lost_all > gained_all and regression_p(lost_all, gained_all) < alpha:
        why.append(f"it lost {lost_all} questions and gained {gained_all} (p < {alpha:g})")
    if regressed:
        drops = ", ".join(
            f"{s} {a:.0f}% -> {b:.0f}% (lost {paired[s][0]}, gained {paired[s][1]})"
            for s, (a, b) in sorted(regressed.items())
        )
        why.append(f"services regressed ({rule}): {drops}")
    ok = policy == "always" or not why
    reason = ("promoted" if ok else "rejected") + (
        ": " + "; ".join(why) if why else f": {candidate.pass_rate:.1f}% beats {live.pass_rate:.1f}%"
    )
    return Promotion(
        iteration=iteration,
        promoted=ok,
        policy=policy,
        live_iteration=live_iteration,
        live_pass_rate=live.pass_rate,
        pass_rate=candidate.pass_rate,
        regressed=regressed,
        paired=paired,
        rule=rule,
        reason=reason,
    )


class Outcome(BaseModel):
    campaign: str
    status: str  # target_reached / max_iterations_reached / budget_exhausted / waiting
    iterations: int
    baseline_pass_rate: float
    # pass rates are of the decided part of the suite (what the target, the gate and best use); the
    # held-out part drives no decision, so its figures are the unbiased ones
    final_pass_rate: float  # the live model's: the last promoted checkpoint's (serving.promote)
    best_iteration: int
    best_pass_rate: float
    pass_rates: dict[int, float]  # every checkpoint's re-eval, promoted or not
    held_out_pass_rates: dict[int, float | None] = {}  # empty: nothing is held out (no unbiased figure)
    suite_pass_rates: dict[int, float] = {}  # the whole suite, held-out part included
    rejected: list[int] = []  # iterations whose checkpoint the promotion gate rejected
    final_model: str  # serving.final_model: last / best / base
    final_iteration: int  # the iteration final_model chose (0 = base); live unless the servers were stopped
    final_model_error: str | None = None
    live_model: str | None
    live_endpoint: str | None
    servers_stopped: bool
    cost_usd: float = 0.0  # every model call of the campaign (generator, synthesizer, analyzer, judge)
    stop_reason: str | None = None  # budget_exhausted: the spend and the estimate that stopped the loop
    finished_at: float
