import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

from bcomc_dagster.definitions import defs

ROOT = Path(__file__).resolve().parent.parent


def test_asset_graph_and_partitions():
    d = defs()
    graph = d.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == {
        "campaign_config",
        "baseline_eval",
        "failure_analysis",
        "generated_examples",
        "training_dataset",
        "checkpoint",
        "deployment",
        "eval_report",
        "campaign_outcome",
        "campaign_report",
    }
    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert (
        groups["checkpoint"] == "fine_tune"
        and groups["deployment"] == "deploy"
        and groups["eval_report"] == "evaluate"
    )
    assert all(
        graph.get(k).owners == ["team:bcomc"] and graph.get(k).code_version
        for k in graph.get_all_asset_keys()
    )
    assert {"vllm"} <= graph.get(dg.AssetKey("deployment")).kinds and "peft" in graph.get(
        dg.AssetKey("checkpoint")
    ).kinds
    pooled = {k.to_user_string() for k in graph.get_all_asset_keys() if graph.get(k).pools}
    assert pooled == {"checkpoint", "deployment"} and graph.get(dg.AssetKey("checkpoint")).pools == {"gpu"}
    node = graph.get(dg.AssetKey("failure_analysis"))
    assert isinstance(node.partitions_def, dg.MultiPartitionsDefinition)
    assert {dg.AssetKey("baseline_eval"), dg.AssetKey("campaign_config")} <= set(node.parent_keys)
    assert graph.get(dg.AssetKey("eval_report")).parent_keys == {dg.AssetKey("deployment")}
    specs = [s for cd in d.asset_checks for s in cd.check_specs]
    assert [(s.name, s.blocking) for s in specs] == [("no_eval_questions_in_training_data", True)]
    # the blocking check runs inside every iteration, between the dataset and the fine-tune
    assert d.resolve_job_def("iteration_job").asset_layer.asset_graph.asset_check_keys == {specs[0].key}
    assert d.resolve_sensor_def("campaign_sensor").default_status == dg.DefaultSensorStatus.RUNNING


def test_definitions_validate_over_grpc():
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagster",
            "definitions",
            "validate",
            "--load-with-grpc",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"},  # a temporary instance
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_run_key_tag_is_dagsters():
    """The driver writes Dagster's run-key tag by value (Dagster names it in a private module only)."""
    from dagster._core.storage.tags import RUN_KEY_TAG

    from bcomc_dagster import driver

    assert driver.RUN_KEY_TAG == RUN_KEY_TAG
