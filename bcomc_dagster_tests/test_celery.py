"""Generation steps as tasks on a real Celery worker (dagster-celery, RabbitMQ on loopback as broker):
BCOMC_EXECUTOR=celery, a persistent instance that worker and submitter share, and the cumulative dataset
free of duplicates afterwards."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from bcomc_dagster.artifacts import CONFIG, DATASET, REPORT, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.datagen import dataset

from .test_effectiveness import report

pytestmark = [pytest.mark.slow, pytest.mark.celery]
ROOT = Path(__file__).resolve().parent.parent
BROKER = "pyamqp://guest@127.0.0.1:5672//"
SUBMIT = """
import json, os, sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
cwd = os.getcwd()
repo = ReconstructableRepository.for_module("bcomc_dagster.definitions", "defs", working_directory=cwd)
job = repo.get_reconstructable_job("iteration_job")
campaign, it = sys.argv[1], sys.argv[2]
with dg.DagsterInstance.get() as instance:
    tags = {"dagster/partition": f"{campaign}|{it}", "dagster/partition/campaign": campaign,
            "dagster/partition/iteration": it}
    assets = [dg.AssetKey(a) for a in ("failure_analysis", "generated_examples", "training_dataset")]
    res = dg.execute_job(job, instance, run_config={"execution": {"config": {"broker": sys.argv[3]}}},
                         tags=tags, asset_selection=assets)
    print(json.dumps({"success": res.success, "run_id": res.run_id}))
"""


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    e = {
        **os.environ,
        "BCOMC_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "BCOMC_EXECUTOR": "celery",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    return home, e


@pytest.fixture
def worker(env):
    home, e = env
    celery = [sys.executable, "-m", "celery", "-A", "dagster_celery.app"]
    subprocess.run(
        [*celery, "purge", "-f", "-Q", "dagster"], cwd=ROOT, env=e, capture_output=True, timeout=60
    )  # no stale tasks
    log = open(home / "worker.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [*celery, "worker", "-Q", "dagster", "-c", "2", "-l", "info"],
        cwd=ROOT,
        env=e,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while b"ready." not in (home / "worker.log").read_bytes():
        if time.monotonic() > deadline or proc.poll() is not None:
            pytest.fail(f"the Celery worker did not start:\n{(home / 'worker.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    log.close()


def test_generation_steps_run_on_a_celery_worker(env, worker):
    home, e = env
    store = ArtifactStore(home)
    store.write_json(
        "cc", None, CONFIG, parse_config({"datagen": {"examples_per_service": 5}, "finetune": {"epochs": 3}})
    )
    store.write_json(
        "cc", 0, REPORT, report({s: 0 for s in ("brambledb", "cindervault", "driftkey", "ferrocache")})
    )
    with dg.DagsterInstance.from_config(e["DAGSTER_HOME"]) as instance:
        instance.add_dynamic_partitions("campaign", ["cc"])
        instance.add_dynamic_partitions("iteration", ["1"])
    out = subprocess.run(
        [sys.executable, "-c", SUBMIT, "cc", "1", BROKER],
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = __import__("json").loads(out.stdout.strip().splitlines()[-1])
    assert result["success"]
    with dg.DagsterInstance.from_config(e["DAGSTER_HOME"]) as instance:
        messages = [x.user_message or "" for x in instance.all_logs(result["run_id"])]
    for step in ("failure_analysis", "generated_examples", "training_dataset"):
        assert f'Submitting celery task for step "{step}" to queue "dagster".' in messages, step
        assert any(f'Finished execution of step "{step}"' in m for m in messages), step
    assert b"Task execute_plan" in (home / "worker.log").read_bytes()  # the worker process ran them
    rows = dataset.read_jsonl(store.path("cc", 1, DATASET))
    assert len(rows) == 20 and len({r.id for r in rows}) == len(rows)  # 4 services x 5 pairs, no duplicates
