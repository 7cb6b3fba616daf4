"""Plots and the campaign report, checked for their content on a small synthetic campaign; the
launchpad's default config; the CLI's JSON output and exit codes."""

import json
import re

import dagster as dg
import numpy as np
import pytest

from bcomc_dagster import cli, costs, stages
from bcomc_dagster.analysis.analyzer import Analysis
from bcomc_dagster.artifacts import ANALYSIS, CHECKPOINT, CONFIG, REPORT, ArtifactStore
from bcomc_dagster.config import DEMO_CONFIG, parse_config
from bcomc_dagster.llm.base import Usage
from bcomc_dagster.llm.cost import DEFAULT_PRICES, Meter
from bcomc_dagster.reports import campaign as page
from bcomc_dagster.reports import plots
from bcomc_dagster.training.manifest import Manifest, TrainSettings

from .test_effectiveness import report

RATES = {0: {"a": 0, "b": 1}, 1: {"a": 4, "b": 1}, 2: {"a": 4, "b": 3}}  # passed of 4, per service


@pytest.fixture
def campaign(tmp_path, monkeypatch):
    """A finished two-iteration campaign's artifacts, written as the stages write them."""
    monkeypatch.setenv("BCOMC_HOME", str(tmp_path))
    store = ArtifactStore(tmp_path)
    store.write_json("c", None, CONFIG, parse_config({"target_pass_rate": 80, "max_iterations": 3}))
    for i, passed in RATES.items():
        store.write_json(
            "c", i, REPORT, report(passed).against(store.report("c", i - 1) if i else None, i - 1)
        )
        m = Meter("eval")
        m.add(
            "judge",
            "bedrock:haiku",
            Usage(input_tokens=10_000 * (i + 1)),
            DEFAULT_PRICES["claude-3-5-haiku"],
            cached=False,
        )
        costs.write(store, "c", i, m.cost)
        if i:
            store.write_json(
                "c",
                i,
                ANALYSIS,
                Analysis(
                    summary="s",
                    priority_services={"a": 1},
                    datagen_services=["a"] if i == 1 else ["b"],
                    datagen_count=10,
                    suggested_actions=[],
                    trend_analysis={},
                ),
            )
            manifest = Manifest(
                base_model="bcomc-tiny",
                base_fingerprint="b",
                data_rows=10 * i,
                data_sha256="d",
                adapter_name=f"c-it{i}",
                adapter_fingerprint="a",
                merged_fingerprint="m",
                settings=TrainSettings(),
                steps=4,
                final_loss=1.5,
                loss_curve=[(1, 3.0), (2, 2.5), (3, 2.0), (4, 1.5)],
                train_seconds=1.0,
            )
            (store.iteration_dir("c", i) / CHECKPOINT).mkdir()
            (store.iteration_dir("c", i) / CHECKPOINT / "manifest.json").write_text(
                manifest.model_dump_json()
            )
    stages.conclude(store, "c", log=lambda s: None)
    return store


def test_pass_rate_plot_has_the_series_the_target_and_the_values():
    fig = plots.pass_rate_figure(
        {0: 0.0, 1: 62.5, 2: 87.5}, 80, held_out={1: 50.0, 2: 75.0}, title="Pass rate — c"
    )
    ax = fig.axes[0]
    assert ax.get_title() == "Pass rate — c" and ax.get_ylabel() == "pass rate (%)"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert list(lines["pass rate"].get_ydata()) == [0.0, 62.5, 87.5] and list(
        lines["pass rate"].get_xdata()
    ) == [0, 1, 2]
    assert list(lines["held-out part"].get_ydata()) == [50.0, 75.0]
    assert list(lines["target 80%"].get_ydata()) == [80, 80]
    assert [t.get_text() for t in ax.texts] == ["0.0", "62.5", "87.5"]
    assert plots.png(fig)[:8] == b"\x89PNG\r\n\x1a\n"


def test_heatmap_loss_and_cost_plots_carry_their_values():
    fig = plots.service_heatmap({"a": {0: 0.0, 1: 100.0}, "b": {0: 25.0, 1: 75.0}})
    ax = fig.axes[0]
    assert np.array_equal(ax.images[0].get_array(), [[0.0, 100.0], [25.0, 75.0]])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"] and [
        t.get_text() for t in ax.texts
    ] == ["0", "100", "25", "75"]
    loss = plots.loss_figure([(1, 3.0), (5, 1.0)], "Training loss, iteration 2").axes[0]
    assert loss.get_title() == "Training loss, iteration 2" and list(loss.get_lines()[0].get_ydata()) == [
        3.0,
        1.0,
    ]
    cost = plots.cost_figure({0: {"eval": 0.01}, 1: {"eval": 0.01, "generate": 0.05}}).axes[0]
    heights = {c.get_label(): [round(b.get_height(), 3) for b in c] for c in cost.containers}
    assert (
        heights == {"eval": [0.01, 0.01], "generate": [0.0, 0.05]}
        and cost.get_title() == "Cost per iteration"
    )
    md = plots.markdown_image(plots.loss_figure([(1, 1.0)]), "loss")
    assert md.startswith("![loss](data:image/png;base64,iVBOR")


def test_campaign_report_html_and_markdown(campaign):
    html, md = page.write(campaign, "c")
    text = html.read_text()
    assert (
        "<strong>target_reached</strong>: 12.5% → 87.5%" in text and "(target reached at iteration 2)" in text
    )
    assert text.count('src="data:image/png;base64,') == 4  # pass rate, heatmap, cost, loss: self-contained
    row = re.search(r"<tr><td>1</td>.*?</tr>", text, re.S).group(0)  # iteration 1 targeted a: +100 vs b: 0
    assert "<td>a</td>" in row and "<td>+100.0</td>" in row and "<td>+0.0</td>" in row and "0.0160" in row
    assert "Regressions" not in text and "$0.0480" in text  # 3 evals of 10k, 20k, 30k Haiku input tokens
    assert '<a href="2/eval_report.json">iteration 2: eval report</a>' in text
    assert '<a href="1/checkpoint/manifest.json">' in text and '<a href="effectiveness.md">' in text
    m = md.read_text()
    assert "**target_reached**: 12.5% → 87.5%" in m and "![pass_rate](report-pass_rate.png)" in m
    assert (md.parent / "report-pass_rate.png").read_bytes()[:4] == b"\x89PNG" and (
        md.parent / "report-loss.png"
    ).exists()
    assert "| a  |   0.0 | 100.0 | 100.0 |" in m and "| b  |  25.0 |  25.0 |  75.0 |" in m  # per service
    # answers a person can check: base and live answer, graded, questions whose grade changed first
    assert "## Answers to check" in m and "live model's (iteration 2)" in m
    assert "| a | q a 0? | r | x | incorrect | r | correct |" in m
    assert "Answers to check" in text and '<td class="correct">correct</td>' in text
    assert "there is no unbiased figure" in m  # nothing held out in this campaign
    assert "## Checkpoints the gate kept off" in m


def test_the_report_names_the_checkpoints_the_gate_kept_off(campaign):
    from bcomc_dagster.artifacts import PROMOTION
    from bcomc_dagster.loop import gate

    live, candidate = campaign.report("c", 1), campaign.report("c", 2)
    worse = gate(2, live, 1, candidate, "if_better")  # iteration 2 judged against a better one
    assert not worse.promoted
    campaign.write_json("c", 2, PROMOTION, worse)
    html, md = page.write(campaign, "c")
    m = md.read_text()
    assert f"- iteration 2: {worse.reason}" in m and "live model's (iteration 1)" in m


def test_launchpad_default_is_the_documented_demo_campaign(tmp_path, monkeypatch):
    from bcomc_dagster.definitions import defs
    from bcomc_dagster.defs.assets import LAUNCH_SCHEMA

    # every field of the launch schema, with its description and the demo's values as defaults
    assert (
        LAUNCH_SCHEMA["target_pass_rate"].default_value == 80
        and "Stop once" in LAUNCH_SCHEMA["target_pass_rate"].description
    )
    datagen = LAUNCH_SCHEMA["datagen"].config_type.fields
    assert (
        datagen["examples_per_service"].default_value == 40 and datagen["concurrency"].default_value == 8
    )  # demo, schema
    assert datagen["prompt_config"].config_type.fields["persona"].default_value == "an engineer on call"
    assert (
        "One of" in LAUNCH_SCHEMA["analyzer_backend"].description
        and LAUNCH_SCHEMA["budget_usd"].default_value is None
    )
    monkeypatch.setenv("BCOMC_HOME", str(tmp_path))
    job = (
        defs()
        .resolve_implicit_global_asset_job_def()
        .get_subset(asset_selection={dg.AssetKey("campaign_config")})
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("campaign", ["ui"])
        assert job.execute_in_process(
            instance=instance, partition_key="ui"
        ).success  # the default, as the launchpad has it
        assert (
            ArtifactStore(tmp_path).config("ui")
            == parse_config(json.loads(DEMO_CONFIG.read_text())).resolved()
        )
        other = {"ops": {"campaign_config": {"config": {"max_iterations": 9}}}}
        res = job.execute_in_process(
            instance=instance, partition_key="ui", run_config=other, raise_on_error=False
        )
        assert not res.success  # a campaign keeps the config it was launched with
        err = next(e for e in res.all_events if e.is_step_failure).step_failure_data.error.cause.message
        assert "campaign 'ui' was launched with another config" in err
        wrong = {"ops": {"campaign_config": {"config": {"max_iterations": "five"}}}}
        with pytest.raises(
            dg.DagsterInvalidConfigError, match="max_iterations"
        ):  # the launchpad says so as you type
            job.execute_in_process(instance=instance, partition_key="ui", run_config=wrong)


def test_a_campaign_that_cost_nothing_has_no_cost_chart(campaign):
    for i in range(3):
        (campaign.iteration_dir("c", i) / "cost-eval.json").unlink()
    assert set(page.figures(page.collect(campaign, "c"))) == {"pass_rate", "services", "loss"}


def test_cli_json_and_exit_codes(campaign, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"max_iterations": 0}))
    assert cli.main(["validate", str(bad), "--json"]) == cli.EXIT_INPUT
    out = json.loads(capsys.readouterr().out)
    assert (
        out["exit_code"] == 2 and "max_iterations: Input should be greater than or equal to 1" in out["error"]
    )
    assert cli.main(["validate", str(DEMO_CONFIG), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["questions"] == 40
    assert cli.main(["report", "c", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["status"] == "target_reached" and r["pass_rates"] == {"0": 12.5, "1": 62.5, "2": 87.5}
    assert r["html"].endswith("campaigns/c/report.html") and r["cost_usd"] == pytest.approx(0.048)
    assert (
        cli.main(["report", "c"]) == 0 and "c: target_reached; report written to" in capsys.readouterr().out
    )
    assert cli.main(["report", "nope"]) == cli.EXIT_INPUT
    assert "campaign 'nope': no such campaign" in capsys.readouterr().err


def test_status_names_an_unreadable_report_instead_of_hiding_it(campaign, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
    assert cli.main(["status", "c", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["pass_rate"] == 87.5
    campaign.path("c", 2, REPORT).write_text("{not json")
    assert cli.main(["status", "c", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)[0]
    assert row["pass_rate"] is None and row["failure"].startswith("unreadable: ")
    assert "eval_report.json" in row["failure"] or "JSON" in row["failure"]


@pytest.mark.parametrize(
    "cause, code",
    [
        ("ServingError", 4),
        ("PermanentLLMError", 5),
        ("InvalidAnswer", 5),
        ("BudgetExceeded", 3),
        ("InputError", 2),
        ("PredecessorMissing", 1),
        ("DagsterAssetCheckFailedError", 1),
        (None, 1),
    ],
)
def test_a_failed_stage_exits_with_what_failed(cause, code):
    from bcomc_dagster.errors import StageFailed

    assert cli.exit_code(StageFailed("x", cause=cause)) == code


def test_the_eval_report_asset_shows_answers_to_check_and_grades(campaign):
    from bcomc_dagster.defs.metadata import report_metadata

    md = report_metadata(campaign.report("c", 2), 2, None, campaign.report("c", 0))
    table = md["answers_to_check"].value
    assert "| service | question | reference | base answer | base grade | answer | grade |" in table
    assert "| a | q a 0? | r | x | incorrect | r | correct |" in table
    assert md["grades"].value == {"correct": 7, "incorrect": 1} and md["compared_with_iteration"] == 1
    assert md["decided_pass_rate"].value == 87.5
