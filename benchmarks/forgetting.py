"""Does the loop forget? The demo and prose suites, with and without rehearsal, every checkpoint promoted.

    .venv/bin/python benchmarks/forgetting.py [--suites demo prose] [--shares 0 0.25] [--iterations 3]

Each campaign runs the suite's demo config through a real Dagster instance with `serving.promote:
"always"` (so that a regression is measured, not hidden by the gate) and a target of 100 % (so that it
runs every iteration). Prints, per campaign: the pass rate by iteration, every drop of a service that
had passed, the largest drop, and the analyzed and held-out parts at the end. It asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import dagster as dg  # noqa: E402

from bcomc_dagster import campaign_state, driver, stages  # noqa: E402
from bcomc_dagster.artifacts import ArtifactStore  # noqa: E402
from bcomc_dagster.config import DEMO_CONFIG, PROSE_DEMO_CONFIG, parse_config  # noqa: E402

CONFIGS = {"demo": DEMO_CONFIG, "prose": PROSE_DEMO_CONFIG}


def run(suite: str, share: float, iterations: int, tmp: Path) -> dict:
    data = json.loads(CONFIGS[suite].read_text())
    data |= {"target_pass_rate": 100, "max_iterations": iterations}
    data["datagen"] = data["datagen"] | {"rehearsal_share": share}
    data["serving"] = {"promote": "always"}
    os.environ["BCOMC_HOME"] = str(tmp / "home")
    store = ArtifactStore(tmp / "home")
    t0 = time.monotonic()
    with dg.instance_for_test() as instance:
        defs = driver.load_defs()
        driver.launch(instance, defs, store, parse_config(data), "bench")
        driver.drive(instance, defs, store, "bench", out=lambda s: None)
    eff = stages.record_effectiveness(store, "bench")
    last = store.report("bench", campaign_state.latest_iteration(store, "bench"))
    drops = [r for r in eff.regressions if r.before > 0]
    return {
        "rates": [g.pass_rate for g in eff.iterations],
        "drops": drops,
        "wall_s": time.monotonic() - t0,
        "largest": max((r.before - r.after for r in drops), default=0.0),
        "analyzed": last.pass_rate_analyzed,
        "held_out": last.pass_rate_held_out,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suites", nargs="+", default=["demo", "prose"], choices=sorted(CONFIGS))
    p.add_argument("--shares", nargs="+", type=float, default=[0.0, 0.25])
    p.add_argument("--iterations", type=int, default=3)
    args = p.parse_args()
    print(
        f"{'suite':<6} {'rehearsal':>9}  {'pass rate by iteration':<24} {'drops':>5} {'largest':>7} "
        f"{'analyzed':>8} {'held out':>8} {'wall s':>6}"
    )
    for suite in args.suites:
        for share in args.shares:
            with tempfile.TemporaryDirectory() as tmp:
                r = run(suite, share, args.iterations, Path(tmp))
            rates = " → ".join(f"{x:.1f}" for x in r["rates"])
            print(
                f"{suite:<6} {share:>9.2f}  {rates:<24} {len(r['drops']):>5} {r['largest']:>7.1f} "
                f"{r['analyzed']:>8.1f} {r['held_out']:>8.1f} {r['wall_s']:>6.0f}",
                flush=True,
            )
            for d in r["drops"]:
                print(f"{'':<18}iteration {d.iteration}: {d.service} {d.before:.0f}% → {d.after:.0f}%")


if __name__ == "__main__":
    main()
