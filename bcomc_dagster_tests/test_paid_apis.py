"""Opt-in tests against the real paid APIs: one structured generation call per provider (a fraction of
a cent each). Never run in CI. Run them with

    make test-paid

with AWS credentials and a region that has Claude 3.5 Haiku enabled in Bedrock, ANTHROPIC_API_KEY, and
OPENAI_API_KEY (+ BCOMC_OPENAI_MODEL, default gpt-4o-mini; OPENAI_BASE_URL for another server).
A provider whose credentials are absent is skipped with the reason.
"""

import os

import pytest

from bcomc_dagster.datagen import coordinator
from bcomc_dagster.datagen.llm_worker import PairOut, pair_request
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.llm import registry
from bcomc_dagster.llm.client import LLMClient
from bcomc_dagster.llm.cost import Meter, price_of
from bcomc_dagster.llm.structured import ask_structured

pytestmark = pytest.mark.paid

if os.environ.get("CI") or os.environ.get("BCOMC_PAID_TESTS") != "1":
    pytest.skip("paid API tests are opt-in: make test-paid (never in CI)", allow_module_level=True)


def _needs(*names: str) -> None:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        pytest.skip(f"set {', '.join(missing)}")


@pytest.mark.parametrize("backend", ["bedrock", "anthropic", "openai"])
def test_one_grounded_pair_from_the_real_api(backend):
    _needs(
        *{
            "bedrock": ["AWS_DEFAULT_REGION"],
            "anthropic": ["ANTHROPIC_API_KEY"],
            "openai": ["OPENAI_API_KEY"],
        }[backend]
    )
    name = os.environ.get("BCOMC_OPENAI_MODEL", "gpt-4o-mini") if backend == "openai" else "claude-3-5-haiku"
    model = registry.resolve_model(backend, name)
    settings = registry.ProviderSettings(
        base_url=os.environ.get("OPENAI_BASE_URL") if backend == "openai" else None
    )
    meter = Meter("paid")
    client = LLMClient(
        registry.create(backend, model, settings), "generator", meter, price_of([name, model], {})
    )
    request = coordinator.plan_requests(load_suite("demo"), "brambledb", 1, 0)[0]
    pair, attempts = ask_structured(client, pair_request(request), PairOut.model_validate)
    assert "6120" in pair.answer and attempts <= 2
    stats = meter.cost.roles["generator"]
    assert stats.input_tokens > 0 and stats.output_tokens > 0
