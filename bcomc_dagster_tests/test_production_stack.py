"""Campaigns driven by the Dagster daemon on the production stack (see stack.py): PostgreSQL instance
storage, artifacts and compute logs in S3, every step a task on a Celery worker. Two campaigns run side by
side; one of them loses its worker in the middle of generation and Dagster retries the run; then a
backfill of iterations 1-2 re-runs them in order without advancing the campaign again."""

import subprocess
import time

import dagster as dg
import psutil
import pytest
from dagster._core.storage.tags import PARENT_RUN_ID_TAG, RETRY_NUMBER_TAG

from bcomc_dagster import driver
from bcomc_dagster.artifacts import DATASET, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.datagen import dataset
from bcomc_dagster.s3_mirror import S3Mirror

from .fakes import serve
from .fakes.llm import FakeLLM
from .stack import ARTIFACT_BUCKET, LOG_BUCKET, ROOT, production_stack, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.server, pytest.mark.postgres, pytest.mark.celery]
SMALL = {"target_pass_rate": 100, "finetune": {"epochs": 1}}
A, B = "team-a", "team-b"


@pytest.fixture(scope="module")
def fake():
    llm = FakeLLM(latency_s=0.4)  # slow enough that the worker can be killed in the middle of generation
    with serve(llm.app()) as url:
        yield llm, url


@pytest.fixture(scope="module")
def stack(tmp_path_factory, fake):
    with production_stack(tmp_path_factory.mktemp("stack")) as s:
        yield s
        for serving in s.home.glob("campaigns/*/serving"):  # servers the campaigns left running (recorded)
            from bcomc_dagster.serving.process import stop_recorded

            stop_recorded(serving)


def _runs(instance, campaign):
    return instance.get_runs(dg.RunsFilter(tags={"dagster/partition/campaign": campaign}))


def _windows(instance, runs):
    out = []
    for r in runs:
        st = instance.get_run_stats(r.run_id)
        out.append((st.launch_time or st.start_time, st.end_time, r))
    return sorted(out, key=lambda w: w[0])


def _outcome(store, campaign):
    return store.outcome(campaign)


def _kill_generation_worker(fake, port: int, stack) -> None:
    """Once generation has made a few calls, SIGKILL the Celery pool process making them."""
    wait_for(
        lambda: sum(c.tool == "qa_pair" for c in fake.calls) >= 4,
        600,
        "team-b's generation",
        every=0.1,
        log=stack.dagster_home.parent / "worker.log",
    )
    for child in psutil.Process(stack.worker.pid).children(recursive=True):
        if any(c.raddr and c.raddr.port == port for c in child.net_connections(kind="tcp")):
            child.kill()
            return
    pytest.fail("no Celery pool process was talking to the generator")


def test_two_campaigns_side_by_side_and_a_killed_worker_is_retried(stack, fake):
    llm, url = fake
    store = ArtifactStore(stack.home)
    cfg_a = parse_config({**SMALL, "max_iterations": 2, "datagen": {"examples_per_service": 5}})
    cfg_b = parse_config(
        {
            **SMALL,
            "max_iterations": 1,
            "llm": {"providers": {"bedrock": {"base_url": url}}},
            "datagen": {
                "examples_per_service": 5,
                "concurrency": 2,
                "generator_backend": "bedrock",
                "generator_model": "claude-3-5-haiku",
            },
        }
    )
    with stack.instance() as instance:
        defs = driver.load_defs()
        t0 = time.monotonic()
        driver.launch(instance, defs, store, cfg_a, A)  # the daemon's sensor drives both from here
        driver.launch(instance, defs, store, cfg_b, B)
        _kill_generation_worker(llm, int(url.rsplit(":", 1)[1]), stack)
        wait_for(
            lambda: _outcome(store, A) and _outcome(store, B),
            1200,
            "both outcomes",
            log=stack.dagster_home.parent / "daemon.log",
        )
        print(f"two campaigns on Postgres + S3 + Celery, through the daemon: {time.monotonic() - t0:.0f} s")

        assert _outcome(store, A).status == "max_iterations_reached" and _outcome(store, A).iterations == 2
        assert _outcome(store, B).status == "max_iterations_reached" and _outcome(store, B).iterations == 1
        # each campaign's runs one at a time (the queue's per-campaign limit), while the two overlapped
        windows = {c: _windows(instance, _runs(instance, c)) for c in (A, B)}
        for c, w in windows.items():
            for (_, end, r), (start, _, nxt) in zip(w, w[1:], strict=False):
                assert end <= start, f"{c}: {r.run_id} and {nxt.run_id} overlapped"
        assert windows[A][0][0] < windows[B][-1][1] and windows[B][0][0] < windows[A][-1][1]

        # the killed step: its run failed, the daemon retried it from the failure, and the retry succeeded
        b1 = [r for _, _, r in windows[B] if r.tags.get("dagster/partition") == f"{B}|1"]
        failed = [r for r in b1 if r.status == dg.DagsterRunStatus.FAILURE]
        assert len(failed) == 1, [(r.run_id, r.status) for r in b1]
        retry = next(r for r in b1 if r.tags.get(PARENT_RUN_ID_TAG) == failed[0].run_id)
        assert retry.status == dg.DagsterRunStatus.SUCCESS and retry.tags[RETRY_NUMBER_TAG] == "1"
        assert failed[0].tags["dagster/failure_reason"] == "RUN_EXCEPTION"  # not a stage's error: retried
        failure = next(
            e
            for e in instance.all_logs(failed[0].run_id)
            if e.is_dagster_event and e.dagster_event.is_run_failure
        )
        lost = failure.dagster_event.event_specific_data.error.to_string()
        assert "[generated_examples]" in lost and "WorkerLostError" in lost and "SIGKILL" in lost, lost[
            -2000:
        ]
        started = [
            e.step_key
            for e in instance.all_logs(retry.run_id)
            if e.is_dagster_event and e.dagster_event.is_step_start
        ]
        assert "generated_examples" in started and "failure_analysis" not in started  # from the failure on
        # ...and the dataset holds each pair once
        rows = dataset.read_jsonl(store.path(B, 1, DATASET))
        assert rows and len({r.id for r in rows}) == len(rows)
        assert len({(r.service, r.question) for r in rows}) == len(rows)
        assert {r.provenance.model for r in rows} == {"bedrock:anthropic.claude-3-5-haiku-20241022-v1:0"}

        # artifacts kept apart, here and in the bucket
        rows_a = dataset.read_jsonl(store.path(A, 2, DATASET))
        assert {r.provenance.campaign for r in rows_a} == {A} and {r.provenance.campaign for r in rows} == {B}
        keys = [o["Key"] for o in stack.s3().list_objects_v2(Bucket=ARTIFACT_BUCKET)["Contents"]]
        assert {k.split("/")[1] for k in keys} == {A, B}
        assert (
            f"bcomc/{A}/2/checkpoint/manifest.json" in keys and f"bcomc/{B}/1/training_dataset.jsonl" in keys
        )
        # the model's steps ran on the `gpu` queue's worker, the rest on the default queue's
        queues = {}
        for e in instance.all_logs(retry.run_id):
            if e.is_dagster_event and (m := (e.message or "")).startswith("Submitting celery task for step"):
                queues[e.step_key] = m.rsplit('"', 2)[1]
        expected = {
            "generated_examples": "dagster",
            "training_dataset": "dagster",
            "checkpoint": "gpu",
            "deployment": "gpu",
            "eval_report": "gpu",
        }
        assert {k: v for k, v in queues.items() if k in expected} == expected, queues
        assert (stack.dagster_home.parent / "gpu-worker.log").read_text().count("succeeded in") >= 3 * 3
        # compute logs went to S3
        logs = (
            stack.s3().list_objects_v2(Bucket=LOG_BUCKET, Prefix="dagster/compute-logs/").get("KeyCount", 0)
        )
        assert logs > 0


def test_backfill_of_iterations_reruns_them_in_order_without_advancing(stack):
    store = ArtifactStore(stack.home)
    with stack.instance() as instance:
        before = {r.run_id for r in instance.get_runs()}
        old = {i: store.path(A, i, DATASET).stat().st_mtime for i in (1, 2)}
        # partitions given out of order: the job backfill submits them in iteration order
        out = subprocess.run(
            [
                "dagster",
                "job",
                "backfill",
                "-w",
                str(ROOT / "workspace.yaml"),
                "-j",
                "iteration_job",
                "--partitions",
                f"{A}|2,{A}|1",
                "--noprompt",
            ],
            cwd=ROOT,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        backfill_id = out.stdout.split("Launched backfill job `", 1)[1].split("`", 1)[0]

        def finished():
            runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
            return len(runs) == 2 and all(r.is_finished for r in runs) and runs

        runs = wait_for(finished, 900, "the backfill", log=stack.dagster_home.parent / "daemon.log")
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        (s1, e1, r1), (s2, _, r2) = _windows(instance, runs)
        assert r1.tags["dagster/partition"] == f"{A}|1" and r2.tags["dagster/partition"] == f"{A}|2"
        assert e1 <= s2  # one at a time, iteration 1 first
        new = {i: store.path(A, i, DATASET).stat().st_mtime for i in (1, 2)}
        assert old[1] < new[1] < new[2]  # iteration 2 read the dataset iteration 1 had just rewritten

        time.sleep(15)  # a few sensor ticks: the re-materialised eval reports must not advance the campaign
        extra = [
            r
            for r in instance.get_runs()
            if r.run_id not in before and r.tags.get("dagster/backfill") != backfill_id
        ]
        assert extra == [], [(r.job_name, r.tags) for r in extra]
        assert "3" not in instance.get_dynamic_partitions("iteration")
        # the bucket has the re-run's artifacts
        pulled = ArtifactStore(stack.home.parent / "pulled")
        S3Mirror(stack.s3(), ARTIFACT_BUCKET, "bcomc").pull(pulled, A)
        assert pulled.path(A, 2, DATASET).read_bytes() == store.path(A, 2, DATASET).read_bytes()
