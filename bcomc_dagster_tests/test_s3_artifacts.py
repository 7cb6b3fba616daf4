"""Artifacts in S3 through dagster-aws's S3Resource (real boto3) against moto's S3 server on loopback:
round trips, manifests last, campaigns kept apart, and a campaign whose steps find their predecessors'
artifacts only in the bucket."""

import shutil

import dagster as dg
import pytest
from dagster_aws.s3 import S3Resource

from bcomc_dagster import driver, stages
from bcomc_dagster.artifacts import CHECKPOINT, CONFIG, GENERATED, REPORT, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.defs.resources import ArtifactStoreResource
from bcomc_dagster.errors import InputError, PredecessorMissing
from bcomc_dagster.s3_mirror import S3Mirror

from .stack import s3_server

BUCKET = "bcomc-artifacts"


@pytest.fixture(scope="module")
def s3_url():
    with s3_server() as url:
        yield url


@pytest.fixture
def client(s3_url, monkeypatch):
    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(k, v)
    c = S3Resource(endpoint_url=s3_url, region_name="us-east-1").get_client()
    if BUCKET not in [b["Name"] for b in c.list_buckets()["Buckets"]]:
        c.create_bucket(Bucket=BUCKET)
    return c


def _fill(store: ArtifactStore, campaign: str) -> None:
    store.write_json(campaign, None, CONFIG, parse_config({}))
    store.write_text(campaign, 1, GENERATED, '{"q": 1}\n')
    ckpt = store.iteration_dir(campaign, 1) / CHECKPOINT
    (ckpt / "adapter").mkdir(parents=True)
    (ckpt / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 2048)
    (ckpt / "manifest.json").write_text("{}")
    (store.campaign_dir(campaign) / "serving").mkdir()
    (store.campaign_dir(campaign) / "serving" / "serving.json").write_text("{}")  # this machine's server


def test_round_trip_keeps_machine_state_local_and_sends_manifests_last(client, tmp_path):
    uploads = []
    real_upload = client.upload_file
    client.upload_file = lambda path, bucket, key: (uploads.append(key), real_upload(path, bucket, key))[1]
    mirror = S3Mirror(client, BUCKET, prefix="t1")
    a, b = ArtifactStore(tmp_path / "a"), ArtifactStore(tmp_path / "b")
    _fill(a, "camp")
    assert mirror.push(a, "camp") == 4
    assert (
        uploads[-1] == "t1/camp/1/checkpoint/manifest.json"
    )  # a checkpoint is whole once its manifest is there
    assert set(mirror.keys("camp")) == {
        "campaign.json",
        "1/generated_examples.jsonl",
        "1/checkpoint/manifest.json",
        "1/checkpoint/adapter/adapter_model.safetensors",
    }
    assert "serving/serving.json" not in mirror.keys("camp")
    assert mirror.pull(b, "camp") == 4 and mirror.pull(b, "camp") == 0  # nothing twice
    for rel in mirror.keys("camp"):
        assert (b.campaign_dir("camp") / rel).read_bytes() == (a.campaign_dir("camp") / rel).read_bytes()
    assert b.config("camp") == parse_config({})


def test_push_sends_only_what_a_step_wrote(client, tmp_path):
    import time

    mirror = S3Mirror(client, BUCKET, prefix="t2")
    store = ArtifactStore(tmp_path)
    _fill(store, "camp")
    mirror.push(store, "camp")
    started = time.time()
    store.write_text("camp", 2, REPORT, "{}")
    assert mirror.push(store, "camp", since=started) == 1


def test_a_checkpoint_without_its_manifest_is_incomplete_to_readers(client, tmp_path):
    mirror = S3Mirror(client, BUCKET, prefix="t3")
    a = ArtifactStore(tmp_path / "a")
    _fill(a, "camp")
    (a.iteration_dir("camp", 1) / CHECKPOINT / "manifest.json").unlink()  # the upload died before it
    mirror.push(a, "camp")
    b = ArtifactStore(tmp_path / "b")
    mirror.pull(b, "camp")
    with pytest.raises(PredecessorMissing, match="the checkpoint has no manifest; it is incomplete"):
        b.manifest("camp", 1)


def test_campaigns_keep_to_their_own_keys(client, tmp_path):
    mirror = S3Mirror(client, BUCKET, prefix="t4")
    store = ArtifactStore(tmp_path)
    _fill(store, "one")
    _fill(store, "two")
    mirror.push(store, "one")
    assert mirror.keys("two") == {} and len(mirror.keys("one")) == 4
    with pytest.raises(InputError, match="campaign name '../one'"):
        mirror.keys("../one")


@pytest.mark.slow
@pytest.mark.server
def test_campaign_steps_find_their_predecessors_in_s3(client, s3_url, tmp_path, monkeypatch):
    """Each step starts from the bucket: the local folder loses everything but this machine's server state
    between the baseline and the iteration, as on a fresh worker."""
    home = tmp_path / "home"
    monkeypatch.setenv("BCOMC_HOME", str(home))
    for k, v in {"BCOMC_S3_BUCKET": BUCKET, "BCOMC_S3_PREFIX": "t5", "AWS_ENDPOINT_URL": s3_url}.items():
        monkeypatch.setenv(k, v)  # as a user turns S3 on
    defs = driver.load_defs()
    resource = defs.resources["artifacts"]
    assert isinstance(resource, ArtifactStoreResource) and resource.s3_bucket == BUCKET
    store = ArtifactStore(home)
    cfg = parse_config(
        {
            "target_pass_rate": 100,
            "max_iterations": 1,
            "datagen": {"examples_per_service": 5},
            "finetune": {"epochs": 1},
        }
    )
    mirror = resource.mirror()
    with dg.instance_for_test() as instance:
        driver.launch(instance, defs, store, cfg, "c-s3")
        assert "campaign.json" in mirror.keys("c-s3")
        res = defs.resolve_job_def("baseline_job").execute_in_process(instance=instance, partition_key="c-s3")
        assert res.success and "0/eval_report.json" in mirror.keys("c-s3")
        for p in store.campaign_dir("c-s3").iterdir():  # a fresh worker: only the server state is here
            if p.name != "serving":
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        try:
            outcome = driver.drive(instance, defs, store, "c-s3", out=lambda s: None)
            assert outcome.status == "max_iterations_reached"
            keys = mirror.keys("c-s3")
            assert {
                "1/eval_report.json",
                "1/training_dataset.jsonl",
                "1/checkpoint/manifest.json",
                "outcome.json",
                "report.html",
            } <= set(keys)
        finally:
            stages.deployer(store, cfg, "c-s3").stop()
