"""Fine-tuning as a Dagster Pipes process: ``python -m bcomc_dagster.training.remote``.

The checkpoint asset starts it through a Pipes client (a subprocess here; a Kubernetes or ECS Pipes
client to put it on a GPU machine) with the store root, campaign and iteration as extras. It trains
exactly as in process, and its progress (step, total, loss) streams back into the Dagster run's logs.
"""

from __future__ import annotations

from dagster_pipes import open_dagster_pipes

from bcomc_dagster import stages
from bcomc_dagster.artifacts import ArtifactStore


def main() -> None:
    with open_dagster_pipes() as pipes:
        extras = pipes.extras
        store = ArtifactStore(extras["root"])
        try:
            m = stages.train_checkpoint(store, extras["campaign"], int(extras["iteration"]), pipes.log.info)
        except Exception as e:  # say why in the run's logs (Pipes itself reports only the exit code), then fail
            pipes.log.error(f"fine-tune failed: {type(e).__name__}: {e}")
            raise
        pipes.log.info(f"fine-tune: done, {m.steps} steps, final loss {m.final_loss:.4f}, {m.train_seconds:.0f} s")


if __name__ == "__main__":
    main()
