"""The production instance (deploy/dagster.yaml) on the PostgreSQL server of this machine: the config
validates, and a campaign runs to its outcome on it with the sensor, its runs and events in PostgreSQL.
`make test` starts PostgreSQL when it is installed and stopped."""

import shutil
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

from bcomc_dagster import driver
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import parse_config

from .stack import PG_HOST, PG_USER, StackError, postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parent.parent
PG = {"host": PG_HOST, "user": PG_USER}


@pytest.fixture
def database():
    """A new, empty database on the local server, dropped afterwards."""
    try:
        with postgres_database() as name:
            yield name
    except StackError as e:
        pytest.fail(str(e))


@pytest.fixture
def pg_env(database, monkeypatch):
    for k, v in {
        "DAGSTER_PG_USERNAME": PG["user"],
        "DAGSTER_PG_PASSWORD": "",
        "DAGSTER_PG_HOST": PG["host"],
        "DAGSTER_PG_DB": database,
        "DAGSTER_COMPUTE_LOG_BUCKET": "bcomc-logs",
    }.items():
        monkeypatch.setenv(k, v)
    return database


def test_the_production_config_validates(pg_env, tmp_path):
    shutil.copy(ROOT / "deploy" / "dagster.yaml", tmp_path / "dagster.yaml")
    cfg, _ = dagster_instance_config(str(tmp_path))
    assert cfg["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    limits = cfg["concurrency"]["runs"]["tag_concurrency_limits"]
    per_value = {"applyLimitPerUniqueValue": True}
    assert limits == [
        {"key": "campaign", "value": per_value, "limit": 1},
        {"key": "dagster/partition/campaign", "value": per_value, "limit": 1},
    ]
    assert cfg["concurrency"]["pools"] == {"granularity": "op", "default_limit": 1}
    # lost workers are retried by the daemon; a stage's own error is not
    assert cfg["run_retries"] == {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": False}


def test_campaign_runs_to_its_outcome_on_postgres(pg_env, tmp_path, monkeypatch):
    home = tmp_path / "dagster"
    home.mkdir()
    config = yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())
    config.pop("compute_logs")  # S3 compute logs are another test's; the rest is the production file
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("BCOMC_HOME", str(tmp_path / "artifacts"))
    cfg = parse_config(
        {
            "target_pass_rate": 100,
            "max_iterations": 1,
            "datagen": {"examples_per_service": 5},
            "finetune": {"epochs": 1},
        }
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        store = ArtifactStore(tmp_path / "artifacts")
        defs = driver.load_defs()
        driver.launch(instance, defs, store, cfg, "c-pg")
        outcome = driver.drive(instance, defs, store, "c-pg", out=lambda s: None)
        assert outcome.status == "max_iterations_reached" and outcome.iterations == 1
        run_keys = {r.tags.get("dagster/run_key") for r in instance.get_runs()}
        assert {"c-pg:0", "c-pg:1", "c-pg:outcome"} <= run_keys
        assert store.report("c-pg", 1).model
    with psycopg2.connect(dbname=pg_env, **PG) as conn, conn.cursor() as cur:  # the records are in PostgreSQL
        cur.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cur.fetchone()[0] == 4  # campaign_config, baseline, iteration 1, outcome + report
        cur.execute(
            "SELECT count(*) FROM event_logs"
            " WHERE asset_key = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            ('["eval_report"]',),
        )
        assert cur.fetchone()[0] == 1
