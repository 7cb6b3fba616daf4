"""Fault injection against real processes: the `bcomc` CLI SIGKILLed in the middle of a stage, a stage that
fails, two `advance` calls at once, stale server records, hostile S3 keys on moto, hostile suites and
configs. After each: no process left running, the truthful state, resumable to the end, nothing written
outside the campaign's folder, no secret in any artifact, log or Dagster event."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from bcomc_dagster import campaign_state, cli, driver
from bcomc_dagster.artifacts import DATASET, OUTCOME, REPORT, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.datagen import dataset
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.s3_mirror import S3Mirror
from bcomc_dagster.serving import process

from .stack import s3_server

ROOT = Path(__file__).resolve().parent.parent
SECRET = "sk-test-Zq8vN3pLw0Xr7Tb2Yc5Hd1Jk"  # a provider key in the environment: must appear nowhere
SMALL = {
    "target_pass_rate": 100,
    "max_iterations": 1,
    "datagen": {"examples_per_service": 8},
    "finetune": {"epochs": 2},
}


@pytest.fixture
def home(tmp_path):
    env = {
        **os.environ,
        "BCOMC_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "OPENAI_API_KEY": SECRET,
    }
    yield tmp_path, env
    left = _ours(tmp_path)
    for p in left:
        p.kill()
    assert not left, f"processes left running: {[p.cmdline()[:4] for p in left]}"


def _ours(tmp_path: Path) -> list[psutil.Process]:
    """Processes started for this test: named in their command line, or working in its folder (servers)."""
    out = []
    for p in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if (
                p.pid != os.getpid()
                and p.status() != psutil.STATUS_ZOMBIE
                and (
                    any(str(tmp_path) in a for a in p.info["cmdline"] or [])
                    or str(p.info["cwd"] or "").startswith(str(tmp_path))
                )
            ):
                out.append(p)
        except psutil.Error:
            continue
    return out


def bcomc(env, *args, wait=True, timeout=600):
    cmd = [sys.executable, "-m", "bcomc_dagster.cli", *args]
    if not wait:
        return subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _wait_for(what, check, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _status(env, campaign) -> dict:
    r = bcomc(env, "status", campaign, "--json", "--orphans")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _no_secret_anywhere(tmp_path: Path) -> None:
    for p in tmp_path.rglob("*"):
        if p.is_file() and p.stat().st_size < 50_000_000 and "models" not in p.parts:
            assert SECRET.encode() not in p.read_bytes(), p


@pytest.mark.slow
@pytest.mark.server
def test_sigkill_during_the_baseline_server_start_and_the_fine_tune_then_resume(home):
    tmp_path, env = home
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps({**SMALL, "finetune": {"epochs": 30}})
    )  # a fine-tune long enough to be killed in
    store = ArtifactStore(tmp_path / "home")
    serving = store.campaign_dir("k") / "serving"

    # 1. killed while the baseline's server starts: the server has a record from the moment it started
    p = bcomc(env, "launch", str(cfg), "--campaign", "k", "--drive", wait=False)
    rec = _wait_for("the server's record", lambda: process.records(serving))[0]
    p.send_signal(signal.SIGKILL)
    p.wait()
    st = _status(env, "k")
    assert st["campaigns"][0]["status"] == "failed"  # its run was STARTED; its process is gone
    assert [o["pid"] for o in st["orphans"]] == [rec.pid]
    assert bcomc(env, "status", "--reap").returncode == 0
    _wait_for(
        "the orphan to stop",
        lambda: not psutil.pid_exists(rec.pid) or psutil.Process(rec.pid).status() == "zombie",
        30,
    )
    assert not process.records(serving)

    # 2. resumed, then killed again in the middle of iteration 1's fine-tune: a half-written checkpoint
    p = bcomc(env, "resume", "k", wait=False)
    _wait_for("resume to hold the campaign", lambda: campaign_state.holder(store, "k"))
    busy = bcomc(env, "advance", "k")  # one process at a time: the second is told who holds the campaign
    assert (
        busy.returncode == cli.EXIT_INPUT
        and "is busy: pid" in busy.stderr
        and "resuming the campaign" in busy.stderr
    )
    tmp_ckpt = _wait_for(
        "the fine-tune's temp folder",
        lambda: (
            [d for d in store.iteration_dir("k", 1).glob(".checkpoint-*")]
            if store.iteration_dir("k", 1).is_dir()
            else []
        ),
    )
    p.send_signal(signal.SIGKILL)
    p.wait()
    st = _status(env, "k")
    assert (
        st["campaigns"][0]["status"] == "failed" and st["orphans"]
    )  # the live base server, its campaign dead
    assert "interrupted" in st["campaigns"][0]["failure"]

    # 3. resume to the end: the temp folder is gone, the dataset has no duplicate, the servers are stopped
    r = bcomc(env, "resume", "k")
    assert r.returncode == cli.EXIT_STOPPED, r.stderr  # max_iterations_reached short of 100 %
    assert not tmp_ckpt[0].exists() and "removed 1/.checkpoint-" in r.stdout
    rows = dataset.read_jsonl(store.path("k", 1, DATASET))
    assert len({r.id for r in rows}) == len(rows) > 0
    st = _status(env, "k")
    assert st["campaigns"][0]["status"] == "max_iterations_reached" and not st["orphans"]
    assert json.loads(store.path("k", None, OUTCOME).read_text())["servers_stopped"]
    assert not [pr for pr in _ours(tmp_path) if "vllm" in " ".join(pr.cmdline())]
    _no_secret_anywhere(tmp_path)


@pytest.mark.slow
@pytest.mark.server
def test_a_failed_stage_stops_the_servers_and_says_so_and_two_advances_never_run_one_iteration(home):
    tmp_path, env = home
    store = ArtifactStore(tmp_path / "home")
    cfg = tmp_path / "manual.json"
    cfg.write_text(json.dumps({**SMALL, "auto_advance": False}))
    r = bcomc(env, "launch", str(cfg), "--campaign", "m", "--drive")
    assert r.returncode == 0 and "waiting" in r.stdout, r.stderr
    # two advances at once: one runs iteration 1, the other is told what is running
    a, b = bcomc(env, "advance", "m", wait=False), bcomc(env, "advance", "m", wait=False)
    results = sorted([(x.wait(timeout=600), x.communicate()) for x in (a, b)], key=lambda t: t[0])
    assert [code for code, _ in results] == [0, cli.EXIT_INPUT], results
    assert "is busy: pid" in results[1][1][1] and "advancing the campaign" in results[1][1][1]
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={"dagster/run_key": "m:1"}))
    assert len(runs) == 1 and store.iterations("m", having=REPORT) == [0, 1]
    # advancing a finished campaign records its outcome and stops the server, not only "not advancing"
    r = bcomc(env, "advance", "m")  # max_iterations 1: the loop stops here
    assert r.returncode == cli.EXIT_STOPPED and "not advancing: max_iterations_reached" in r.stdout, r.stderr
    assert json.loads(store.path("m", None, OUTCOME).read_text())["status"] == "max_iterations_reached"
    assert _status(env, "m")["campaigns"][0]["status"] == "max_iterations_reached"
    assert not [pr for pr in _ours(tmp_path) if "vllm" in " ".join(pr.cmdline())]

    # a stage that fails (the quality filters drop every pair: nothing to train on)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**SMALL, "quality": {"min_answer_chars": 1999}}))
    r = bcomc(env, "launch", str(bad), "--campaign", "f", "--drive")
    assert r.returncode == cli.EXIT_FAILED and "dataset is empty" in r.stderr
    assert "Logging error" not in r.stdout + r.stderr
    row = _status(env, "f")["campaigns"][0]
    assert row["status"] == "failed" and "dataset is empty" in row["failure"]
    assert not [
        pr for pr in _ours(tmp_path) if "vllm" in " ".join(pr.cmdline())
    ]  # the failure stopped the server
    _no_secret_anywhere(tmp_path)


def test_unknown_campaigns_are_errors(home):
    _, env = home
    for name in ("nonexistent", "../../etc"):
        r = bcomc(env, "status", name)
        assert r.returncode == cli.EXIT_INPUT and name in r.stderr, r.stderr
    for cmd in ("resume", "stop", "advance"):
        assert bcomc(env, cmd, "nonexistent").returncode == cli.EXIT_INPUT


def test_a_stale_record_never_kills_the_process_that_now_has_its_pid(tmp_path):
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        workdir = tmp_path / "serving"
        rec = process.record(workdir, other.pid, 5555, "vllm", tmp_path)
        assert not process.is_ours(rec)  # alive, but no server's command line: not ours
        stale = rec.model_copy(update={"created": rec.created - 3600})
        (workdir / "servers" / f"{other.pid}.json").write_text(stale.model_dump_json())
        (workdir / "serving.json").write_text(json.dumps({"pid": other.pid}))
        assert process.stop_recorded(workdir) == [] and other.poll() is None  # still running
        assert not process.records(workdir)  # the stale record is dropped
    finally:
        other.kill()
        other.wait()


@pytest.mark.slow
@pytest.mark.server
def test_a_server_that_never_becomes_ready_is_stopped_and_forgotten(tmp_path, tiny_base):
    from bcomc_dagster.errors import ServingError
    from bcomc_dagster.serving.server import ServerDeployer
    from bcomc_dagster.training.weights import weights_fingerprint

    d = ServerDeployer(tmp_path / "s", engine=process.VLLM_ENGINE, ready_timeout_s=3)
    with pytest.raises(ServingError, match="not ready within 3 s"):
        d.ensure_base(tiny_base, "bcomc-tiny", weights_fingerprint(tiny_base))
    assert not process.records(tmp_path / "s")
    _wait_for("the server to be gone", lambda: not _ours(tmp_path), 30)


def test_hostile_s3_keys_write_nothing_outside_the_campaign(tmp_path, monkeypatch):
    from dagster_aws.s3 import S3Resource

    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    outside = tmp_path / "outside"
    with s3_server() as url:
        client = S3Resource(endpoint_url=url, region_name="us-east-1").get_client()
        client.create_bucket(Bucket="hostile")
        store = ArtifactStore(tmp_path / "home")
        for key in (f"bcomc/c1/{outside}/abs.txt", "bcomc/c1/../../../outside/x.txt", "bcomc/c1//etc/y.txt"):
            client.put_object(Bucket="hostile", Key=key, Body=b"pwned")
            with pytest.raises(InputError, match=r"not a path inside campaign 'c1'"):
                S3Mirror(client, "hostile").pull(store, "c1")
            client.delete_object(Bucket="hostile", Key=key)
        client.put_object(Bucket="hostile", Key="bcomc/c1/1/ok.txt", Body=b"fine")
        assert S3Mirror(client, "hostile").pull(store, "c1") == 1
    assert not outside.exists() and [p.name for p in tmp_path.rglob("*.txt")] == ["ok.txt"]


def test_hostile_suites_are_clear_errors(write_suite, tmp_path):
    q = {"id": "q1", "service": "svc", "question": "Port of svc?", "reference": "6120"}
    root = write_suite({"svc": "# Svc\n- default port: 6120\n"}, [q])
    secret = tmp_path / "secret.txt"
    secret.write_text("- api key: hunter2\n")
    (root / "docs" / "leak.md").symlink_to(secret)
    with pytest.raises(InputError, match=r"leak.md: points outside the suite"):
        load_suite(str(root))
    (root / "docs" / "leak.md").unlink()
    (root / "docs" / "bin.md").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(InputError, match=r"bin.md: not UTF-8 text"):
        load_suite(str(root))
    (root / "docs" / "bin.md").unlink()
    for meta, why in (
        ("[1, 2]", "expected an object"),
        ('{"name": 5}', "name: Input should be a valid string"),
    ):
        (root / "suite.json").write_text(meta)
        with pytest.raises(InputError, match=rf"suite.json: .*{why}"):
            load_suite(str(root))
    (root / "suite.json").write_text('{"name": "ok"}')
    assert load_suite(str(root)).name == "ok"
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"eval_suite": str(root), "model_name": "bcomc-tiny"}))
    (root / "questions.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    assert cli.main(["validate", str(cfg)]) == cli.EXIT_INPUT


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"target_pass_rate": True}, r"target_pass_rate: Input should be a valid number"),
        ({"max_iterations": "5"}, r"max_iterations: Input should be a valid integer"),
        ({"datagen": {"min_services": 6}}, r"datagen.min_services \(6\) is above datagen.max_services \(5\)"),
        (
            {"quality": {"min_question_chars": 600}},
            r"quality.min_question_chars \(600\) is above quality.max_question_chars",
        ),
        (
            {"serving": {"api_key_env": SECRET}},
            r"serving.api_key_env: expected the name of an environment variable",
        ),
        ({"llm": {"providers": {"openai": {"api_key_env": SECRET}}}}, r"api_key_env: expected the name"),
        (
            {"model_backend": "vllm", "serving": {"base_url": "http://user:hunter2@gpu:8000"}},
            r"serving.base_url: credentials in the URL are refused .* \(got 'http://\*\*\*@gpu:8000'\)",
        ),
    ],
)
def test_hostile_configs_are_refused_without_echoing_secrets(data, expected):
    with pytest.raises(InputError, match=expected) as e:
        parse_config(data)
    assert SECRET not in str(e.value) and "hunter2" not in str(e.value)


def test_names_paths_and_launches(tmp_path, monkeypatch, write_suite):
    from bcomc_dagster.artifacts import check_campaign_name

    for name in ("nl\n", "a/b", "..", "x" * 65):
        with pytest.raises(InputError, match="campaign name"):
            check_campaign_name(name)
    # a relative suite path is stored resolved: a step elsewhere (daemon, worker, Pipes) finds it
    suite = write_suite(
        {"svc": "# Svc\n- default port: 6120\n"},
        [{"id": "q", "service": "svc", "question": "Port?", "reference": "6120"}],
    )
    monkeypatch.chdir(suite.parent)
    monkeypatch.setenv("BCOMC_HOME", str(tmp_path / "home"))
    store = ArtifactStore(tmp_path / "home")
    with dg.instance_for_test() as instance:
        defs = driver.load_defs()
        cfg = parse_config({"eval_suite": "suite"})
        real_add = instance.add_dynamic_partitions

        def another_launch_won(
            name, keys
        ):  # both checked "not there" at the same instant; the other inserted
            real_add(name, keys)
            raise sqlite3.IntegrityError(
                "UNIQUE constraint failed: dynamic_partitions.partitions_def_name, partition"
            )

        monkeypatch.setattr(instance, "add_dynamic_partitions", another_launch_won)
        with pytest.raises(InputError, match="campaign 'same' exists already"):
            driver.launch(instance, defs, store, cfg, "same")
        monkeypatch.setattr(instance, "add_dynamic_partitions", real_add)
        driver.launch(instance, defs, store, cfg, "same2")
        with pytest.raises(InputError, match="campaign 'same2' exists already"):
            driver.launch(instance, defs, store, cfg, "same2")
    assert store.config("same2").eval_suite == str(suite)


def test_ollama_names_that_differ_in_case_do_not_collide():
    from bcomc_dagster.serving.ollama import model_name

    assert model_name("Demo-it1") != model_name("demo-it1") == "demo-it1:latest"
    assert model_name("Demo-it1") == model_name("Demo-it1") and model_name("Demo-it1").islower()


def test_a_model_servers_environment_has_no_secrets(tmp_path, monkeypatch):
    for k in ("OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DAGSTER_PG_PASSWORD", "ANTHROPIC_API_KEY"):
        monkeypatch.setenv(k, SECRET)
    env = process.server_env("vllm", tmp_path)
    assert SECRET not in env.values() and "PATH" in env and env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_the_daemons_failed_runs_are_recorded_where_status_reads_them(tmp_path, monkeypatch):
    from bcomc_dagster.defs.partitions import iteration_key, iterations
    from bcomc_dagster.defs.sensors import campaign_failure_sensor

    monkeypatch.setenv("BCOMC_HOME", str(tmp_path / "home"))
    store = ArtifactStore(tmp_path / "home")
    with dg.instance_for_test() as instance:
        defs = driver.load_defs()
        driver.launch(instance, defs, store, parse_config({}), "d")
        instance.add_dynamic_partitions(iterations.name, ["1"])
        res = defs.resolve_job_def(
            "iteration_job"
        ).execute_in_process(  # no baseline: the analysis cannot start
            instance=instance,
            partition_key=iteration_key("d", 1),
            tags={"campaign": "d"},
            raise_on_error=False,
        )
        assert not res.success
        run = instance.get_run_by_id(res.run_id)
        failure = next(e for e in res.all_events if e.event_type == dg.DagsterEventType.RUN_FAILURE)
        with dg.build_run_status_sensor_context(
            sensor_name="campaign_failure_sensor",
            dagster_instance=instance,
            dagster_run=run,
            dagster_event=failure,
            resources={"artifacts": defs.resources["artifacts"]},  # BCOMC_HOME: this test's folder
        ).for_run_failure() as ctx:
            campaign_failure_sensor(ctx)
    fail = campaign_state.last_failure(store, "d")
    assert fail.iteration == 1 and fail.stage == "failure_analysis" and "baseline eval report" in fail.error
    assert campaign_state.state(store, "d") == "failed"
