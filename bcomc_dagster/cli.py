"""``bcomc``: demo, launch, validate, advance, status."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bcomc_dagster.errors import BcomcError, InputError

DEMO_CONFIG = Path(__file__).parent / "suites" / "demo" / "campaign.json"


def _ctx():
    import dagster as dg

    from bcomc_dagster import driver
    from bcomc_dagster.artifacts import ArtifactStore
    from bcomc_dagster.defs.resources import default_home

    driver.ensure_dagster_home()
    return dg.DagsterInstance.get(), driver.load_defs(), ArtifactStore(default_home())


def cmd_validate(args) -> int:
    from bcomc_dagster.config import load_config
    from bcomc_dagster.evals.suite import load_suite

    cfg = load_config(args.config)
    suite = load_suite(cfg.eval_suite)
    print(f"{args.config}: valid; suite {suite.name}: {len(suite.services)} services, {len(suite.questions)} questions")
    return 0


def _launch(config_path: Path, campaign: str | None, drive: bool, prefix: str) -> int:
    from bcomc_dagster import driver, stages
    from bcomc_dagster.config import load_config

    cfg = load_config(config_path)
    instance, defs, store = _ctx()
    campaign = campaign or driver.default_campaign_name(prefix)
    cursor = driver._latest_cursor(instance)
    driver.launch(instance, defs, store, cfg, campaign)
    print(f"campaign {campaign}: launched (target {cfg.target_pass_rate:g}%, at most {cfg.max_iterations} iterations)")
    if not drive:
        print("the sensor of a running `dagster dev` (make dev) drives it from here; `bcomc status` follows it")
        return 0
    t0 = time.monotonic()
    outcome = driver.drive(instance, defs, store, campaign, cursor=cursor)
    if outcome is None:
        print(f"campaign {campaign}: waiting (auto_advance is off): `bcomc advance {campaign}` runs the next iteration")
        return 0
    rates = ", ".join(f"{k}: {v:.1f}%" for k, v in outcome.pass_rates.items())
    print(f"\ncampaign {campaign}: {outcome.status} after {outcome.iterations} iteration(s) in {time.monotonic() - t0:.0f} s")
    print(f"  pass rate by iteration (0 = baseline): {rates}")
    print(f"  best iteration {outcome.best_iteration} ({outcome.best_pass_rate:.1f}%)")
    report = store.path(campaign, None, stages.EFFECTIVENESS_MD)
    if report.exists():
        print("\n" + report.read_text())
    print(f"  artifacts: {store.campaign_dir(campaign)}")
    print(f"  Dagster instance: {instance.root_directory} (make dev, then open http://127.0.0.1:3000)")
    return 0 if outcome.status == "target_reached" else 3


def cmd_demo(args) -> int:
    return _launch(DEMO_CONFIG, args.campaign, drive=True, prefix="demo")


def cmd_launch(args) -> int:
    return _launch(Path(args.config), args.campaign, drive=args.drive, prefix="campaign")


def cmd_advance(args) -> int:
    from bcomc_dagster import driver

    instance, defs, store = _ctx()
    driver.advance(instance, defs, store, args.campaign)
    return 0


def cmd_status(args) -> int:
    from bcomc_dagster import costs, stages
    from bcomc_dagster.defs.partitions import campaigns

    instance, _, store = _ctx()
    names = [args.campaign] if args.campaign else instance.get_dynamic_partitions(campaigns.name)
    rows = []
    for c in names:
        row = {"campaign": c, "iteration": None, "pass_rate": None, "delta": None, "status": "launched",
               "cost_usd": None, "skipped": {}, "live": None, "endpoint": None, "failure": None}  # fmt: skip
        try:
            last = stages.latest_iteration(store, c)
            rep = stages.read_report(store, c, last)
            row.update(iteration=last, pass_rate=rep.pass_rate, delta=rep.improvement_delta, status="running",
                       cost_usd=costs.campaign_cost(store, c), skipped=stages.skipped_services(store, c))  # fmt: skip
            out = store.path(c, None, stages.OUTCOME)
            if out.exists():
                row["status"] = json.loads(out.read_text())["status"]
            fail = stages.last_failure(store, c)
            if fail and not out.exists():
                row.update(status="failed", failure=f"iteration {fail.iteration} {fail.stage}: {fail.error.splitlines()[0][:200]}")
            now = stages.live(store, c)
            if now:
                row.update(live=f"{now.model} (it {now.iteration})", endpoint=now.endpoint)
        except BcomcError:
            pass
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("campaign", "iteration", "pass rate", "delta", "status", "cost", "live model")
    for r in rows:
        table.add_row(
            r["campaign"], "-" if r["iteration"] is None else str(r["iteration"]),
            "-" if r["pass_rate"] is None else f"{r['pass_rate']:.1f}%",
            "-" if r["delta"] is None else f"{r['delta']:+.1f}", r["status"],
            "-" if r["cost_usd"] is None else f"${r['cost_usd']:.4f}", r["live"] or "-",
        )  # fmt: skip
    Console().print(table)
    for r in rows:
        if r["failure"]:
            print(f"{r['campaign']}: failed at {r['failure']}")
        for i, services in r["skipped"].items():
            print(f"{r['campaign']}: iteration {i} skipped {', '.join(services)} (generation kept failing)")
        if r["endpoint"]:
            print(f"{r['campaign']}: {r['live']} at {r['endpoint']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bcomc", description="Closed-loop model improvement on Dagster.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("demo", help="run the demo campaign to its outcome on the embedded defaults")
    s.add_argument("--campaign", help="campaign name (default: demo-TIMESTAMP)")
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser("launch", help="validate a config, register the campaign and start it")
    s.add_argument("config")
    s.add_argument("--campaign", help="campaign name (default: campaign-TIMESTAMP)")
    s.add_argument("--drive", action="store_true", help="run the loop in this process instead of the daemon")
    s.set_defaults(func=cmd_launch)
    s = sub.add_parser("validate", help="check a campaign config and its suite")
    s.add_argument("config")
    s.set_defaults(func=cmd_validate)
    s = sub.add_parser("advance", help="run the next iteration of a campaign by hand")
    s.add_argument("campaign")
    s.set_defaults(func=cmd_advance)
    s = sub.add_parser("status", help="campaigns, their last iteration, pass rate and live model")
    s.add_argument("campaign", nargs="?")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_status)
    args = p.parse_args(argv)
    try:
        return args.func(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BcomcError as e:
        print(f"failed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
