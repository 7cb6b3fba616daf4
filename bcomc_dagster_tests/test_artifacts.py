import pytest

from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.errors import InputError, PredecessorMissing


@pytest.mark.parametrize("bad", ["../x", "a/b", "", ".hidden", "a" * 65, "x..y"])
def test_campaign_names_cannot_escape_the_root(tmp_path, bad):
    with pytest.raises(InputError, match="campaign name"):
        ArtifactStore(tmp_path).campaign_dir(bad)


def test_write_is_atomic_and_require_names_the_missing_artifact(tmp_path):
    store = ArtifactStore(tmp_path)
    p = store.write_json("c1", 2, "thing.json", {"a": 1})
    assert store.read_json("c1", 2, "thing.json", "the thing") == {"a": 1}
    assert [f.name for f in p.parent.iterdir()] == ["thing.json"]  # no temporary left behind
    with pytest.raises(PredecessorMissing, match=r"campaign 'c1': the thing of iteration 1 is missing"):
        store.require("c1", 1, "thing.json", "the thing")


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path):
    from bcomc_dagster.files import atomic_write, atomic_writer

    target = atomic_write(tmp_path / "a" / "x.json", "{}")
    assert target.read_text() == "{}"
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "{}" and sorted(p.name for p in target.parent.iterdir()) == ["x.json"]


def test_an_atomic_folder_appears_whole_or_not_at_all(tmp_path):
    from bcomc_dagster.files import atomic_dir

    target = tmp_path / "models" / "m"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("{}")
        raise RuntimeError("killed mid-write")
    assert not target.exists() and list(target.parent.iterdir()) == []  # nothing half-written left
    with atomic_dir(target) as tmp:
        (tmp / "config.json").write_text("ours")
    assert (target / "config.json").read_text() == "ours" and target.stat().st_mode & 0o777 == 0o755
    # another process finished first: theirs stays; with replace, the new one takes its place
    with atomic_dir(target, done="config.json") as tmp:
        (tmp / "config.json").write_text("late")
    assert (target / "config.json").read_text() == "ours" and [p.name for p in target.parent.iterdir()] == [
        "m"
    ]
    with atomic_dir(target, replace=True) as tmp:
        (tmp / "manifest.json").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json"]
    with pytest.raises(OSError), atomic_dir(target, done="config.json"):  # there, not complete: said
        pass
    assert [p.name for p in target.parent.iterdir()] == ["m"]


def test_typed_readers_name_the_missing_artifact(tmp_path):
    from bcomc_dagster.errors import PredecessorMissing

    store = ArtifactStore(tmp_path)
    with pytest.raises(PredecessorMissing, match=r"the eval report of iteration 2 is missing"):
        store.report("c", 2)
    with pytest.raises(PredecessorMissing, match=r"the checkpoint of iteration 1 is missing"):
        store.manifest("c", 1)
    assert store.dataset("c", 0) == [] and store.promotion("c", 1) is None and store.outcome("c") is None


def test_a_corrupt_artifact_is_an_input_error_naming_the_file(tmp_path):
    from bcomc_dagster.artifacts import CHECKPOINT, DEPLOYMENT

    store = ArtifactStore(tmp_path)
    store.write_text("c", 1, DEPLOYMENT, "[1, 2]")
    with pytest.raises(InputError, match=r"1/deployment.json: the deployment is not a JSON object"):
        store.deployment("c", 1)
    store.write_text("c", 1, DEPLOYMENT, '{"endpoint": "http://x/v1"}')
    with pytest.raises(
        InputError, match=r"deployment.json: the deployment does not fit its schema: served_model:"
    ):
        store.deployment("c", 1)
    (store.path("c", 1, CHECKPOINT)).mkdir()
    store.path("c", 1, CHECKPOINT).joinpath("manifest.json").write_text("{}")
    with pytest.raises(
        InputError, match=r"manifest.json: not a checkpoint manifest: base_model: Field required"
    ):
        store.manifest("c", 1)


def test_the_dataset_summary_line_counts_rows_of_a_quality_report_from_before_it_counted_them(tmp_path):
    from bcomc_dagster.artifacts import DATASET, QUALITY
    from bcomc_dagster.datagen import dataset
    from bcomc_dagster.datagen.schema import Provenance, QAPair
    from bcomc_dagster.summary import stage_lines

    store = ArtifactStore(tmp_path)
    prov = Provenance(campaign="c", iteration=1, model="m", snippet="-")
    rows = [
        QAPair(service="s", question=f"What is the port of S{k}?", answer=f"{k}", provenance=prov)
        for k in range(5)
    ]
    dataset.write_jsonl(store.path("c", 1, DATASET), rows[:2])
    dataset.write_jsonl(store.path("c", 2, DATASET), rows)
    store.write_json("c", 2, QUALITY, {"dropped_by_reason": {"duplicate": 1, "invalid": 0}, "dropped": []})
    assert stage_lines(store, "training_dataset", "c", 2) == [
        "  training_dataset: +3 rows, 5 in all; dropped: duplicate 1"
    ]
