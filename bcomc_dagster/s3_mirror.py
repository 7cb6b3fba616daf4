"""Artifacts in S3: a campaign's files under ``{prefix}/{campaign}/{iteration}/{name}``, mirrored to and
from a local working folder, so that stages keep reading and writing plain files while the truth is in
the bucket and any machine can pick a campaign up.

- ``pull(campaign)`` brings down what the bucket has and the folder lacks (before a step runs);
- ``push(campaign, since)`` uploads what a step wrote (after it succeeded). Each object's PUT is atomic;
  a checkpoint folder's ``manifest.json`` goes last, so a checkpoint without a manifest is incomplete and
  readers say so (``ArtifactStore.manifest``).
Machine-local state stays local: server state (``serving/``), and outside the campaign folders the model
and response caches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bcomc_dagster.artifacts import ArtifactStore, check_campaign_name
from bcomc_dagster.errors import InputError
from bcomc_dagster.files import atomic_writer, home

LOCAL_ONLY = ("serving",)  # top-level folders of a campaign that describe this machine only
LAST = "manifest.json"


class S3Mirror:
    def __init__(self, client: Any, bucket: str, prefix: str = "bcomc") -> None:  # boto3: untyped
        self.s3, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def _key(self, campaign: str, rel: str) -> str:
        return f"{self.prefix}/{check_campaign_name(campaign)}/{rel}"

    def keys(self, campaign: str) -> dict[str, int]:
        """Relative path -> size of every object of the campaign."""
        out, token = {}, None
        base = self._key(campaign, "")
        while True:
            kw = {"Bucket": self.bucket, "Prefix": base, **({"ContinuationToken": token} if token else {})}
            page = self.s3.list_objects_v2(**kw)
            out.update({o["Key"][len(base) :]: o["Size"] for o in page.get("Contents", [])})
            if not page.get("IsTruncated"):
                return out
            token = page["NextContinuationToken"]

    def pull(self, store: ArtifactStore, campaign: str, only: tuple[str, ...] = ()) -> int:
        """Download the campaign's objects missing (or of another size) locally, or only those under the
        relative paths ``only``; returns how many."""
        n = 0
        for rel, size in self.keys(campaign).items():
            if only and not rel.startswith(only):
                continue
            try:  # whoever can write the bucket must not be able to write any file a worker can
                local = store.inside(campaign, rel)
            except InputError as e:
                raise InputError(f"s3://{self.bucket}/{self._key(campaign, rel)}: {e}") from None
            if local.is_file() and local.stat().st_size == size:
                continue
            with atomic_writer(local) as f:
                self.s3.download_fileobj(self.bucket, self._key(campaign, rel), f)
            n += 1
        return n

    def push(self, store: ArtifactStore, campaign: str, since: float = 0.0) -> int:
        """Upload the campaign's files written after ``since`` (a timestamp); manifests last."""
        root = store.campaign_dir(campaign)
        if not root.is_dir():
            return 0
        files = [
            p
            for p in root.rglob("*")
            if p.is_file()
            and not p.name.startswith(".")
            and p.relative_to(root).parts[0] not in LOCAL_ONLY
            and p.stat().st_mtime >= since
        ]
        files.sort(key=lambda p: (p.name == LAST, str(p)))
        for p in files:
            self.s3.upload_file(str(p), self.bucket, self._key(campaign, p.relative_to(root).as_posix()))
        return len(files)


def campaign_of(partition_key: str) -> str:
    """The campaign of a campaign or (campaign, iteration) partition key."""
    return partition_key.split("|", 1)[0]


def local_root(cache: str | None) -> Path:
    return Path(cache).expanduser().resolve() if cache else home()
