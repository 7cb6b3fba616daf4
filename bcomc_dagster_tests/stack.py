"""The production stack on this machine, as real processes on loopback: a new PostgreSQL database for the
instance (deploy/dagster.yaml, unchanged), moto's S3 server for artifacts and compute logs, a Celery worker
on the local RabbitMQ for the default queue and one for the model's steps (queue `gpu`: fine-tune, deploy,
eval, as on a GPU host), and the Dagster daemon (sensor, run queue, run retries, backfills). The tests and
`benchmarks/production.py` share it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import dagster as dg
import psycopg2

from bcomc_dagster.serving.process import free_port

ROOT = Path(__file__).resolve().parent.parent
PG_HOST = os.environ.get("BCOMC_TEST_PG_HOST", "127.0.0.1")
PG_USER = os.environ.get("BCOMC_TEST_PG_USER", "postgres")
ARTIFACT_BUCKET, LOG_BUCKET = "bcomc-artifacts", "bcomc-logs"
CELERY = [sys.executable, "-m", "celery", "-A", "dagster_celery.app"]


class StackError(RuntimeError):
    """A service of the stack did not come up."""


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty database on the local server, dropped afterwards."""
    name = f"bcomc_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg2.connect(dbname="postgres", host=PG_HOST, user=PG_USER)
    except psycopg2.OperationalError as e:
        raise StackError(
            f"PostgreSQL at {PG_HOST}:5432 is not reachable ({e}); `make test` starts it when installed"
        ) from e
    admin.autocommit = True
    admin.cursor().execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@contextmanager
def s3_server(*buckets: str) -> Iterator[str]:
    """moto's S3 server in a process of its own (moto keeps its state per process, so each server starts
    empty); yields its URL with the buckets made."""
    port = free_port()
    with (
        tempfile.TemporaryDirectory() as tmp,
        service(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            os.environ.copy(),
            Path(tmp) / "moto.log",
            b"Running on",
        ),
    ):
        url = f"http://127.0.0.1:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        for b in buckets:
            client.create_bucket(Bucket=b)
        yield url


@contextmanager
def service(
    cmd: list[str], env: dict, log: Path, ready: bytes, timeout: float = 90
) -> Iterator[subprocess.Popen]:
    """A process in its own session, up once ``ready`` is in its log; its whole group is stopped after."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + timeout
            while ready not in log.read_bytes():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise StackError(f"{' '.join(cmd[:4])} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
            yield proc
        finally:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(timeout=30)
                    break
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    continue


@dataclass
class Stack:
    home: Path  # BCOMC_HOME: this machine's artifact folder (S3 holds the shared copy)
    dagster_home: Path
    env: dict[str, str]  # what every process of the stack runs with
    s3_url: str
    database: str
    worker: subprocess.Popen | None  # the default queue's
    gpu_worker: subprocess.Popen | None  # the `gpu` queue's

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.dagster_home))

    def s3(self):
        return boto3.client(
            "s3",
            endpoint_url=self.s3_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )


@contextmanager
def production_stack(
    tmp: Path, celery: bool = True, worker_concurrency: int = 2, extra_env: dict | None = None
) -> Iterator[Stack]:
    """Everything a team runs, on loopback; ``os.environ`` is this stack's while it is up, so that the
    caller's own instance and artifact store match the daemon's and the worker's."""
    with ExitStack() as stack:
        database = stack.enter_context(postgres_database())
        s3_url = stack.enter_context(s3_server(ARTIFACT_BUCKET, LOG_BUCKET))
        dagster_home, home = tmp / "dagster", tmp / "artifacts"
        dagster_home.mkdir(parents=True)
        shutil.copy(ROOT / "deploy" / "dagster.yaml", dagster_home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(dagster_home),
            "BCOMC_HOME": str(home),
            "DAGSTER_PG_USERNAME": PG_USER,
            "DAGSTER_PG_PASSWORD": "",
            "DAGSTER_PG_HOST": PG_HOST,
            "DAGSTER_PG_DB": database,
            "DAGSTER_COMPUTE_LOG_BUCKET": LOG_BUCKET,
            "BCOMC_S3_BUCKET": ARTIFACT_BUCKET,
            "AWS_ENDPOINT_URL": s3_url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "DAGSTER_CELERY_BROKER_HOST": "127.0.0.1",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            **(extra_env or {}),
        }
        if celery:
            env.update(BCOMC_EXECUTOR="celery", BCOMC_CELERY_GPU_QUEUE="gpu")
        saved = dict(os.environ)
        os.environ.update(env)
        stack.callback(lambda: (os.environ.clear(), os.environ.update(saved)))
        worker = gpu_worker = None
        if celery:
            subprocess.run(
                [*CELERY, "purge", "-f", "-Q", "dagster,gpu"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                timeout=60,
            )
            worker = stack.enter_context(
                service(
                    [
                        *CELERY,
                        "worker",
                        "--prefetch-multiplier=1",
                        "-Q",
                        "dagster",
                        "-n",
                        "cpu@%h",
                        "-c",
                        str(worker_concurrency),
                        "-l",
                        "info",
                    ],
                    env,
                    tmp / "worker.log",
                    b"ready.",
                )
            )
            gpu_worker = stack.enter_context(
                service(
                    [
                        *CELERY,
                        "worker",
                        "--prefetch-multiplier=1",
                        "-Q",
                        "gpu",
                        "-n",
                        "gpu@%h",
                        "-c",
                        "1",
                        "-l",
                        "info",
                    ],
                    env,
                    tmp / "gpu-worker.log",
                    b"ready.",
                )
            )
        with dg.DagsterInstance.from_config(str(dagster_home)):
            pass  # creates the schema once, before the daemon's threads race to
        stack.enter_context(
            service(
                ["dagster-daemon", "run", "-w", str(ROOT / "workspace.yaml")],
                env,
                tmp / "daemon.log",
                b"Checking for new runs for sensor",
            )
        )
        yield Stack(home, dagster_home, env, s3_url, database, worker, gpu_worker)


def wait_for(predicate, timeout: float, what: str, every: float = 2.0, log: Path | None = None):
    """Poll until ``predicate()`` is truthy; its value, or a failure that says what did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    tail = f"\n{log.read_text()[-4000:]}" if log and log.exists() else ""
    raise TimeoutError(f"{what} did not happen within {timeout:.0f} s{tail}")
