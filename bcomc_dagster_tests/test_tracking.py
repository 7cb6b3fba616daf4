"""MLflow tracking: a real campaign through Dagster, tracked on a real `mlflow server` on loopback, read
back with the MLflow client; the default local store; a tracker that is down fails no stage. The
campaign is the forms suite generated as the form-qa dataset type, so it is also that type's run end to
end."""

import json
import os
import re
import sys
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient
from mlflow.artifacts import download_artifacts

from bcomc_dagster import driver, tracking
from bcomc_dagster.artifacts import CONFIG, GENERATED, REPORT, ArtifactStore
from bcomc_dagster.config import TrackingConfig, parse_config
from bcomc_dagster.datagen import dataset
from bcomc_dagster.errors import InputError
from bcomc_dagster.serving.process import free_port
from bcomc_dagster_tests.stack import service

CAMPAIGN = "c-mlflow"


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    with service(cmd, env, root / "server.log", b"Uvicorn running on", timeout=120):
        yield f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def tracked(mlflow_server, tmp_path_factory):
    """A two-iteration form-qa campaign on bcomc-tiny, tracked on the server."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BCOMC_HOME", str(home))
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    store = ArtifactStore(home)
    cfg = parse_config(
        {
            "eval_suite": "forms",
            "target_pass_rate": 100,
            "max_iterations": 2,
            "datagen": {"examples_per_service": 10, "dataset_type": "form-qa"},
            "finetune": {"epochs": 6, "learning_rate": 0.003},
            # both checkpoints go live and the last stays live: it is the final model, registered
            "serving": {"promote": "always", "final_model": "last"},
            "tracking": {"uri": mlflow_server},
        }
    )
    try:
        with dg.instance_for_test() as instance:
            defs = driver.load_defs()
            driver.launch(instance, defs, store, cfg, CAMPAIGN)
            outcome = driver.drive(instance, defs, store, CAMPAIGN, out=lambda s: None)
            assert outcome is not None and outcome.status == "max_iterations_reached"
            yield store, MlflowClient(mlflow_server, mlflow_server), mlflow_server, instance, defs
    finally:
        mp.undo()


def _runs(client, exp_id):
    return client.search_runs([exp_id], max_results=100)


def test_a_campaign_is_one_experiment_with_a_run_per_iteration_on_a_real_server(tracked):
    store, client, uri, _, _ = tracked
    exp = client.get_experiment_by_name(f"bcomc/{CAMPAIGN}")
    assert exp is not None
    runs = _runs(client, exp.experiment_id)
    parent = [r for r in runs if r.data.tags["bcomc.role"] == "campaign"]
    children = {
        int(r.data.tags["bcomc.iteration"]): r for r in runs if r.data.tags["bcomc.role"] == "iteration"
    }
    assert len(parent) == 1 and sorted(children) == [0, 1, 2]
    top = parent[0]
    assert top.info.run_name == CAMPAIGN and top.info.status == "FINISHED"
    assert all(r.data.tags["mlflow.parentRunId"] == top.info.run_id for r in children.values())
    assert [children[i].info.run_name for i in (0, 1, 2)] == ["baseline", "iteration 1", "iteration 2"]

    # params: the config flattened, the base and its fingerprint
    p = top.data.params
    assert p["datagen.examples_per_service"] == "10" and p["max_iterations"] == "2"
    assert p["datagen.dataset_type"] == "form-qa" and p["eval_suite"] == "forms"
    assert (
        p["model_name"] == "bcomc-tiny" and p["base.fingerprint"] == store.deployment(CAMPAIGN, 0).fingerprint
    )
    man = store.manifest(CAMPAIGN, 2)
    assert children[2].data.params["base_fingerprint"] == man.base_fingerprint
    assert children[2].data.params["finetune.rank"] == str(man.settings.rank)

    # metrics: what the store's records say, per iteration
    for i, run in children.items():
        report = store.report(CAMPAIGN, i)
        m = run.data.metrics
        assert m["pass_rate"] == pytest.approx(report.pass_rate)
        assert m["decided_pass_rate"] == pytest.approx(report.decided_pass_rate)
        for name, result in report.results_by_service.items():
            assert m[f"pass_rate/{name}"] == pytest.approx(result.pass_rate)
    m2 = children[2].data.metrics
    quality = store.read_json(CAMPAIGN, 2, "dataset_quality.json", "q")
    assert m2["pairs_added"] == quality["added"] and m2["dataset_rows"] == quality["rows"]
    assert m2["delta"] == pytest.approx(store.report(CAMPAIGN, 2).improvement_delta)
    assert m2["tokens_per_second"] > 0 and m2["promoted"] == 1
    assert "cost_usd/eval" in m2 and "cost_usd/generate" in m2
    loss = client.get_metric_history(children[2].info.run_id, "train_loss")
    assert [(h.step, h.value) for h in loss] == [(s, pytest.approx(v)) for s, v in man.loss_curve]
    assert top.data.metrics["final_pass_rate"] == pytest.approx(store.outcome(CAMPAIGN).final_pass_rate)

    # artifacts: the iteration's records, the campaign's report page and effectiveness report
    names = {f.path for f in client.list_artifacts(children[2].info.run_id)}
    assert {"eval_report.json", "failure_analysis.json", "dataset_card.md", "promotion.json"} <= names
    got = download_artifacts(run_id=children[2].info.run_id, artifact_path=REPORT, tracking_uri=uri)
    logged = json.loads(Path(got).read_text())
    assert logged["run_id"] == store.report(CAMPAIGN, 2).run_id
    top_names = {f.path for f in client.list_artifacts(top.info.run_id)}
    assert {"report.html", "effectiveness.json", "outcome.json"} <= top_names


def test_a_form_qa_campaign_generates_form_answers_and_is_answered_in_them(tracked):
    store = tracked[0]
    titles = {"harbour-mooring": "Harbour Mooring Permit", "apiary": "Apiary Registration"}
    pairs = [p for i in (1, 2) for p in dataset.read_jsonl(store.path(CAMPAIGN, i, GENERATED))]
    assert pairs and all(
        p.answer.startswith(f"On {titles.get(p.service, '')}") for p in pairs if p.service in titles
    )
    # a field's answer names it, says where it is on the form and what it takes, as the table does
    fields = [p for p in pairs if "field (" in p.answer]
    assert fields and all(
        re.search(r" field \((Part|Section|Page|Box) [^)]+\) is \S", p.answer) for p in fields
    )
    gen = store.generation(CAMPAIGN, 1)
    assert gen is not None and all(gen.delivered[s] * 2 >= gen.asked[s] for s in gen.asked)
    # the checkpoint answers as form-qa taught it (how far it learns the facts: `bcomc demo --suite forms`)
    answers = [a.answer for a in store.report(CAMPAIGN, 2).answers]
    assert sum(a.startswith("On ") for a in answers) * 2 >= len(answers)


def test_each_promoted_adapter_is_a_model_and_the_final_one_a_registered_version(
    tracked, tmp_path, monkeypatch
):
    store, client, uri, _, _ = tracked
    exp = client.get_experiment_by_name(f"bcomc/{CAMPAIGN}")
    models = client.search_logged_models([exp.experiment_id])
    assert sorted(m.name for m in models) == [f"{CAMPAIGN}-it1", f"{CAMPAIGN}-it2"]
    versions = client.search_model_versions(f"name='{CAMPAIGN}'")
    assert len(versions) == 1
    v = versions[0]
    final = store.outcome(CAMPAIGN).final_iteration
    assert final == 2 and v.tags["bcomc.iteration"] == "2"
    assert client.get_run(v.run_id).data.tags["bcomc.iteration"] == "2"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # as a user reads it: the registry is the tracking server
    got = Path(download_artifacts(f"models:/{CAMPAIGN}/{v.version}", dst_path=str(tmp_path)))
    adapter = store.checkpoint(CAMPAIGN, 2) / "adapter"
    assert (got / "adapter_model.safetensors").read_bytes() == (
        adapter / "adapter_model.safetensors"
    ).read_bytes()


def test_sync_again_changes_nothing_and_a_rerun_iteration_replaces_its_run(tracked):
    store, client, _, _, _ = tracked
    exp = client.get_experiment_by_name(f"bcomc/{CAMPAIGN}").experiment_id
    before = {r.info.run_id for r in _runs(client, exp)}
    again = tracking.sync(store, CAMPAIGN, print)
    assert again is not None and {r.info.run_id for r in _runs(client, exp)} == before
    assert len(client.search_model_versions(f"name='{CAMPAIGN}'")) == 1  # registered once

    # iteration 1 re-evaluated (as a backfill does): its run is replaced, the others are kept
    report = store.read_json(CAMPAIGN, 1, REPORT, "r")
    old = again.iteration_runs[1]
    store.write_json(CAMPAIGN, 1, REPORT, {**report, "run_id": report["run_id"] + "-rerun"})
    after = tracking.sync(store, CAMPAIGN, print)
    assert after is not None and after.iteration_runs[1] != old
    assert {after.iteration_runs[i] for i in (0, 2)} == {again.iteration_runs[i] for i in (0, 2)}
    active = {
        int(r.data.tags["bcomc.iteration"]) for r in _runs(client, exp) if "bcomc.iteration" in r.data.tags
    }
    assert len([r for r in _runs(client, exp)]) == len(before) and active == {0, 1, 2}
    assert client.get_run(old).info.lifecycle_stage == "deleted"
    store.write_json(CAMPAIGN, 1, REPORT, report)


def test_the_default_local_store_under_the_campaign_home(tracked):
    store, _, _, _, _ = tracked
    cfg = store.config(CAMPAIGN)
    local = cfg.model_copy(update={"tracking": TrackingConfig(enabled=True)})
    got = tracking.sync(store, CAMPAIGN, print, local)
    db = store.root / "mlflow" / "mlflow.db"
    assert got is not None and got.uri == f"sqlite:///{db}" and db.is_file()
    client = MlflowClient(got.uri)
    exp = client.get_experiment_by_name(f"bcomc/{CAMPAIGN}")
    assert exp.artifact_location.startswith((store.root / "mlflow" / "artifacts").as_uri())
    assert len(client.search_runs([exp.experiment_id])) == 4
    assert client.get_registered_model(CAMPAIGN).latest_versions or client.search_model_versions(
        f"name='{CAMPAIGN}'"
    )


def test_a_tracker_that_is_down_fails_no_stage_and_says_so_once(tracked):
    store, _, _, instance, defs = tracked
    path = store.path(CAMPAIGN, None, CONFIG)
    kept = path.read_text()
    down = f"http://127.0.0.1:{free_port()}"
    data = json.loads(kept)
    data["tracking"] = {**data["tracking"], "uri": down, "request_retries": 0, "request_timeout_s": 2}
    path.write_text(json.dumps(data))
    try:
        lines = []
        assert tracking.sync(store, CAMPAIGN, lines.append) is None
        assert len(lines) == 1 and down in lines[0] and "goes on" in lines[0]
        job = defs.resolve_implicit_global_asset_job_def().get_subset(
            asset_selection={dg.AssetKey("campaign_report")}
        )
        res = job.execute_in_process(instance=instance, partition_key=CAMPAIGN)
        assert res.success  # the report page is written; tracking said why it logged nothing
        warned = [
            e.message
            for e in instance.all_logs(res.run_id)
            if e.level >= 30 and "tracking: MLflow" in (e.message or "")
        ]
        assert len(warned) == 1
    finally:
        path.write_text(kept)


def test_tracking_is_decided_at_launch_from_the_config_or_mlflow_tracking_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    on = parse_config({}).resolved().tracking
    assert on.enabled and on.uri == f"sqlite:///{tmp_path / 'mlflow.db'}"  # absolute: a daemon runs elsewhere
    off = parse_config({"tracking": {"enabled": False}}).resolved().tracking
    assert not off.enabled
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert not parse_config({}).resolved().tracking.enabled
    local = parse_config({"tracking": {"enabled": True}}).resolved().tracking
    assert local.enabled and local.uri is None  # the local store under the campaign home
    with pytest.raises(InputError, match="tracking.uri"):
        parse_config({"tracking": {"uri": "mlflow.example"}})
    with pytest.raises(InputError, match="tracking.colour: unknown key"):
        parse_config({"tracking": {"colour": "blue"}})
