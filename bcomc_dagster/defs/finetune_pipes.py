"""Fine-tuning as a Dagster Pipes process: ``python -m bcomc_dagster.defs.finetune_pipes``.

The checkpoint asset starts it through a Pipes client (a subprocess here; a Kubernetes or ECS Pipes
client to put it on a GPU machine) with the store root, campaign and iteration as extras. It trains
exactly as in process, and its progress (step, total, loss) streams back into the Dagster run's logs.
With artifacts in S3 (extras ``s3_bucket``, ``s3_prefix``, ``s3_endpoint_url``) it works on its own
folder (``BCOMC_HOME`` where it runs): it downloads the campaign's config and this iteration's dataset,
and uploads the checkpoint, manifest last, before it reports success.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from dagster_pipes import open_dagster_pipes

from bcomc_dagster import stages
from bcomc_dagster.artifacts import CONFIG, DATASET, ArtifactStore
from bcomc_dagster.files import HOME_ENV
from bcomc_dagster.s3_mirror import S3Mirror


def _mirror(extras: Mapping[str, Any]) -> S3Mirror | None:
    if not extras.get("s3_bucket"):
        return None
    import boto3

    client = boto3.client(
        "s3", endpoint_url=extras.get("s3_endpoint_url")
    )  # credentials: the standard AWS chain
    return S3Mirror(client, extras["s3_bucket"], extras.get("s3_prefix", "bcomc"))


def main() -> None:
    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        campaign, i = extras["campaign"], int(extras["iteration"])
        mirror = _mirror(extras)
        root = (os.environ.get(HOME_ENV) or extras["root"]) if mirror else extras["root"]
        store = ArtifactStore(root)
        try:
            if mirror:
                n = mirror.pull(store, campaign, only=(CONFIG, f"{i}/{DATASET}"))
                pipes.log.info(
                    f"fine-tune: {n} artifact(s) from s3://{mirror.bucket}/{mirror.prefix}/{campaign}"
                )
            started = time.time()
            m = stages.train_checkpoint(store, campaign, i, pipes.log.info)
            if mirror:
                n = mirror.push(store, campaign, since=started)
                pipes.log.info(
                    f"fine-tune: {n} checkpoint file(s) to "
                    f"s3://{mirror.bucket}/{mirror.prefix}/{campaign}/{i}"
                )
        except (
            Exception
        ) as e:  # say why in the run's logs (Pipes itself reports only the exit code), then fail
            pipes.log.error(f"fine-tune failed: {type(e).__name__}: {e}")
            raise
        pipes.log.info(
            f"fine-tune: done, {m.steps} steps, final loss {m.final_loss:.4f}, {m.train_seconds:.0f} s"
        )


if __name__ == "__main__":
    main()
