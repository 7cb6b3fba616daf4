"""The stop-or-advance rule of the closed loop, shared by the sensor, the CLI and the demo."""

from __future__ import annotations

from enum import Enum


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
    iteration: int, pass_rate: float, target: float, max_iterations: int, auto_advance: bool, over_budget: bool = False
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
