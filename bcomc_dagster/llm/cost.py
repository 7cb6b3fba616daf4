"""Token usage of every call x a price table -> cost per role, per stage, per iteration, per campaign.

Default prices are the plan's (Dec 2025 Bedrock, USD per 1M input / output tokens); a campaign config
can override or add to them. A model without a price costs 0 and is listed as unpriced, never guessed.
"""

from __future__ import annotations

import threading

from pydantic import BaseModel, ConfigDict, Field

from bcomc_dagster.llm.base import PermanentLLMError, Usage


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    input: float = Field(ge=0, le=100_000, description="USD per 1M input tokens.")
    output: float = Field(ge=0, le=100_000, description="USD per 1M output tokens.")

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / 1e6


DEFAULT_PRICES: dict[str, Price] = {
    "claude-3-5-haiku": Price(input=0.80, output=4.00),
    "claude-3-5-sonnet": Price(input=6.00, output=30.00),
}


def price_of(names: list[str], prices: dict[str, Price]) -> Price | None:
    """The price of the first of ``names`` (alias, then provider id) found exactly, else one whose key is
    contained in a name (``us.anthropic.claude-3-5-haiku-20241022-v1:0`` -> ``claude-3-5-haiku``)."""
    table = {**DEFAULT_PRICES, **prices}
    for n in names:
        if n in table:
            return table[n]
    for key in sorted(table, key=len, reverse=True):
        if any(key in n for n in names):
            return table[key]
    return None


class BudgetExceeded(PermanentLLMError):
    """The campaign's budget would be exceeded by going on."""


class CallStats(BaseModel):
    model: str
    calls: int = 0
    cached_calls: int = 0  # answered from the response cache: paid for once, by an earlier run
    input_tokens: int = 0  # all calls, cached answers included
    output_tokens: int = 0
    cached_input_tokens: int = 0  # of those, what the cache answered: not billed again
    cached_output_tokens: int = 0
    cost_usd: float = 0.0
    priced: bool = True


class StageCost(BaseModel):
    """What one stage's model calls cost, by role (generator, synthesizer, analyzer, judge)."""

    stage: str
    cost_usd: float = 0.0
    new_spend_usd: float = 0.0  # excluding cached answers: what this run actually paid
    roles: dict[str, CallStats] = {}

    @property
    def unpriced(self) -> list[str]:
        return sorted({s.model for s in self.roles.values() if not s.priced and s.calls})


class Meter:
    """Thread-safe accumulator of one stage's calls. ``limit_usd``: new spend at which calls stop."""

    def __init__(self, stage: str, limit_usd: float | None = None):
        self._lock = threading.Lock()
        self.cost = StageCost(stage=stage)
        self.limit_usd = limit_usd

    def check(self) -> None:
        if self.limit_usd is not None and self.cost.new_spend_usd >= self.limit_usd:
            raise BudgetExceeded(
                f"{self.cost.stage}: the campaign budget is spent (${self.cost.new_spend_usd:.4f} in this "
                "stage, "
                f"${self.limit_usd:.4f} was left); stopping before the next call"
            )

    def add(self, role: str, model: str, usage: Usage, price: Price | None, cached: bool) -> None:
        usd = price.cost(usage) if price else 0.0
        with self._lock:
            s = self.cost.roles.setdefault(role, CallStats(model=model, priced=price is not None))
            s.calls += 1
            s.cached_calls += int(cached)
            s.input_tokens += usage.input_tokens
            s.output_tokens += usage.output_tokens
            if cached:
                s.cached_input_tokens += usage.input_tokens
                s.cached_output_tokens += usage.output_tokens
            s.cost_usd += usd  # full precision: a campaign sums thousands of sub-cent calls
            self.cost.cost_usd += usd
            if not cached:
                self.cost.new_spend_usd += usd
