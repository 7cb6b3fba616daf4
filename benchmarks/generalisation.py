"""Learned the docs or the suite's wording? A demo campaign, each iteration's model also asked a check
suite: the same facts in other words (or any suite of the same docs).

    .venv/bin/python benchmarks/generalisation.py [--model bcomc-tiny smollm2-135m] [--suite demo]
        [--check demo-reworded] [--iterations 3]

Each campaign runs the model's demo config on ``--suite`` through a real Dagster instance, every
iteration (target 100 %), with the demo's own gate. Then every iteration's checkpoint (0: the base) is
served again and asked the ``--check`` suite, graded by the campaign's judge. Prints, per iteration: the
pass rate on each suite (whole suite), and the questions lost and gained on each against the previous
iteration; then how many training rows resemble a check question (a figure that a lenient overlap would
inflate). ``--suite demo-reworded --check ''`` runs the loop on the reworded suite itself. It asserts
nothing.
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

from bcomc_dagster import campaign_state, driver, registries, stages  # noqa: E402
from bcomc_dagster.artifacts import ArtifactStore  # noqa: E402
from bcomc_dagster.config import DEMO_CONFIGS, parse_config  # noqa: E402
from bcomc_dagster.datagen import quality  # noqa: E402
from bcomc_dagster.evals.report import EvalReport  # noqa: E402
from bcomc_dagster.evals.runner import run_suite  # noqa: E402
from bcomc_dagster.evals.suite import load_suite  # noqa: E402
from bcomc_dagster.registries import Env  # noqa: E402


def lost_gained(before: EvalReport | None, after: EvalReport) -> tuple[int, int]:
    if before is None:
        return 0, 0
    was = {a.id: a.passed for a in before.answers}
    lost = sum(1 for a in after.answers if was.get(a.id) and not a.passed)
    gained = sum(1 for a in after.answers if a.passed and not was.get(a.id, False))
    return lost, gained


def ask(store: ArtifactStore, campaign: str, iteration: int, check: str) -> EvalReport:
    """Iteration ``iteration``'s model, served again, asked the check suite."""
    cfg = store.config(campaign)
    other = cfg.model_copy(update={"eval_suite": check})
    dep = stages.serve_iteration(store, cfg, campaign, iteration)
    return run_suite(
        load_suite(check),
        dep.endpoint,
        dep.served_model,
        registries.judge(Env(store, other, campaign)),
        cfg.serving.eval_concurrency,
        api_key="local",
        max_tokens=cfg.eval_max_tokens,
    )


def run(model: str, suite: str, check: str | None, iterations: int, tmp: Path) -> dict:
    data = json.loads(DEMO_CONFIGS[model].read_text())
    data |= {"eval_suite": suite, "target_pass_rate": 100, "max_iterations": iterations}
    # the server stays up after the outcome, so that each iteration is hot-swapped back on, not restarted
    data["serving"] = data.get("serving", {}) | {"stop_at_end": False}
    os.environ["BCOMC_HOME"] = str(tmp / "home")
    store = ArtifactStore(tmp / "home")
    t0 = time.monotonic()
    rows = []
    with dg.instance_for_test() as instance:
        defs = driver.load_defs()
        driver.launch(instance, defs, store, parse_config(data), "bench")
        try:
            driver.drive(instance, defs, store, "bench", out=lambda s: None)
            last = campaign_state.latest_iteration(store, "bench")
            prev: dict[str, EvalReport | None] = {"suite": None, "check": None}
            for i in range(last + 1):
                own = store.report("bench", i)
                other = ask(store, "bench", i, check) if check else None
                gate = store.promotion("bench", i)
                gen = store.generation("bench", i) if i else None
                rows.append(
                    {
                        "iteration": i,
                        "suite": own.pass_rate,
                        "suite_lg": lost_gained(prev["suite"], own),
                        "check": other.pass_rate if other else None,
                        "check_lg": lost_gained(prev["check"], other) if other else None,
                        "promoted": gate.promoted if gate else None,
                        "asked": sum(gen.asked.values()) if gen else 0,
                        "delivered": sum(gen.delivered.values()) if gen else 0,
                    }
                )
                prev = {"suite": own, "check": other}
        finally:
            campaign_state.stop_servers(store, "bench")
        outcome = store.outcome("bench")
        overlap = None
        if check:
            cfg = store.config("bench")
            q = cfg.quality
            index = quality.EvalIndex(
                {x.id: x.question for x in load_suite(check).questions},
                q.decontamination_ngram,
                q.decontamination_threshold,
            )
            overlap = len(quality.contaminated(store.dataset("bench", last), index))
    return {
        "rows": rows,
        "wall_s": time.monotonic() - t0,
        "overlap": overlap,
        "served": outcome.suite_pass_rates.get(outcome.final_iteration) if outcome else None,
        "status": outcome.status if outcome else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", nargs="+", default=["bcomc-tiny", "smollm2-135m"], choices=sorted(DEMO_CONFIGS))
    p.add_argument("--suite", default="demo", help="the suite the loop runs on")
    p.add_argument(
        "--check", default="demo-reworded", help="the suite each iteration is also asked ('' none)"
    )
    p.add_argument("--iterations", type=int, default=3)
    args = p.parse_args()
    check = args.check or None
    for model in args.model:
        with tempfile.TemporaryDirectory() as tmp:
            r = run(model, args.suite, check, args.iterations, Path(tmp))
        print(f"\n{model} on {args.suite}" + (f", each iteration also asked {check}" if check else ""))
        print(f"{'it':>2} {'promoted':>8} {'pairs':>9} {args.suite:>14} {'lost/gained':>11}", end="")
        print(f" {check:>14} {'lost/gained':>11}" if check else "")
        for row in r["rows"]:
            promoted = "-" if row["promoted"] is None else ("yes" if row["promoted"] else "no")
            pairs = f"{row['delivered']}/{row['asked']}" if row["iteration"] else "-"
            lg = "{}/{}".format(*row["suite_lg"])
            print(f"{row['iteration']:>2} {promoted:>8} {pairs:>9} {row['suite']:>13.1f}% {lg:>11}", end="")
            if check:
                clg = "{}/{}".format(*row["check_lg"])
                print(f" {row['check']:>13.1f}% {clg:>11}")
            else:
                print()
        print(f"outcome {r['status']}, served (whole suite) {r['served']}, {r['wall_s']:.0f} s", end="")
        print(f"; training rows resembling a {check} question: {r['overlap']}" if check else "")


if __name__ == "__main__":
    main()
