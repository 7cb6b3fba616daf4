import functools
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import dagster as dg
from dagster_aws.s3 import S3Resource

from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.files import home
from bcomc_dagster.s3_mirror import S3Mirror, campaign_of

R = TypeVar("R")


# bare, as Dagster's own resources: subscripting it would put a pydantic generic model class in the MRO
class ArtifactStoreResource(dg.ConfigurableResource):  # type: ignore[type-arg]
    """Where every artifact lives, addressed by {campaign}/{iteration}/{name}: a local folder, mirrored to
    S3 (``s3_bucket``) so that steps on any machine read and write the same campaign."""

    root: str
    s3_bucket: str | None = None
    s3_prefix: str = "bcomc"
    s3: S3Resource = S3Resource()  # endpoint, region, credentials (dagster-aws); used when s3_bucket is set

    def store(self) -> ArtifactStore:
        return ArtifactStore(self.root)

    def mirror(self) -> S3Mirror | None:
        return S3Mirror(self.s3.get_client(), self.s3_bucket, self.s3_prefix) if self.s3_bucket else None

    def s3_extras(self) -> dict[str, str]:
        """Where the bucket is, for a process elsewhere (a Pipes pod) that reads and writes it itself."""
        if not self.s3_bucket:
            return {}
        return {
            "s3_bucket": self.s3_bucket,
            "s3_prefix": self.s3_prefix,
            **({"s3_endpoint_url": self.s3.endpoint_url} if self.s3.endpoint_url else {}),
        }

    def pull(self, campaign: str) -> None:
        if mirror := self.mirror():
            mirror.pull(self.store(), campaign)

    @contextmanager
    def synced(self, campaign: str) -> Iterator[ArtifactStore]:
        """The campaign's artifacts brought down before a step, and what it wrote sent up after it
        succeeded."""
        store, mirror = self.store(), self.mirror()
        if mirror:
            mirror.pull(store, campaign)
        started = time.time()
        yield store
        if mirror:
            mirror.push(store, campaign, since=started)


def mirrored(fn: Callable[..., R]) -> Callable[..., R]:
    """Run an asset or check body between a pull and a push of its campaign's artifacts."""

    @functools.wraps(fn)
    def body(
        context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, *args: Any, **kwargs: Any
    ) -> R:
        key = context.partition_key
        with kwargs["artifacts"].synced(campaign_of(key if isinstance(key, str) else str(key))):
            return fn(context, *args, **kwargs)

    return body


def _from_env() -> ArtifactStoreResource:
    """BCOMC_HOME is the local folder; BCOMC_S3_BUCKET (+ BCOMC_S3_PREFIX, AWS_ENDPOINT_URL) turns on S3."""
    return ArtifactStoreResource(
        root=str(home()),
        s3_bucket=os.environ.get("BCOMC_S3_BUCKET") or None,
        s3_prefix=os.environ.get("BCOMC_S3_PREFIX", "bcomc"),
        s3=S3Resource(endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None),
    )


@dg.definitions
def resources() -> dg.Definitions:
    # where fine-tuning runs with finetune.runner 'pipes': a subprocess here; swap in dagster-k8s's
    # PipesK8sClient (or dagster-aws's PipesECSClient) to train on a GPU machine
    return dg.Definitions(resources={"artifacts": _from_env(), "finetune_pipes": dg.PipesSubprocessClient()})
