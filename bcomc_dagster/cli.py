"""``bcomc``: demo, launch, validate, grade, advance, resume, stop, status, report.

Exit codes say what happened: 0 done (a campaign reached its target), 1 a stage failed, 2 bad input
(config, suite, campaign name), 3 the campaign stopped short of its target (max iterations, budget),
4 a model server failed (deploy, serving), 5 a model provider failed (the analyzer's, generator's or
judge's API). With ``--json`` the result goes to stdout as JSON and everything else to stderr.

Over 300 lines: one short function per command and the argument parser that documents them; the work is
in ``driver`` and ``campaign_state``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bcomc_dagster import campaign_state
from bcomc_dagster.artifacts import CONFIG, EFFECTIVENESS_MD, REPORT
from bcomc_dagster.config import DEMO_CONFIGS, FORMS_DEMO_CONFIG, PROSE_DEMO_CONFIG
from bcomc_dagster.errors import BcomcError, InputError, ServingError, StageFailed
from bcomc_dagster.text import clip

if TYPE_CHECKING:
    import dagster as dg

    from bcomc_dagster.artifacts import ArtifactStore
    from bcomc_dagster.evals.suite import Suite
    from bcomc_dagster.loop import Outcome

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_STOPPED, EXIT_SERVING, EXIT_PROVIDER = 0, 1, 2, 3, 4, 5
# error classes (by name: they may come from a step's serialized error) -> exit code
CAUSES = {
    "InputError": EXIT_INPUT,
    "BudgetExceeded": EXIT_STOPPED,
    "ServingError": EXIT_SERVING,
    "EvalIncomplete": EXIT_PROVIDER,
    "LLMError": EXIT_PROVIDER,
    "PermanentLLMError": EXIT_PROVIDER,
    "InvalidAnswer": EXIT_PROVIDER,
    "CampaignBusy": EXIT_INPUT,
}


def exit_code(e: BcomcError) -> int:
    if isinstance(e, StageFailed):
        return CAUSES.get(e.cause or "", EXIT_FAILED)
    if isinstance(e, ServingError):
        return EXIT_SERVING
    return CAUSES.get(type(e).__name__, EXIT_INPUT if isinstance(e, InputError) else EXIT_FAILED)


def _ctx() -> tuple[dg.DagsterInstance, dg.Definitions, ArtifactStore]:
    import dagster as dg

    from bcomc_dagster import driver
    from bcomc_dagster.artifacts import ArtifactStore
    from bcomc_dagster.files import home

    driver.ensure_dagster_home()
    return dg.DagsterInstance.get(), driver.load_defs(), ArtifactStore(home())


@contextlib.contextmanager
def _bars(enabled: bool) -> Iterator[None]:
    """Progress bars for generation, fine-tuning and eval while the loop runs here (on a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bcomc_dagster import progress

    console = Console()
    if not (enabled and console.is_terminal):
        yield
        return
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with (
        Progress(*cols, console=console, transient=True) as bar,
        progress.watching(progress.rich_watcher(bar)),
    ):
        yield


def held_out_line(outcome: Outcome) -> str:
    """The unbiased figure beside the decided one, or why there is none."""
    if not outcome.held_out_pass_rates:
        return "held-out part: none (held_out_fraction 0): no unbiased figure"
    held = ", ".join(f"{k}: {v:.1f}%" for k, v in outcome.held_out_pass_rates.items() if v is not None)
    return f"held-out part (drives no decision; the unbiased figure): {held}"


def emit(args: argparse.Namespace, data: Any) -> None:
    print(json.dumps(data, indent=2, default=str), file=args.stdout)


def suite_warnings(suite: Suite) -> list[str]:
    """Loose references: an alias that lets the judge pass an answer the reference would not."""
    from bcomc_dagster.evals.judge import loose_aliases

    return [
        f"{suite.path / 'questions.jsonl'}: question {q.id}: alias {a!r} is a bare number where the "
        f"reference {q.reference!r} has a unit the question does not name; the judge passes an answer "
        f"that says {a!r} with no unit"
        for q in suite.questions
        for a in loose_aliases(q)
    ]


def cmd_validate(args: argparse.Namespace) -> int:
    from bcomc_dagster.config import load_config
    from bcomc_dagster.evals.suite import load_suite
    from bcomc_dagster.launch_checks import check_base, check_docs

    cfg = load_config(args.config)
    suite = load_suite(cfg.eval_suite)
    check_docs(cfg)
    kind = check_base(cfg)
    warnings = suite_warnings(suite)
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.json:
        emit(
            args,
            {
                "config": str(args.config),
                "valid": True,
                "suite": suite.name,
                "services": len(suite.services),
                "questions": len(suite.questions),
                "base": kind,
                "warnings": warnings,
                "resolved": cfg.model_dump(mode="json"),
            },
        )
        return EXIT_OK
    print(
        f"{args.config}: valid; base model {cfg.trained_model[0]} ({kind}); suite {suite.name}: "
        f"{len(suite.services)} services, {len(suite.questions)} questions"
    )
    return EXIT_OK


def _launch(
    args: argparse.Namespace, config_path: Path, drive: bool, prefix: str, suite: str | None = None
) -> int:
    from bcomc_dagster import driver
    from bcomc_dagster.config import load_config
    from bcomc_dagster.launch_checks import check_base, check_docs
    from bcomc_dagster.reports import campaign as report_page

    cfg = load_config(config_path)
    if suite is not None:  # a demo's settings on another suite of the same docs
        cfg = cfg.model_copy(update={"eval_suite": suite})
    check_docs(cfg)
    check_base(cfg)
    instance, defs, store = _ctx()
    campaign = args.campaign or driver.default_campaign_name(prefix)
    cursor = driver._latest_cursor(instance)
    driver.launch(instance, defs, store, cfg, campaign)
    print(
        f"campaign {campaign}: launched (target {cfg.target_pass_rate:g}%, at most {cfg.max_iterations} "
        "iterations)"
    )
    if not drive:
        print(
            "the sensor of a running `dagster dev` (make dev) drives it from here; `bcomc status` follows it"
        )
        if args.json:
            emit(args, {"campaign": campaign, "status": "launched"})
        return EXIT_OK
    t0 = time.monotonic()
    with _bars(not args.json):
        outcome = driver.drive(instance, defs, store, campaign, cursor=cursor)
    if outcome is None:
        print(
            f"campaign {campaign}: waiting (auto_advance is off): `bcomc advance {campaign}` runs the "
            "next iteration"
        )
        if args.json:
            emit(args, {"campaign": campaign, "status": "waiting"})
        return EXIT_OK
    html, _ = report_page.write(store, campaign)
    if args.json:
        emit(
            args,
            {
                **outcome.model_dump(mode="json"),
                "report": str(html),
                "seconds": round(time.monotonic() - t0, 1),
            },
        )
    else:
        rates = ", ".join(f"{k}: {v:.1f}%" for k, v in outcome.pass_rates.items())
        print(
            f"\ncampaign {campaign}: {outcome.status} after {outcome.iterations} iteration(s) in "
            f"{time.monotonic() - t0:.0f} s"
        )
        print(f"  pass rate by iteration (0 = baseline; the decided part): {rates}")
        print(f"  {held_out_line(outcome)}")
        print(
            f"  best iteration {outcome.best_iteration} ({outcome.best_pass_rate:.1f}%); cost "
            f"${outcome.cost_usd:.4f}"
        )
        effectiveness = store.path(campaign, None, EFFECTIVENESS_MD)
        if effectiveness.exists():
            print("\n" + effectiveness.read_text())
        print(f"  report: {html}")
        print(f"  artifacts: {store.campaign_dir(campaign)}")
        print(f"  Dagster instance: {instance.root_directory} (make dev, then open http://127.0.0.1:3000)")
    return EXIT_OK if outcome.status == "target_reached" else EXIT_STOPPED


def cmd_demo(args: argparse.Namespace) -> int:
    own = {"prose": PROSE_DEMO_CONFIG, "forms": FORMS_DEMO_CONFIG}  # suites with their own demo config
    if args.suite in own and args.model != "bcomc-tiny":
        raise InputError(f"demo --suite {args.suite}: runs on the embedded bcomc-tiny only (drop --model)")
    config = own.get(args.suite, DEMO_CONFIGS[args.model])
    other = args.suite if args.suite not in ("demo", *own) else None
    return _launch(args, config, drive=True, prefix=args.suite, suite=other)


def cmd_launch(args: argparse.Namespace) -> int:
    return _launch(args, Path(args.config), drive=args.drive, prefix="campaign")


def cmd_advance(args: argparse.Namespace) -> int:
    from bcomc_dagster import driver

    instance, defs, store = _ctx()
    with _bars(not args.json):
        decision = driver.advance(instance, defs, store, args.campaign)
    last = campaign_state.latest_iteration(store, args.campaign)
    if args.json:
        emit(
            args,
            {
                "campaign": args.campaign,
                "decision": decision.value,
                "iteration": last,
                "pass_rate": store.report(args.campaign, last).pass_rate,
            },
        )
    return EXIT_STOPPED if decision.final and decision.value != "target_reached" else EXIT_OK


def cmd_grade(args: argparse.Namespace) -> int:
    from bcomc_dagster import registries
    from bcomc_dagster.artifacts import ArtifactStore
    from bcomc_dagster.config import load_config, parse_config
    from bcomc_dagster.evals.grading import grade_answers, read_answers
    from bcomc_dagster.evals.suite import load_suite
    from bcomc_dagster.files import home

    suite = load_suite(args.suite)
    answers = read_answers(Path(args.answers), suite)
    if args.config:  # the judge settings of a campaign config (an LLM judge's backend and model)
        cfg = load_config(args.config).model_copy(update={"eval_suite": str(suite.path)})
        cfg = cfg.model_copy(update={"judge": args.judge}) if args.judge else cfg
    else:
        cfg = parse_config({"eval_suite": str(suite.path), "judge": args.judge or "strict"}, source="--judge")
    judge = registries.judge(registries.Env(ArtifactStore(home()), cfg, "grade"))
    result = grade_answers(judge, suite, answers)
    if args.json:
        data = result.model_dump(include={"results", "pass_rate", "grades", "judge", "suite", "questions"})
        emit(args, data)
        return EXIT_OK
    width = max(len(r.id) for r in result.results)
    for r in result.results:
        print(f"{r.id:<{width}}  {'pass' if r.passed else 'FAIL'}  {r.grade:<13}  {r.reason}")
    print(result.summary())
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from bcomc_dagster.reports import campaign as report_page

    _, _, store = _ctx()
    if not store.path(args.campaign, None, CONFIG).exists():
        raise InputError(f"campaign {args.campaign!r}: no such campaign under {store.root}")
    html, md = report_page.write(store, args.campaign)
    r = report_page.collect(store, args.campaign)
    if args.json:
        emit(
            args,
            {
                "campaign": args.campaign,
                "status": r.status,
                "html": str(html),
                "markdown": str(md),
                "pass_rates": r.rates,
                "cost_usd": r.cost_usd,
            },
        )
    else:
        print(f"{args.campaign}: {r.status}; report written to {html} and {md}")
    return EXIT_OK


def _status_row(instance: dg.DagsterInstance, store: ArtifactStore, c: str, row: dict[str, Any]) -> None:
    """Fill one campaign's status row from its artifacts (raises on a config or record it cannot read)."""
    from bcomc_dagster import campaign_state, costs, driver

    row["status"] = "unreadable"  # until its state is read
    active = driver.settle_runs(instance, store, c)  # a run whose process died is failed, not running
    row["status"] = campaign_state.state(store, c, active)
    try:
        if store.iterations(c, having=REPORT):  # none yet: launched, the baseline not evaluated
            last = campaign_state.latest_iteration(store, c)
            rep = store.report(c, last)
            row.update(
                iteration=last,
                pass_rate=rep.decided_pass_rate,
                delta=rep.improvement_delta,
                cost_usd=costs.campaign_cost(store, c),
                skipped=campaign_state.skipped_services(store, c),
            )
    except BcomcError as e:  # an unreadable artifact: say which, and go on
        row["failure"] = f"unreadable: {e}"
    fail = campaign_state.last_failure(store, c)
    if fail and row["status"] == "failed":
        row["failure"] = f"iteration {fail.iteration} {fail.stage}: {clip(fail.error.splitlines()[0], 200)}"
    now = campaign_state.live(store, c)
    if now:
        row.update(live=f"{now.model} (it {now.iteration})", endpoint=now.endpoint)


def cmd_status(args: argparse.Namespace) -> int:
    from bcomc_dagster import campaign_state
    from bcomc_dagster.defs.partitions import campaigns

    instance, _, store = _ctx()
    if args.campaign:
        campaign_state.require(store, args.campaign)  # an unknown campaign is an error, not "launched"
    assert campaigns.name is not None  # named in defs/partitions.py
    names = [args.campaign] if args.campaign else instance.get_dynamic_partitions(campaigns.name)
    rows, orphans = [], []
    row: dict[str, Any]  # one campaign's line, JSON with --json
    for c in names:
        row = {
            "campaign": c,
            "iteration": None,
            "pass_rate": None,
            "delta": None,
            "status": "launched",
            "cost_usd": None,
            "skipped": {},
            "live": None,
            "endpoint": None,
            "failure": None,
        }
        if not store.path(c, None, CONFIG).exists():
            row["status"] = "unknown (no artifacts here)"
            rows.append(row)
            continue
        try:
            _status_row(instance, store, c, row)
        except (BcomcError, ValueError, OSError) as e:  # one bad campaign never hides the others
            row["failure"] = f"unreadable: {clip(str(e), 300)}"
            if campaign_state.holder(store, c):
                row["status"] = "running"  # a process holds it: running, readable or not; nothing is reaped
            elif row["status"] not in campaign_state.FINAL:
                row["status"] = "unreadable"
        try:
            found = campaign_state.orphans(store, c, row["status"])
        except (BcomcError, ValueError, OSError) as e:  # a server record it cannot read: say so
            found = []
            row["failure"] = f"unreadable server records: {clip(str(e), 300)}"
        if found and args.reap:
            for o in campaign_state.reap(store, found):
                print(
                    f"{c}: stopped orphaned model server pid {o.pid} (port {o.port}; {o.why})",
                    file=sys.stderr,
                )
            found = []
        orphans += found
        rows.append(row)
    if args.json:
        emit(
            args, {"campaigns": rows, "orphans": [o.model_dump() for o in orphans]} if args.orphans else rows
        )
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table("campaign", "iteration", "pass rate", "delta", "status", "cost", "live model")
    for r in rows:
        table.add_row(
            r["campaign"],
            "-" if r["iteration"] is None else str(r["iteration"]),
            "-" if r["pass_rate"] is None else f"{r['pass_rate']:.1f}%",
            "-" if r["delta"] is None else f"{r['delta']:+.1f}",
            r["status"],
            "-" if r["cost_usd"] is None else f"${r['cost_usd']:.4f}",
            r["live"] or "-",
        )
    Console().print(table)
    for r in rows:
        if r["status"] == "unreadable":
            print(f"{r['campaign']}: {r['failure']}")
        elif r["failure"]:
            print(f"{r['campaign']}: failed at {r['failure']}; `bcomc resume {r['campaign']}` continues it")
        for i, services in r["skipped"].items():
            print(f"{r['campaign']}: iteration {i} skipped {', '.join(services)} (generation kept failing)")
        if r["endpoint"]:
            print(f"{r['campaign']}: {r['live']} at {r['endpoint']}")
    for o in orphans:
        print(
            f"{o.campaign}: orphaned model server pid {o.pid} on port {o.port} ({o.why}); `bcomc status "
            "--reap` stops it"
        )
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    from bcomc_dagster import campaign_state, driver

    instance, _, store = _ctx()
    finished = driver.finished(store, args.campaign)
    if finished:  # its outcome stands; only a final model it left live is stopped
        stopped = campaign_state.stop_servers(store, args.campaign)
        if args.json:
            emit(args, {"campaign": args.campaign, "status": finished, "servers_stopped": stopped})
        else:
            print(
                f"campaign {args.campaign}: already finished ({finished}); "
                + (f"stopped the model servers it left live {stopped}" if stopped else "nothing to stop")
            )
        return EXIT_OK
    stopped = driver.stop(instance, store, args.campaign)
    if args.json:
        emit(args, {"campaign": args.campaign, "status": "stopped", "servers_stopped": stopped})
    else:
        print(
            f"campaign {args.campaign}: stopped"
            + (f"; stopped model servers {stopped}" if stopped else "; no model server was running")
        )
        print(f"`bcomc resume {args.campaign}` continues it")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    from bcomc_dagster import driver

    instance, defs, store = _ctx()
    t0 = time.monotonic()
    with _bars(not args.json):
        outcome = driver.resume(instance, defs, store, args.campaign)
    if outcome is None:
        print(
            f"campaign {args.campaign}: waiting (auto_advance is off): `bcomc advance {args.campaign}` "
            "runs the next iteration"
        )
        if args.json:
            emit(args, {"campaign": args.campaign, "status": "waiting"})
        return EXIT_OK
    if args.json:
        emit(args, {**outcome.model_dump(mode="json"), "seconds": round(time.monotonic() - t0, 1)})
    else:
        rates = ", ".join(f"{k}: {v:.1f}%" for k, v in outcome.pass_rates.items())
        print(
            f"campaign {args.campaign}: {outcome.status} after {outcome.iterations} iteration(s); pass "
            f"rate by iteration: {rates}"
        )
    return EXIT_OK if outcome.status == "target_reached" else EXIT_STOPPED


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="bcomc",
        description="Closed-loop model improvement on Dagster.",
        epilog="exit codes: 0 done, 1 a stage failed, 2 bad input, 3 stopped short of the "
        "target, 4 a model server failed, 5 a model provider failed",
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("demo", help="run the demo campaign to its outcome on the embedded defaults")
    s.add_argument("--campaign", help="campaign name (default: demo-TIMESTAMP)")
    s.add_argument(
        "--model",
        choices=sorted(DEMO_CONFIGS),
        default="bcomc-tiny",
        help="base model: the random-weight bcomc-tiny (default) or the pretrained SmolLM2-135M-Instruct",
    )
    s.add_argument(
        "--suite",
        choices=("demo", "prose", "demo-reworded", "forms"),
        default="demo",
        help="docs with reference lists (demo, default), written as prose in Markdown, text and HTML "
        "(prose), the demo's docs with every question worded as people ask it (demo-reworded), or five "
        "council forms generated as the form-qa dataset type (forms)",
    )
    s.set_defaults(func=cmd_demo)
    s = sub.add_parser("launch", help="validate a config, register the campaign and start it")
    s.add_argument("config")
    s.add_argument("--campaign", help="campaign name (default: campaign-TIMESTAMP)")
    s.add_argument("--drive", action="store_true", help="run the loop in this process instead of the daemon")
    s.set_defaults(func=cmd_launch)
    s = sub.add_parser("validate", help="check a campaign config and its suite")
    s.add_argument("config")
    s.set_defaults(func=cmd_validate)
    s = sub.add_parser("grade", help="grade answers produced anywhere against a suite, with a judge")
    s.add_argument("suite", help="a built-in suite name or a suite folder")
    s.add_argument("answers", help='a JSONL file: one {"id": ..., "answer": ...} per line')
    s.add_argument("--judge", help="a judge by name (default: strict, or the config's)")
    s.add_argument("--config", help="a campaign config to take the judge settings from (an LLM judge)")
    s.set_defaults(func=cmd_grade)
    s = sub.add_parser("advance", help="run the next iteration of a campaign by hand")
    s.add_argument("campaign")
    s.set_defaults(func=cmd_advance)
    s = sub.add_parser(
        "status", help="campaigns: iteration, pass rate, delta, status, cost, what is live, orphans"
    )
    s.add_argument("campaign", nargs="?")
    s.add_argument(
        "--reap", action="store_true", help="stop the model servers of campaigns that no longer run"
    )
    s.add_argument(
        "--orphans", action="store_true", help="with --json: {campaigns, orphans} instead of the rows"
    )
    s.set_defaults(func=cmd_status)
    s = sub.add_parser("stop", help="stop a campaign: its model servers stop, the sensor advances it no more")
    s.add_argument("campaign")
    s.set_defaults(func=cmd_stop)
    s = sub.add_parser(
        "resume", help="continue a campaign from its last complete stage (after a crash, a failure or stop)"
    )
    s.add_argument("campaign")
    s.set_defaults(func=cmd_resume)
    s = sub.add_parser(
        "report", help="write a campaign's report (HTML and Markdown) into its artifact folder"
    )
    s.add_argument("campaign")
    s.set_defaults(func=cmd_report)
    for s in sub.choices.values():
        s.add_argument(
            "--json", action="store_true", help="the result as JSON on stdout; everything else on stderr"
        )
    args = p.parse_args(argv)
    args.stdout = sys.stdout
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    try:
        with quiet:
            return cast(int, args.func(args))  # every cmd_* returns an exit code
    except BcomcError as e:
        code = exit_code(e)
        print(f"{'error' if code == EXIT_INPUT else 'failed'}: {e}", file=sys.stderr)
        if args.json:
            emit(
                args,
                {"error": str(e), "exit_code": code, "cause": getattr(e, "cause", None) or type(e).__name__},
            )
        return code


if __name__ == "__main__":
    sys.exit(main())
