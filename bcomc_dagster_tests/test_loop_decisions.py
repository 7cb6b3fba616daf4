"""The loop's decisions on whole campaigns in seconds: real Dagster runs, real stages and real training,
with the scripted deployer (fakes/deployer.py) in place of a model server, so that what each checkpoint
answers right is set by the test. The real servers' paths are tested once each elsewhere."""

from collections import defaultdict

import dagster as dg
import pytest

from bcomc_dagster import campaign_state, driver, registries
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import parse_config
from bcomc_dagster.defs.sensors import evaluate_tick
from bcomc_dagster.errors import BcomcError, InputError
from bcomc_dagster.evals.judge import Verdict
from bcomc_dagster.evals.suite import Question, load_suite

from .fakes.deployer import scripted

QUICK = {"datagen": {"examples_per_service": 2, "rehearsal_share": 0}, "finetune": {"epochs": 1}}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BCOMC_HOME", str(tmp_path / "home"))
    with dg.instance_for_test() as instance, scripted("demo") as script:
        yield instance, driver.load_defs(), ArtifactStore(tmp_path / "home"), script


def _by_service():
    out = defaultdict(list)
    for q in load_suite("demo").questions:
        out[q.service].append(q.id)
    return dict(out)


def _config(**over):
    return parse_config({"model_backend": "scripted", "held_out_fraction": 0, **QUICK, **over})


def _drive(instance, defs, store, name):
    return driver.drive(instance, defs, store, name, out=lambda s: None)


def test_the_gate_rejects_a_lost_service_not_a_flipped_question_and_the_best_stays_live(env):
    instance, defs, store, script = env
    svc = _by_service()
    names = sorted(svc)
    first = {q for s in names[:5] for q in svc[s]}  # 50 %
    script.right = {
        0: set(),
        1: first,
        2: (first - set(svc[names[0]])) | {q for s in names[5:8] for q in svc[s]},  # 70 %, loses a service
        3: (first - {svc[names[1]][0]}) | {q for s in names[5:7] for q in svc[s]},  # 67.5 %, one flipped
    }
    cfg = _config(target_pass_rate=100, max_iterations=3, serving={"final_model": "best"})
    driver.launch(instance, defs, store, cfg, "c-gate")
    outcome = _drive(instance, defs, store, "c-gate")
    assert outcome.pass_rates == {0: 0.0, 1: 50.0, 2: 70.0, 3: 67.5}
    p2, p3 = store.promotion("c-gate", 2), store.promotion("c-gate", 3)
    assert not p2.promoted and p2.paired[names[0]] == (4, 0) and names[0] in p2.regressed
    assert p2.restored == "c-gate-it1"  # the live model served again at once
    assert p3.promoted and p3.paired[names[1]] == (1, 0)  # one flipped question is noise, not a regression
    assert p3.live_iteration == 1  # judged against the live model, not the rejected checkpoint
    # the rejected checkpoint counts for nothing: the best is the best promoted one, and it is left live
    assert outcome.rejected == [2] and outcome.best_iteration == 3 and outcome.final_iteration == 3
    assert outcome.status == "max_iterations_reached" and outcome.final_pass_rate == 67.5
    # the next analysis after a rejection puts the regressed service first
    assert store.analysis("c-gate", 3).priority_services[names[0]] == 1  # though it passes on the live model


def test_the_target_stops_the_loop_and_the_sensor_asks_for_nothing_more(env):
    instance, defs, store, script = env
    every = {q.id for q in load_suite("demo").questions}
    script.right = {0: set(), 1: set(sorted(every)[:20]), 2: every}
    driver.launch(instance, defs, store, _config(target_pass_rate=80, max_iterations=5), "c-stop")
    outcome = _drive(instance, defs, store, "c-stop")
    assert outcome.status == "target_reached" and outcome.iterations == 2 and outcome.servers_stopped
    assert campaign_state.latest_iteration(store, "c-stop") == 2
    tick = evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs), store)
    assert not [r for r in tick.run_requests if r.tags["campaign"] == "c-stop"]


@pytest.mark.parametrize(("final_model", "live"), [("last", 2), ("base", 0), ("best", 1)])
def test_the_final_model_rule_picks_what_stays_live(env, final_model, live):
    instance, defs, store, script = env
    svc = _by_service()
    names = sorted(svc)
    one = {q for s in names[:4] for q in svc[s]}
    # iteration 2 is promoted (always) though worse: "last" keeps it, "best" goes back to iteration 1
    script.right = {0: set(), 1: one, 2: set(list(sorted(one))[:8])}
    cfg = _config(
        target_pass_rate=100,
        max_iterations=2,
        serving={"promote": "always", "final_model": final_model, "stop_at_end": False},
    )
    name = f"c-final-{final_model}"
    driver.launch(instance, defs, store, cfg, name)
    outcome = _drive(instance, defs, store, name)
    assert outcome.final_iteration == live and outcome.live_model is not None
    now = campaign_state.live(store, name)
    assert now is not None and now.iteration == live


def test_a_failed_deploy_leaves_the_live_model_serving_and_resume_goes_on(env):
    instance, defs, store, script = env
    every = {q.id for q in load_suite("demo").questions}
    script.right = {0: set(), 1: set(sorted(every)[:12]), 2: every}
    script.fail_deploy = {2}
    driver.launch(instance, defs, store, _config(target_pass_rate=90, max_iterations=3), "c-fail")
    with pytest.raises(BcomcError, match="iteration 2 failed at deployment"):
        _drive(instance, defs, store, "c-fail")
    now = campaign_state.live(store, "c-fail")
    assert now is not None and now.model == "c-fail-it1"  # nothing half-deployed: iteration 1 serves
    failure = campaign_state.last_failure(store, "c-fail")
    assert failure is not None and failure.stage == "deploy" and failure.iteration == 2
    assert failure.restored == "c-fail-it1" and "as the test asked" in failure.error
    script.fail_deploy = set()
    outcome = driver.resume(instance, defs, store, "c-fail", out=lambda s: None)
    assert outcome.status == "target_reached" and outcome.iterations == 2


def test_manual_advance_stops_at_max_iterations(env):
    instance, defs, store, script = env
    script.right = {0: set(), 1: {"quillstream-1"}, 2: {"quillstream-1", "quillstream-2"}}
    cfg = _config(target_pass_rate=100, max_iterations=2, auto_advance=False)
    driver.launch(instance, defs, store, cfg, "c-manual")
    assert _drive(instance, defs, store, "c-manual") is None  # waits after the baseline
    assert campaign_state.latest_iteration(store, "c-manual") == 0
    driver.advance(instance, defs, store, "c-manual", out=lambda s: None)
    driver.advance(instance, defs, store, "c-manual", out=lambda s: None)
    assert campaign_state.latest_iteration(store, "c-manual") == 2
    # advancing at max iterations records the outcome (and stops the server) rather than only saying no
    decision = driver.advance(instance, defs, store, "c-manual", out=lambda s: None)
    assert decision.value == "max_iterations_reached"
    # the sensor, seeing iteration 2 at max iterations, asks for nothing more (no second outcome, no it. 3)
    ctx = dg.build_sensor_context(instance=instance, definitions=defs)
    assert not [r for r in evaluate_tick(ctx, store).run_requests if r.tags["campaign"] == "c-manual"]
    outcome = store.outcome("c-manual")
    assert outcome.status == "max_iterations_reached" and outcome.iterations == 2 and outcome.servers_stopped
    assert campaign_state.live(store, "c-manual") is None


def test_sensor_does_not_restart_a_campaign_that_was_driven_elsewhere(env):
    """A daemon whose sensor starts with an empty cursor must not re-run what `bcomc demo` already ran."""
    instance, defs, store, _ = env
    driver.launch(instance, defs, store, _config(target_pass_rate=100, max_iterations=1), "c-driven")
    outcome = _drive(instance, defs, store, "c-driven")
    assert outcome.status == "max_iterations_reached"
    fresh = evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs), store)
    assert not [r for r in fresh.run_requests if r.tags["campaign"] == "c-driven"]
    keys = {r.tags.get("dagster/run_key") for r in instance.get_runs()}
    assert {"c-driven:0", "c-driven:1", "c-driven:outcome"} <= keys  # what the daemon dedupes on


class LengthJudge:
    """A judge this test module adds to the registry: an answer passes when it is at least as long as the
    reference (nothing like the reference judge, so the report shows which one graded it)."""

    name = "length"

    def grade(self, question: Question, answer: str) -> Verdict:
        return Verdict(len(answer) >= len(question.reference), f"{len(answer)} characters")


def test_a_judge_added_from_outside_the_package_grades_a_campaign(env):
    """One class and one registry line: the config accepts the new name and the campaign's evals use it."""
    instance, defs, store, _ = env
    registries.JUDGES.add("length", lambda env: LengthJudge())
    try:
        cfg = _config(judge="length", target_pass_rate=1, max_iterations=1)
        driver.launch(instance, defs, store, cfg, "c-judge")
        outcome = _drive(instance, defs, store, "c-judge")
        report = store.report("c-judge", 0)
        assert report.judge == "length" and report.answers
        assert all(a.reason == f"{len(a.answer)} characters" for a in report.answers)
        assert {a.passed for a in report.answers} == {True, False}
        assert all(a.passed == (len(a.answer) >= len(a.reference)) for a in report.answers)
        # the base answers nothing right: the length judge passes what the reference judge fails
        assert outcome.pass_rates[0] == report.pass_rate > 0
        assert outcome.status == "target_reached" and outcome.iterations == 0
    finally:
        registries.JUDGES.remove("length")
    with pytest.raises(
        InputError, match=r"judge: unknown judge 'length'; expected one of \['strict', 'reference', 'llm'\]"
    ):
        parse_config({"judge": "length"})
