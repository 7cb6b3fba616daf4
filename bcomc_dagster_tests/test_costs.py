"""Cost per stage, iteration and campaign, and the budget that stops the loop before it is exceeded."""

import pytest

from bcomc_dagster import costs, stages
from bcomc_dagster.artifacts import CONFIG, REPORT, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.llm.base import Usage
from bcomc_dagster.llm.cost import DEFAULT_PRICES, Meter
from bcomc_dagster.loop import Decision

from .test_effectiveness import report

LLM = {
    "datagen": {
        "generator_backend": "bedrock",
        "generator_model": "claude-3-5-haiku",
        "examples_per_service": 50,
    },
    "max_iterations": 5,
    "target_pass_rate": 90,
}


def campaign(tmp_path, **cfg):
    store = ArtifactStore(tmp_path)
    store.write_json("c", None, CONFIG, parse_config({**LLM, **cfg}))
    store.write_json("c", 0, REPORT, report({"a": 1, "b": 0}))
    return store


def spend(store, iteration, stage, usd_in_haiku_input_tokens: int):
    m = Meter(stage)
    m.add(
        "generator",
        "bedrock:haiku",
        Usage(input_tokens=usd_in_haiku_input_tokens),
        DEFAULT_PRICES["claude-3-5-haiku"],
        cached=False,
    )
    costs.write(store, "c", iteration, m.cost)


def test_costs_add_up_per_iteration_and_campaign(tmp_path):
    store = campaign(tmp_path)
    spend(store, 0, "eval", 100_000)  # $0.08
    spend(store, 1, "generate", 500_000)  # $0.40
    spend(store, 1, "eval", 100_000)
    assert costs.iteration_cost(store, "c", 1) == pytest.approx(0.48)
    assert costs.campaign_cost(store, "c") == pytest.approx(0.56)
    assert costs.stage_cost(store, "c", 1, "generate").roles["generator"].input_tokens == 500_000


def test_no_budget_never_stops_the_loop(tmp_path):
    store = campaign(tmp_path)
    spend(store, 0, "eval", 10**9)
    assert costs.over_budget(parse_config(LLM), store, "c") is None
    assert stages.next_decision(store, "c", 0, 10.0) is Decision.ADVANCE


def test_budget_stops_before_the_first_iteration_when_the_plan_would_exceed_it(tmp_path):
    # 5 services x 50 pairs at ~(560 in, 40 out) tokens of Haiku: ~$0.15 before any iteration ran
    store = campaign(tmp_path, budget_usd=0.05)
    assert costs.estimate_iteration(parse_config({**LLM, "budget_usd": 0.05}), store, "c") == pytest.approx(
        0.152
    )
    assert stages.next_decision(store, "c", 0, 10.0) is Decision.BUDGET_EXHAUSTED
    store = campaign(tmp_path / "more", budget_usd=1.0)
    assert stages.next_decision(store, "c", 0, 10.0) is Decision.ADVANCE


def test_budget_stops_the_loop_before_an_iteration_would_exceed_it(tmp_path):
    store = campaign(tmp_path, budget_usd=1.0)
    spend(store, 1, "generate", 500_000)  # iteration 1 cost $0.40
    store.write_json("c", 1, REPORT, report({"a": 2, "b": 1}))
    assert stages.next_decision(store, "c", 1, 50.0) is Decision.ADVANCE  # 0.40 spent + ~0.40 next <= 1.00
    spend(store, 2, "generate", 500_000)
    store.write_json("c", 2, REPORT, report({"a": 3, "b": 1}))
    assert stages.next_decision(store, "c", 2, 60.0) is Decision.BUDGET_EXHAUSTED  # 0.80 + 0.40 > 1.00
    assert (
        stages.next_decision(store, "c", 2, 95.0) is Decision.TARGET_REACHED
    )  # the target still comes first
    outcome = stages.conclude(store, "c", log=lambda s: None)
    assert outcome.status == "budget_exhausted" and outcome.cost_usd == pytest.approx(0.8)
    assert outcome.stop_reason == "spent $0.8000 + next iteration ~$0.4000 > budget $1.00"


def test_a_rerun_stage_does_not_count_its_earlier_run_against_the_budget(tmp_path):
    store = campaign(tmp_path, budget_usd=0.5)
    spend(store, 1, "generate", 500_000)  # $0.40 of the $0.50
    cfg = store.config("c")
    assert costs.meter(store, cfg, "c", 1, "generate").limit_usd == pytest.approx(0.5)  # re-running generate
    assert costs.meter(store, cfg, "c", 1, "eval").limit_usd == pytest.approx(0.1)
