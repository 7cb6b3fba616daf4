"""Fine-tuning through Dagster Pipes (finetune.runner 'pipes'): a real subprocess trains, its progress
streams into the run's logs, the checkpoint lands in the store, and a failure there fails the step."""

import dagster as dg
import pytest

from bcomc_dagster.artifacts import CHECKPOINT, CONFIG, DATASET, REPORT, ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.datagen import dataset
from bcomc_dagster.datagen.schema import Provenance, QAPair
from bcomc_dagster.defs.partitions import iteration_key

pytestmark = pytest.mark.slow


def _messages(instance, run_id) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id)]


def test_checkpoint_trains_in_a_pipes_process(tmp_path, monkeypatch):
    from bcomc_dagster.definitions import defs

    monkeypatch.setenv("BCOMC_HOME", str(tmp_path))
    store = ArtifactStore(tmp_path)
    store.write_json(
        "c", None, CONFIG, parse_config({"finetune": {"runner": "pipes", "epochs": 2, "batch_size": 4}})
    )
    pairs = [
        QAPair(
            service="s",
            question=f"What is the port of Svc{k}?",
            answer=f"The port of Svc{k} is {7000 + k}.",
            provenance=Provenance(campaign="c", iteration=1, model="m", snippet="-"),
        )
        for k in range(8)
    ]
    dataset.write_jsonl(store.path("c", 1, DATASET), pairs)
    job = defs().resolve_job_def("iteration_job").get_subset(asset_selection={dg.AssetKey("checkpoint")})
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("campaign", ["c"])
        instance.add_dynamic_partitions("iteration", ["1", "2"])
        res = job.execute_in_process(instance=instance, partition_key=iteration_key("c", 1))
        assert res.success
        logs = _messages(instance, res.run_id)
        assert any("fine-tune: step 4/4 loss" in m for m in logs)  # streamed from the Pipes process
        assert any("fine-tune: done, 4 steps" in m for m in logs)
        m = store.manifest("c", 1)
        assert m.steps == 4 and m.data_rows == 8 and m.settings.epochs == 2
        md = res.get_asset_materialization_events()[0].materialization.metadata
        assert md["steps"].value == 4 and md["final_loss"].value == pytest.approx(m.final_loss)

        # iteration 2 has no dataset: the Pipes process fails and so does the step, saying why
        bad = job.execute_in_process(
            instance=instance, partition_key=iteration_key("c", 2), raise_on_error=False
        )
        assert not bad.success
        assert any(
            "the training dataset of iteration 2 is missing" in (m or "")
            for m in _messages(instance, bad.run_id)
        )
        assert not store.path("c", 2, CHECKPOINT).exists()


def test_a_pipes_process_elsewhere_trains_from_and_into_the_bucket(tmp_path, monkeypatch):
    """A fine-tune process with its own folder (as on a GPU pod): it takes the config and the dataset from
    S3, nothing else, and puts the checkpoint there; the step then finds it in the bucket."""
    from bcomc_dagster.definitions import defs
    from bcomc_dagster.s3_mirror import S3Mirror

    from .stack import ARTIFACT_BUCKET, s3_server

    here, there = ArtifactStore(tmp_path / "here"), ArtifactStore(tmp_path / "there")
    with s3_server(ARTIFACT_BUCKET) as url:
        for k, v in {
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": url,
            "BCOMC_S3_BUCKET": ARTIFACT_BUCKET,
            "BCOMC_HOME": str(here.root),
        }.items():
            monkeypatch.setenv(k, v)
        here.write_json(
            "c", None, CONFIG, parse_config({"finetune": {"runner": "pipes", "epochs": 1, "batch_size": 4}})
        )
        pairs = [
            QAPair(
                service="s",
                question=f"What is the port of Svc{k}?",
                answer=f"The port of Svc{k} is {7000 + k}.",
                provenance=Provenance(campaign="c", iteration=1, model="m", snippet="-"),
            )
            for k in range(4)
        ]
        dataset.write_jsonl(here.path("c", 1, DATASET), pairs)
        here.write_json("c", 0, REPORT, {"not": "needed for training"})
        mirror = S3Mirror(__import__("boto3").client("s3", endpoint_url=url), ARTIFACT_BUCKET)
        assert mirror.push(here, "c") == 3
        __import__("shutil").rmtree(here.root)  # the launching machine keeps nothing but the bucket

        job = defs().resolve_job_def("iteration_job").get_subset(asset_selection={dg.AssetKey("checkpoint")})
        elsewhere = dg.PipesSubprocessClient(env={"BCOMC_HOME": str(there.root)})
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("campaign", ["c"])
            instance.add_dynamic_partitions("iteration", ["1"])
            res = job.execute_in_process(
                instance=instance,
                partition_key=iteration_key("c", 1),
                resources={"finetune_pipes": elsewhere},
            )
            assert res.success
            logs = _messages(instance, res.run_id)
        assert any("fine-tune: 2 artifact(s) from s3://bcomc-artifacts/bcomc/c" in m for m in logs), logs
        pulled = sorted(
            p.relative_to(there.campaign_dir("c")).as_posix()
            for p in there.campaign_dir("c").rglob("*")
            if p.is_file()
        )
        assert (
            "0/eval_report.json" not in pulled
            and "campaign.json" in pulled
            and "1/checkpoint/manifest.json" in pulled
        )
        assert "1/checkpoint/manifest.json" in mirror.keys("c")
        m = here.manifest("c", 1)  # the step brought it back from the bucket
        assert m.data_rows == 4 and m.merged_fingerprint == there.manifest("c", 1).merged_fingerprint
