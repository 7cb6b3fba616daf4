"""Whole campaigns through Dagster: a real instance, the sensor ticked with build_sensor_context, real
training and a real vLLM server, as `bcomc demo` runs them."""

import json

import dagster as dg
import pytest

from bcomc_dagster import campaign_state, driver, stages
from bcomc_dagster.artifacts import ANALYSIS, CONFIG, DATASET, DEPLOYMENT, REPORT, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.datagen import dataset
from bcomc_dagster.defs.partitions import iteration_key
from bcomc_dagster.errors import BcomcError, InputError
from bcomc_dagster.serving.deployer import Deployment

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
    """model_backend vllm in hot-swap mode (the demo runs the same path as model_backend 'local')."""
    instance, defs, store = env
    cfg = parse_config(
        {
            "model_backend": "vllm",
            "serving": {"mode": "hot-swap"},
            "target_pass_rate": 60,
            "max_iterations": 4,
            "datagen": FAST,
            "finetune": TRAIN,
        }
    )
    driver.launch(instance, defs, store, cfg, "c-target")
    outcome = driver.drive(instance, defs, store, "c-target", out=lambda s: None)
    assert outcome.status == "target_reached" and outcome.iterations == 2
    assert outcome.pass_rates[0] <= 20 and outcome.pass_rates[2] >= 60
    assert outcome.servers_stopped and stages.deployer(store, cfg, "c-target").state() is None
    # every asset of both iterations materialised, with the metadata users look for
    for i in (1, 2):
        key = iteration_key("c-target", i)
        for asset in (
            "failure_analysis",
            "generated_examples",
            "training_dataset",
            "checkpoint",
            "deployment",
            "eval_report",
        ):
            assert _materialised(instance, asset, key), (asset, i)
    deps = [Deployment.model_validate(store.read_json("c-target", i, DEPLOYMENT, "d")) for i in (1, 2)]
    assert [d.mode for d in deps] == ["hot-swap", "hot-swap"] and len(
        {d.endpoint for d in deps}
    ) == 1  # one server
    report = _materialised(instance, "eval_report", iteration_key("c-target", 2))[
        0
    ].asset_materialization.metadata
    assert report["improvement_delta"].value > 0 and "| service" in report["per_service"].value
    ds1 = dataset.read_jsonl(store.path("c-target", 1, DATASET))
    ds2 = dataset.read_jsonl(store.path("c-target", 2, DATASET))
    assert [r.id for r in ds2[: len(ds1)]] == [r.id for r in ds1] and len(ds2) > len(ds1)  # cumulative
    assert not campaign_state.contamination(store, "c-target", 2)

    # re-materialising an iteration's dataset adds no duplicate rows, and the sensor does not advance twice
    job = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={dg.AssetKey("training_dataset")}
    )
    res = job.execute_in_process(instance=instance, partition_key=iteration_key("c-target", 2))
    assert res.success
    again = dataset.read_jsonl(store.path("c-target", 2, DATASET))
    assert [r.id for r in again] == [r.id for r in ds2] and len({r.id for r in again}) == len(again)


def test_iteration_without_predecessor_fails_fast_naming_it(env):
    instance, defs, store = env
    cfg = parse_config({})
    store.write_json("c-gap", None, CONFIG, cfg)
    instance.add_dynamic_partitions("campaign", ["c-gap"])
    instance.add_dynamic_partitions("iteration", ["3"])
    res = defs.resolve_job_def("iteration_job").execute_in_process(
        instance=instance, partition_key=iteration_key("c-gap", 3), raise_on_error=False
    )
    assert not res.success
    failure = [e for e in res.all_events if e.is_step_failure][0]
    assert "the eval report of iteration 2 is missing" in failure.step_failure_data.error.cause.message


def test_backfill_iteration_ahead_of_an_earlier_one_fails_fast_naming_it(env):
    """An asset backfill may start iteration 2 while iteration 1 of the same backfill still waits in the
    queue: iteration 2 must not read what iteration 1 is about to replace."""
    instance, defs, store = env
    store.write_json("c-bf", None, CONFIG, parse_config({}))
    instance.add_dynamic_partitions("campaign", ["c-bf"])
    instance.add_dynamic_partitions("iteration", ["1", "2"])
    tags = {"dagster/backfill": "bf1", "dagster/partition/campaign": "c-bf"}
    job = defs.resolve_job_def("iteration_job")
    for it, bf, status in (
        ("1", "bf1", dg.DagsterRunStatus.NOT_STARTED),
        ("1", "other", dg.DagsterRunStatus.NOT_STARTED),
        ("3", "bf1", dg.DagsterRunStatus.NOT_STARTED),
        ("1", "bf1", dg.DagsterRunStatus.FAILURE),
    ):
        instance.create_run_for_job(
            job, tags={**tags, "dagster/backfill": bf, "dagster/partition/iteration": it}, status=status
        )
    res = job.execute_in_process(
        instance=instance,
        partition_key=iteration_key("c-bf", 2),
        raise_on_error=False,
        tags={**tags, "dagster/partition/iteration": "2"},
    )
    failure = [e for e in res.all_events if e.is_step_failure][0]
    assert failure.step_key == "failure_analysis"
    assert "iteration 1 of the same backfill has not run yet" in failure.step_failure_data.error.cause.message
    assert not store.path("c-bf", 2, ANALYSIS).exists()


def test_launch_refuses_a_duplicate_campaign(env):
    instance, defs, store = env
    instance.add_dynamic_partitions("campaign", ["dup"])
    with pytest.raises(InputError, match="exists already"):
        driver.launch(instance, defs, store, parse_config({}), "dup")


def test_restart_mode_campaign_reaches_its_outcome_and_leaves_the_base_live(env):
    """model_backend vllm, mode restart: each iteration starts a server on the merged checkpoint;
    serving.final_model 'base' puts the base model back at the end."""
    instance, defs, store = env
    cfg = parse_config(
        {
            "model_backend": "vllm",
            "target_pass_rate": 30,
            "max_iterations": 2,
            "datagen": FAST,
            "finetune": TRAIN,
            "serving": {"mode": "restart", "final_model": "base", "stop_at_end": False},
        }
    )
    driver.launch(instance, defs, store, cfg, "c-restart")
    outcome = driver.drive(instance, defs, store, "c-restart", out=lambda s: None)
    dep = stages.deployer(store, cfg, "c-restart")
    try:
        assert outcome.status == "target_reached" and outcome.pass_rates[outcome.iterations] >= 30
        deployments = [
            Deployment.model_validate(store.read_json("c-restart", i, DEPLOYMENT, "d"))
            for i in range(1, outcome.iterations + 1)
        ]
        assert all(d.mode == "restart" and d.server_started for d in deployments)
        assert len({d.endpoint for d in deployments}) == len(deployments)  # a new server each time
        assert outcome.final_model == "base" and outcome.final_iteration == 0 and not outcome.servers_stopped
        assert outcome.live_model == "bcomc-tiny" and dep.live().iteration == 0
        md = _materialised(instance, "campaign_outcome", "c-restart")[0].asset_materialization.metadata
        assert md["live_model"].value == "bcomc-tiny" and md["final_model"].value == "base (iteration 0)"
    finally:
        dep.stop()


def test_failed_deploy_and_failed_reeval_leave_the_previous_model_serving(env, monkeypatch, tmp_path, capsys):
    from bcomc_dagster import cli
    from bcomc_dagster.errors import ServingError
    from bcomc_dagster.serving.server import ServerDeployer

    instance, defs, store = env
    cfg = parse_config(
        {
            "target_pass_rate": 100,
            "max_iterations": 2,
            "auto_advance": False,
            "datagen": {"examples_per_service": 10},
            "finetune": {"epochs": 2, "learning_rate": 0.003},
            "serving": {"stop_at_end": False},
        }
    )
    driver.launch(instance, defs, store, cfg, "c-fail")
    driver.drive(instance, defs, store, "c-fail", out=lambda s: None)
    dep = stages.deployer(store, cfg, "c-fail")
    try:
        # 1. the deploy fails: re-eval never runs, the base stays live, the failure is recorded
        def refuse(self, *a, **k):
            raise ServingError("load refused by the server")

        real_deploy = ServerDeployer.deploy
        monkeypatch.setattr(ServerDeployer, "deploy", refuse)
        with pytest.raises(BcomcError, match="iteration 1 failed"):
            driver.advance(instance, defs, store, "c-fail", out=lambda s: None)
        assert not _materialised(instance, "eval_report", iteration_key("c-fail", 1))
        assert dep.live().model == "bcomc-tiny"
        assert campaign_state.last_failure(store, "c-fail").stage == "deploy"
        monkeypatch.setattr(ServerDeployer, "deploy", real_deploy)

        # 2. the deploy works, the re-eval fails: the previous model (the base) is served again
        def vanish(*a, **k):
            raise RuntimeError("endpoint vanished mid-eval")

        real_run_suite = stages.run_suite
        monkeypatch.setattr(stages, "run_suite", vanish)
        with pytest.raises(BcomcError, match="iteration 1 failed"):
            driver.advance(instance, defs, store, "c-fail", out=lambda s: None)
        assert _materialised(instance, "deployment", iteration_key("c-fail", 1))
        assert not store.path("c-fail", 1, REPORT).exists()
        failure = campaign_state.last_failure(store, "c-fail")
        assert failure.stage == "re-eval" and failure.restored == "bcomc-tiny" and "vanished" in failure.error
        assert dep.live().model == "bcomc-tiny" and dep.live().iteration == 0
        models = [m["id"] for m in __import__("httpx").get(f"{dep.state().url}/v1/models").json()["data"]]
        assert models == ["bcomc-tiny"]  # the failed iteration's adapter was unloaded

        # `bcomc status` says so, in JSON and as a table
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dh"))
        capsys.readouterr()  # drop the runs' progress lines
        assert cli.main(["status", "c-fail", "--json"]) == 0
        row = json.loads(capsys.readouterr().out)[0]
        assert row["status"] == "failed" and row["failure"].startswith(
            "iteration 1 re-eval: endpoint vanished"
        )
        assert row["live"] == "bcomc-tiny (it 0)" and row["endpoint"].endswith("/v1")
        assert cli.main(["status", "c-fail"]) == 0
        table = capsys.readouterr().out
        assert "failed" in table and "c-fail: failed at iteration 1 re-eval" in table

        # 3. deploy and re-eval work, but the checkpoint does not beat the base (2 epochs on 10 pairs a
        # service): the promotion gate rejects it, the base is served again, and the loop knows
        monkeypatch.setattr(stages, "run_suite", real_run_suite)
        driver.advance(instance, defs, store, "c-fail", out=lambda s: None)
        gate = store.promotion("c-fail", 1)
        assert not gate.promoted and gate.live_iteration == 0 and gate.restored == "bcomc-tiny"
        assert gate.reason.startswith(
            "rejected: pass rate 0.0% does not beat the live model's 0.0% (iteration 0)"
        )
        assert dep.live().model == "bcomc-tiny" and dep.live().iteration == 0
        models = [m["id"] for m in __import__("httpx").get(f"{dep.state().url}/v1/models").json()["data"]]
        assert models == ["bcomc-tiny"]  # the rejected adapter is gone: the endpoint serves the base alone
        md = _materialised(instance, "eval_report", iteration_key("c-fail", 1))[
            0
        ].asset_materialization.metadata
        assert md["promoted"].value is False and "does not beat" in md["promotion"].value
        assert (
            campaign_state.live_iteration(store, "c-fail", 1) == 0
            and campaign_state.last_failure(store, "c-fail") is None
        )
    finally:
        dep.stop()
