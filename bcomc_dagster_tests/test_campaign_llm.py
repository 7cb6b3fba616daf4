"""A whole campaign with every model role on a provider: the generator on Bedrock (boto3, Converse), the
synthesizer and analyzer on the Anthropic API (its SDK), the judge on an OpenAI-compatible server (its
SDK), all three protocols answered by a loopback server; the model under training on a real vLLM."""

import json

import dagster as dg
import pytest

from bcomc_dagster import cli, costs, driver
from bcomc_dagster.artifacts import ANALYSIS, GENERATED, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.datagen import dataset
from bcomc_dagster.defs.partitions import iteration_key

from .fakes import serve
from .fakes.llm import FakeLLM

pytestmark = [pytest.mark.slow, pytest.mark.server]


def test_campaign_on_model_providers_tracks_cost_and_skipped_services(tmp_path, monkeypatch, capsys):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "ANTHROPIC_API_KEY": "test",
        "OPENAI_API_KEY": "test",
        "BCOMC_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dh"),
    }.items():
        monkeypatch.setenv(k, v)
    fake = FakeLLM()
    fake.poison["Service: Cindervault"] = "error500"  # every generation call for this service fails
    with serve(fake.app()) as url, dg.instance_for_test() as instance:
        cfg = parse_config(
            {
                "target_pass_rate": 40,
                "max_iterations": 3,
                "serving": {"promote": "always"},
                "judge": "llm",
                "judge_backend": "openai",
                "judge_model": "judge-7b",
                "analyzer_backend": "anthropic",
                "analyzer_model": "claude-3-5-sonnet",
                "budget_usd": 5,
                "datagen": {
                    "generator_backend": "bedrock",
                    "generator_model": "claude-3-5-haiku",
                    "examples_per_service": 40,
                    "synthesizer_enabled": True,
                    "synthesizer_backend": "anthropic",
                    "synthesizer_model": "claude-3-5-sonnet",
                    "max_retries": 1,
                },
                "finetune": {"rank": 16, "epochs": 12, "learning_rate": 0.003},
                "llm": {
                    "providers": {
                        "bedrock": {"base_url": url, "max_retries": 0},
                        "anthropic": {"base_url": url},
                        "openai": {"base_url": f"{url}/v1"},
                    },
                    "prices": {"judge-7b": {"input": 0.1, "output": 0.1}},
                },
            }
        )
        store = ArtifactStore(tmp_path / "home")
        driver.launch(instance, driver.load_defs(), store, cfg, "c-llm")
        outcome = driver.drive(instance, driver.load_defs(), store, "c-llm", out=lambda s: None)

        assert outcome.status == "target_reached" and outcome.pass_rates[outcome.iterations] >= 40
        rates = list(outcome.pass_rates.values())
        assert rates == sorted(rates) and rates[0] < rates[-1]  # each iteration improved on the last
        # the analyzer, generator, synthesizer and judge were the configured models
        a1 = store.read_json("c-llm", 1, ANALYSIS, "analysis")
        assert a1["analyzer"] == "anthropic:claude-3-5-sonnet-20241022" and a1["fallback_reason"] is None
        assert "cindervault" in a1["datagen_services"]
        pairs = dataset.read_jsonl(store.path("c-llm", 1, GENERATED))
        assert {p.provenance.model for p in pairs} == {"bedrock:anthropic.claude-3-5-haiku-20241022-v1:0"}
        assert {p.provenance.synthesizer for p in pairs} == {"anthropic:claude-3-5-sonnet-20241022"}
        assert "cindervault" not in {p.service for p in pairs}
        report = store.report("c-llm", outcome.iterations)
        assert report.judge == "llm:openai:judge-7b" and report.judge_errors == 0
        assert {c.protocol for c in fake.calls} == {"bedrock", "anthropic", "openai"}

        # cost: per stage and role in metadata, per iteration and campaign; everything the fake counted
        md = (
            instance.fetch_materializations(
                dg.AssetRecordsFilter(
                    asset_key=dg.AssetKey("generated_examples"), asset_partitions=[iteration_key("c-llm", 1)]
                ),
                limit=1,
            )
            .records[0]
            .asset_materialization.metadata
        )
        roles = md["cost_by_role"].value
        # 3 services targeted, one always failing: 2 x 40 pairs asked, plus the top-ups for what the
        # filters would drop; every pair made is billed, and rewritten in synthesis batches of 10
        made = sum(store.generation("c-llm", 1).produced.values())
        assert made >= 80 and store.generation("c-llm", 1).asked == dict.fromkeys(a1["datagen_services"], 40)
        assert (
            roles["generator"]["calls"] == made
            and roles["synthesizer"]["calls"] == -(-made // 10)
            and md["cost_usd"].value > 0
        )
        failed = [
            c for c in fake.calls if c.protocol == "bedrock" and not c.answered and "Cindervault" in c.prompt
        ]
        assert len(failed) >= 80  # 40 pairs x 2 attempts in iteration 1 alone: never billed
        assert md["skipped_services"].value["cindervault"].startswith("failed after 2 attempts")
        assert md["synthesis"].value["rewritten"] == len(pairs)
        fake_in, fake_out = fake.usage()
        counted = [
            costs.stage_cost(store, "c-llm", i, s)
            for i in range(outcome.iterations + 1)
            for s in costs.STAGES
        ]
        tokens = [r for c in counted if c for r in c.roles.values()]
        assert (
            sum(r.input_tokens - r.cached_input_tokens for r in tokens) == fake_in
        )  # billed = what the server counted
        assert sum(r.output_tokens - r.cached_output_tokens for r in tokens) == fake_out
        assert (
            sum(r.cached_calls for r in tokens) > 0
        )  # re-evals ask the judge about answers it has graded before
        assert (
            outcome.cost_usd == pytest.approx(costs.campaign_cost(store, "c-llm"))
            and 0 < outcome.cost_usd < 5
        )

        # bcomc status shows the cost and the skipped services
        capsys.readouterr()
        assert cli.main(["status", "c-llm", "--json"]) == 0
        row = json.loads(capsys.readouterr().out)[0]
        assert row["cost_usd"] == pytest.approx(outcome.cost_usd) and row["skipped"]["1"] == ["cindervault"]
        assert cli.main(["status", "c-llm"]) == 0
        out = capsys.readouterr().out
        assert f"${outcome.cost_usd:.4f}" in out and "c-llm: iteration 1 skipped cindervault" in out
