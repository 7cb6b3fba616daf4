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
