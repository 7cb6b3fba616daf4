"""What a campaign's model calls cost: one file per stage and iteration (``cost-<stage>.json``), summed
per iteration and per campaign; and the budget rule that stops the loop before an iteration would
exceed ``budget_usd``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import CampaignConfig
from bcomc_dagster.llm.cost import Meter, Price, StageCost, price_of
from bcomc_dagster.llm.registry import resolve_model
from bcomc_dagster.registry import EMBEDDED

STAGES = ("eval", "analyze", "generate", "dataset")
# token sizes per pair of the built-in prompts, tool-use system prompt included (benchmarks/datagen.py)
PAIR_TOKENS = (560, 40)
SYNTH_TOKENS_PER_PAIR = (75, 25)
ANALYZE_TOKENS = (3000, 700)


def _file(stage: str) -> str:
    return f"cost-{stage}.json"


def write(store: ArtifactStore, campaign: str, iteration: int, cost: StageCost) -> None:
    store.write_json(campaign, iteration, _file(cost.stage), cost)


def stage_cost(store: ArtifactStore, campaign: str, iteration: int, stage: str) -> StageCost | None:
    p = store.path(campaign, iteration, _file(stage))
    return StageCost.model_validate_json(p.read_text()) if p.exists() else None


def iteration_cost(store: ArtifactStore, campaign: str, iteration: int) -> float:
    return round(sum(c.cost_usd for s in STAGES if (c := stage_cost(store, campaign, iteration, s))), 6)


def campaign_cost(store: ArtifactStore, campaign: str) -> float:
    return round(sum(iteration_cost(store, campaign, i) for i in store.iterations(campaign)), 6)


def meter(store: ArtifactStore, cfg: CampaignConfig, campaign: str, iteration: int, stage: str) -> Meter:
    """A meter for one stage, stopping calls once the campaign's budget is spent (a re-run of the stage
    does not count its own earlier run)."""
    if cfg.budget_usd is None:
        return Meter(stage)
    earlier = stage_cost(store, campaign, iteration, stage)
    spent = campaign_cost(store, campaign) - (earlier.cost_usd if earlier else 0.0)
    return Meter(stage, limit_usd=max(0.0, cfg.budget_usd - spent))


@contextmanager
def metered(
    store: ArtifactStore, cfg: CampaignConfig, campaign: str, iteration: int, stage: str
) -> Iterator[Meter]:
    """The stage's meter; what it spent is written when the stage ends, failed or not (it counts against
    the budget either way)."""
    m = meter(store, cfg, campaign, iteration, stage)
    try:
        yield m
    finally:
        write(store, campaign, iteration, m.cost)


def _price(cfg: CampaignConfig, backend: str, model: str | None) -> Price | None:
    if backend == EMBEDDED or not model:
        return None
    return price_of([model, resolve_model(backend, model, cfg.llm.aliases)], cfg.llm.prices)


def estimate_iteration(cfg: CampaignConfig, store: ArtifactStore, campaign: str) -> float:
    """The next iteration's likely cost: the dearest iteration so far, or before any, the plan's volume
    (max_services x examples_per_service pairs) at the configured prices plus the baseline's judging."""
    done = [iteration_cost(store, campaign, i) for i in store.iterations(campaign) if i > 0]
    if done:
        return max(done)
    d = cfg.datagen
    pairs = d.max_services * d.examples_per_service
    usd = 0.0
    if p := _price(cfg, d.generator_backend, d.generator_model):
        usd += pairs * (PAIR_TOKENS[0] * p.input + PAIR_TOKENS[1] * p.output) / 1e6
    if d.synthesizer and (p := _price(cfg, *d.synthesizer)):
        usd += pairs * (SYNTH_TOKENS_PER_PAIR[0] * p.input + SYNTH_TOKENS_PER_PAIR[1] * p.output) / 1e6
    if p := _price(cfg, cfg.analyzer_backend, cfg.analyzer_model):
        usd += (ANALYZE_TOKENS[0] * p.input + ANALYZE_TOKENS[1] * p.output) / 1e6
    return round(usd + iteration_cost(store, campaign, 0), 6)  # re-eval costs what the baseline eval did


def over_budget(cfg: CampaignConfig, store: ArtifactStore, campaign: str) -> str | None:
    """Why the next iteration must not start (it would exceed the budget), or None."""
    if cfg.budget_usd is None:
        return None
    spent, next_ = campaign_cost(store, campaign), estimate_iteration(cfg, store, campaign)
    if spent + next_ > cfg.budget_usd:
        return f"spent ${spent:.4f} + next iteration ~${next_:.4f} > budget ${cfg.budget_usd:.2f}"
    return None
