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


def test_typed_readers_name_the_missing_artifact(tmp_path):
    from bcomc_dagster.errors import PredecessorMissing

    store = ArtifactStore(tmp_path)
    with pytest.raises(PredecessorMissing, match=r"the eval report of iteration 2 is missing"):
        store.report("c", 2)
    with pytest.raises(PredecessorMissing, match=r"the checkpoint of iteration 1 is missing"):
        store.manifest("c", 1)
    assert store.dataset("c", 0) == [] and store.promotion("c", 1) is None and store.outcome("c") is None
