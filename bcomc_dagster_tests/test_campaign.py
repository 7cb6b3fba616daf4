"""Whole campaigns through Dagster: a real instance, the sensor ticked with build_sensor_context, real
training and a real vLLM server, as `bcomc demo` runs them."""

import json

import dagster as dg
import pytest

from bcomc_dagster import driver, stages
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.defs.partitions import iteration_key
from bcomc_dagster.defs.sensors import evaluate_tick
from bcomc_dagster.errors import InputError
from bcomc_dagster.serving.process import pid_alive

pytestmark = [pytest.mark.slow, pytest.mark.server]
FAST = {"examples_per_service": 40}
TRAIN = {"rank": 16, "epochs": 12, "learning_rate": 0.003}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BCOMC_HOME", str(tmp_path / "home"))
    with dg.instance_for_test() as instance:
        yield instance, driver.load_defs(), ArtifactStore(tmp_path / "home")


def _materialised(instance, asset, partition):
    return instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[partition]), limit=10
    ).records


def test_campaign_reaches_target_in_two_iterations(env):
    instance, defs, store = env
    cfg = parse_config({"target_pass_rate": 60, "max_iterations": 4, "datagen": FAST, "finetune": TRAIN})
    driver.launch(instance, defs, store, cfg, "c-target")
    outcome = driver.drive(instance, defs, store, "c-target", out=lambda s: None)
    assert outcome.status == "target_reached" and outcome.iterations == 2
    assert outcome.pass_rates[0] <= 20 and outcome.pass_rates[2] >= 60
    assert outcome.servers_stopped and stages.deployer(store, cfg, "c-target").state() is None
    # every asset of both iterations materialised, with the metadata users look for
    for i in (1, 2):
        key = iteration_key("c-target", i)
        for asset in ("failure_analysis", "generated_examples", "training_dataset", "checkpoint", "deployment", "eval_report"):
            assert _materialised(instance, asset, key), (asset, i)
    report = _materialised(instance, "eval_report", iteration_key("c-target", 2))[0].asset_materialization.metadata
    assert report["improvement_delta"].value > 0 and "| service" in report["per_service"].value
    ds1 = stages.dataset.read_jsonl(store.path("c-target", 1, stages.DATASET))
    ds2 = stages.dataset.read_jsonl(store.path("c-target", 2, stages.DATASET))
    assert [r.id for r in ds2[: len(ds1)]] == [r.id for r in ds1] and len(ds2) > len(ds1)  # cumulative
    assert not stages.contamination(store, "c-target", 2)

    # re-materialising an iteration's dataset adds no duplicate rows, and the sensor does not advance twice
    job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey("training_dataset")})
    res = job.execute_in_process(instance=instance, partition_key=iteration_key("c-target", 2))
    assert res.success
    again = stages.dataset.read_jsonl(store.path("c-target", 2, stages.DATASET))
    assert [r.id for r in again] == [r.id for r in ds2] and len({r.id for r in again}) == len(again)


def test_manual_advance_stops_at_max_iterations(env):
    instance, defs, store = env
    cfg = parse_config({"target_pass_rate": 100, "max_iterations": 2, "auto_advance": False,
                        "datagen": {"examples_per_service": 10}, "finetune": {"epochs": 2, "learning_rate": 0.003}})
    driver.launch(instance, defs, store, cfg, "c-manual")
    assert driver.drive(instance, defs, store, "c-manual", out=lambda s: None) is None  # waits after the baseline
    assert stages.latest_iteration(store, "c-manual") == 0
    pid = stages.deployer(store, cfg, "c-manual").state().pid
    driver.advance(instance, defs, store, "c-manual", out=lambda s: None)
    driver.advance(instance, defs, store, "c-manual", out=lambda s: None)
    assert stages.latest_iteration(store, "c-manual") == 2
    assert driver.advance(instance, defs, store, "c-manual", out=lambda s: None).value == "max_iterations_reached"
    # the sensor now sees iteration 2 at max iterations and asks for the outcome, keyed once per campaign
    ctx = dg.build_sensor_context(instance=instance, definitions=defs)
    reqs = [r for r in evaluate_tick(ctx, store).run_requests if r.tags["campaign"] == "c-manual"]
    assert [r.run_key for r in reqs if r.job_name == "outcome_job"] == ["c-manual:outcome"]
    assert not [r for r in reqs if r.job_name == "iteration_job" and r.run_key == "c-manual:3"]
    job = defs.resolve_job_def("outcome_job")
    assert job.execute_in_process(instance=instance, partition_key="c-manual").success
    outcome = json.loads(store.path("c-manual", None, stages.OUTCOME).read_text())
    assert outcome["status"] == "max_iterations_reached" and outcome["iterations"] == 2
    assert not pid_alive(pid)


def test_iteration_without_predecessor_fails_fast_naming_it(env):
    instance, defs, store = env
    cfg = parse_config({})
    store.write_json("c-gap", None, stages.CONFIG, cfg)
    instance.add_dynamic_partitions("campaign", ["c-gap"])
    instance.add_dynamic_partitions("iteration", ["3"])
    res = defs.resolve_job_def("iteration_job").execute_in_process(
        instance=instance, partition_key=iteration_key("c-gap", 3), raise_on_error=False
    )
    assert not res.success
    failure = [e for e in res.all_events if e.is_step_failure][0]
    assert "the eval report of iteration 2 is missing" in failure.step_failure_data.error.cause.message


def test_launch_refuses_a_duplicate_campaign(env):
    instance, defs, store = env
    instance.add_dynamic_partitions("campaign", ["dup"])
    with pytest.raises(InputError, match="exists already"):
        driver.launch(instance, defs, store, parse_config({}), "dup")


def test_sensor_does_not_restart_a_campaign_that_was_driven_elsewhere(env):
    """A daemon whose sensor starts with an empty cursor must not re-run what `bcomc demo` already ran."""
    instance, defs, store = env
    cfg = parse_config({"target_pass_rate": 100, "max_iterations": 1,
                        "datagen": {"examples_per_service": 5}, "finetune": {"epochs": 1}})
    driver.launch(instance, defs, store, cfg, "c-driven")
    outcome = driver.drive(instance, defs, store, "c-driven", out=lambda s: None)
    assert outcome.status == "max_iterations_reached"
    fresh = evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs), store)
    assert not [r for r in fresh.run_requests if r.tags["campaign"] == "c-driven"]
    keys = {r.tags.get("dagster/run_key") for r in instance.get_runs()}
    assert {"c-driven:0", "c-driven:1", "c-driven:outcome"} <= keys  # what the daemon dedupes on
