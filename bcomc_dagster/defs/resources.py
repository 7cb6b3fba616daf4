import os

import dagster as dg

from bcomc_dagster.artifacts import ArtifactStore


def default_home() -> str:
    return os.path.abspath(os.environ.get("BCOMC_HOME", ".bcomc"))


class ArtifactStoreResource(dg.ConfigurableResource):
    """Where every artifact lives, addressed by {campaign}/{iteration}/{name}."""

    root: str

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources={"artifacts": ArtifactStoreResource(root=default_home())})
