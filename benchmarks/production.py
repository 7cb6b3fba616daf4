"""The demo campaign's wall time on the production stack against the embedded default.

    .venv/bin/python benchmarks/production.py [--skip-embedded]

Embedded: `bcomc demo` (SQLite, local files, steps in process, the loop driven in that process).
Production: PostgreSQL instance, artifacts and compute logs in S3 (moto on loopback), every step a task on
a Celery worker (RabbitMQ), the daemon's sensor driving the loop (bcomc_dagster_tests/stack.py). Both from
a clean state; both start their own model server. Prints figures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from bcomc_dagster import driver  # noqa: E402
from bcomc_dagster.artifacts import OUTCOME, ArtifactStore  # noqa: E402
from bcomc_dagster.config import DEMO_CONFIG, load_config  # noqa: E402
from bcomc_dagster_tests.stack import production_stack, wait_for  # noqa: E402


def embedded(tmp: Path) -> dict:
    env = {**os.environ, "BCOMC_HOME": str(tmp / "home"), "DAGSTER_HOME": str(tmp / "dagster")}
    t0 = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "bcomc_dagster.cli", "demo", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    return {"wall_s": time.monotonic() - t0, "pass_rates": result["pass_rates"], "status": result["status"]}


def production(tmp: Path) -> dict:
    with production_stack(tmp) as stack, stack.instance() as instance:
        store = ArtifactStore(stack.home)
        t0, t_launch = time.monotonic(), time.time()
        driver.launch(instance, driver.load_defs(), store, load_config(DEMO_CONFIG), "demo-prod")
        path = store.path("demo-prod", None, OUTCOME)

        def done():  # the outcome written, and the run that wrote it (and the report) finished
            runs = instance.get_runs(dg.RunsFilter(job_name="outcome_job", tags={"campaign": "demo-prod"}))
            return path.exists() and runs and runs[0].is_finished

        wait_for(done, 1800, "the demo campaign's outcome", every=0.5, log=tmp / "daemon.log")
        wall = time.monotonic() - t0
        outcome = store.outcome("demo-prod")
        runs, previous_end = [], t_launch
        for rec in reversed(instance.get_run_records()):
            st = instance.get_run_stats(rec.dagster_run.run_id)
            created = rec.create_timestamp.timestamp()
            runs.append(
                (
                    rec.dagster_run.job_name,
                    rec.dagster_run.tags.get("dagster/partition", ""),
                    created - previous_end,
                    st.start_time - created,
                    st.end_time - st.start_time,
                )
            )
            previous_end = st.end_time
        for serving in stack.home.glob("campaigns/*/serving"):  # the servers the campaigns left running
            from bcomc_dagster.serving.process import stop_recorded

            stop_recorded(serving)
    return {
        "wall_s": wall,
        "pass_rates": {str(k): v for k, v in outcome.pass_rates.items()},
        "status": outcome.status,
        "runs": runs,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-embedded", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = {}
        if not args.skip_embedded:
            rows["embedded (SQLite, in process)"] = embedded(tmp / "embedded")
        (tmp / "prod").mkdir()
        rows["Postgres + S3 + Celery + daemon"] = prod = production(tmp / "prod")
    print("\n| stack | wall time | outcome | pass rate by iteration |\n|---|---|---|---|")
    for name, r in rows.items():
        rates = " → ".join(f"{v:.1f}" for v in r["pass_rates"].values())
        print(f"| {name} | {r['wall_s']:.0f} s | {r['status']} | {rates} % |")
    print(
        "\nproduction runs: the sensor's reaction (previous run's end to this run's creation), "
        "queue and launch"
    )
    print("(creation to start), and the run (start to end):")
    print("| run | partition | sensor | queue + launch | run |\n|---|---|---|---|---|")
    for job, partition, sensor, launch, run in prod["runs"]:
        print(f"| {job} | {partition} | {sensor:.1f} s | {launch:.1f} s | {run:.1f} s |")


if __name__ == "__main__":
    main()
