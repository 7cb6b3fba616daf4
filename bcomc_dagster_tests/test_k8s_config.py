"""The Kubernetes deployment's config, validated by Dagster and dagster-k8s themselves: the instance with
its K8sRunLauncher, the step executor's run config against the iteration job, the GPU requests of the
fine-tune and deploy steps, and the manifests' shape."""

from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.job import get_user_defined_k8s_config

from bcomc_dagster.definitions import defs
from bcomc_dagster.defs import jobs

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"


@pytest.fixture
def env(monkeypatch):
    for k in (
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_DB",
        "DAGSTER_COMPUTE_LOG_BUCKET",
    ):
        monkeypatch.setenv(k, "x")


def test_the_k8s_instance_and_its_run_launcher_validate(env):
    cfg, _ = dagster_instance_config(str(K8S))
    launcher = cfg["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    assert (
        result.value["instance_config_map"] == "dagster-instance" and result.value["job_namespace"] == "bcomc"
    )
    assert cfg["run_retries"]["enabled"] and not cfg["run_retries"]["retry_on_asset_or_op_failure"]


def test_the_step_executor_run_config_validates_against_the_iteration_job(monkeypatch):
    monkeypatch.setenv("BCOMC_EXECUTOR", "k8s")
    assert jobs.step_executor() is k8s_job_executor
    job = dg.define_asset_job(
        "iteration_k8s", selection=jobs.iteration_job.selection, executor_def=k8s_job_executor
    )
    resolved = dg.Definitions.merge(defs(), dg.Definitions(jobs=[job])).resolve_job_def("iteration_k8s")
    run_config = yaml.safe_load((K8S / "run_config.yaml").read_text())
    assert dg.validate_run_config(resolved, run_config)["execution"]["k8s"]["job_namespace"] == "bcomc"
    with pytest.raises(dg.DagsterInvalidConfigError, match="max_concurent"):
        dg.validate_run_config(resolved, {"execution": {"config": {"max_concurent": 4}}})


def test_fine_tune_and_deploy_steps_ask_for_a_gpu():
    graph = defs().resolve_asset_graph()
    for asset in ("checkpoint", "deployment"):
        op_tags = graph.get(dg.AssetKey(asset)).assets_def.op.tags
        k8s = get_user_defined_k8s_config(op_tags)
        assert k8s.container_config["resources"]["limits"] == {"nvidia.com/gpu": "1"}, asset
    assert not get_user_defined_k8s_config(
        graph.get(dg.AssetKey("generated_examples")).assets_def.op.tags
    ).container_config
    # on Celery the model's steps go to one queue (BCOMC_CELERY_GPU_QUEUE; the default queue when unset)
    model_steps = {"baseline_eval", "checkpoint", "deployment", "eval_report", "campaign_outcome"}
    for key in graph.get_all_asset_keys():
        queue = graph.get(key).assets_def.op.tags.get("dagster-celery/queue")
        assert queue == ("dagster" if key.path[-1] in model_steps else None), key


def test_manifests_declare_the_services():
    docs = list(yaml.safe_load_all((K8S / "dagster.k8s.yaml").read_text()))
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Deployment", "bcomc-user-code"),
        ("Deployment", "dagster-webserver"),
        ("Deployment", "dagster-daemon"),
        ("Service", "bcomc-user-code"),
        ("ConfigMap", "bcomc-env"),
        ("ConfigMap", "dagster-workspace"),
    } <= kinds
    daemon = next(d for d in docs if d["metadata"]["name"] == "dagster-daemon")
    assert daemon["spec"]["replicas"] == 1  # one daemon: sensor, run queue, backfills
    workspace = yaml.safe_load(
        next(d for d in docs if d["metadata"]["name"] == "dagster-workspace")["data"]["workspace.yaml"]
    )
    assert workspace["load_from"][0]["grpc_server"]["port"] == 4000
    env = next(d for d in docs if d["metadata"]["name"] == "bcomc-env")["data"]
    assert env["BCOMC_S3_BUCKET"]  # artifacts in S3, so that every pod finds them
