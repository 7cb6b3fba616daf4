"""The effectiveness report's figures on a small synthetic campaign, and the held-out split."""

import pytest

from bcomc_dagster import campaign_state
from bcomc_dagster.analysis.effectiveness import effectiveness
from bcomc_dagster.artifacts import PROMOTION, REPORT
from bcomc_dagster.evals.report import Answer, EvalReport
from bcomc_dagster.evals.suite import load_suite


def report(
    passed: dict[str, int], per_service: int = 4, held_out: frozenset[str] = frozenset()
) -> EvalReport:
    """A report in which ``passed[s]`` of service s's ``per_service`` questions pass."""
    answers = [
        Answer(
            id=f"{s}-{k}",
            service=s,
            question=f"q {s} {k}?",
            reference="r",
            answer="r" if k < n else "x",
            passed=k < n,
            reason="",
            held_out=f"{s}-{k}" in held_out,
        )
        for s, n in passed.items()
        for k in range(per_service)
    ]
    return EvalReport.build(answers, run_id="r", suite="s", model="m", endpoint="e", judge="reference")


# baseline: a 0/4, b 0/4, c 2/4; iteration 1 targets a, b; iteration 2 targets b, c
REPORTS = {
    0: report({"a": 0, "b": 0, "c": 2}),
    1: report({"a": 4, "b": 2, "c": 1}),
    2: report({"a": 3, "b": 4, "c": 4}),
}
TARGETED = {1: ["a", "b"], 2: ["b", "c"]}


def test_effectiveness_figures_on_a_synthetic_campaign():
    eff = effectiveness("c", 80, REPORTS, TARGETED, {1: 100, 2: 50})
    assert (eff.baseline_pass_rate, eff.final_pass_rate, eff.iterations_to_target) == (16.67, 91.67, 2)
    it1, it2 = eff.iterations
    assert (it1.delta, it1.targeted_gain, it1.untargeted_gain, it1.pairs_added) == (41.66, 75.0, -25.0, 100)
    assert (it2.delta, it2.targeted_gain, it2.untargeted_gain, it2.pairs_added) == (33.34, 62.5, -25.0, 50)
    assert [(r.iteration, r.service, r.before, r.after) for r in eff.regressions] == [
        (1, "c", 50, 25),
        (2, "a", 100, 75),
    ]
    assert eff.per_service["a"] == {0: 0.0, 1: 100.0, 2: 75.0}
    assert eff.ever_targeted_gain == 75.0 and eff.never_targeted_gain is None  # every service was targeted
    assert eff.pairs_total == 150 and eff.pairs_per_point == 2.0  # 150 pairs / 75 points


def test_effectiveness_markdown_shows_targets_gains_and_regressions():
    md = effectiveness("c", 80, REPORTS, TARGETED, {1: 100, 2: 50}).markdown()
    assert "Pass rate 16.7% → 91.7%; target 80%: iteration 2." in md
    header = next(line for line in md.splitlines() if line.startswith("|   iteration"))
    assert [c.strip() for c in header.strip("|").split("|")][3:6] == [
        "targeted",
        "targeted gain",
        "untargeted gain",
    ]
    rows = [line for line in md.splitlines() if line.startswith("|") and "a, b" in line]
    assert rows and "75.0" in rows[0] and "-25.0" in rows[0]
    assert "- iteration 1: **c** 50.0% → 25.0%" in md and "- iteration 2: **a** 100.0% → 75.0%" in md
    assert "2.0 per point gained" in md


def test_never_targeted_services_and_no_gain():
    reports = {0: report({"a": 1, "b": 1}), 1: report({"a": 1, "b": 0})}
    eff = effectiveness("c", 90, reports, {1: ["a"]}, {1: 10})
    assert eff.iterations_to_target is None and eff.pairs_per_point is None
    assert (eff.ever_targeted_gain, eff.never_targeted_gain) == (0.0, -25.0)
    assert "not reached" in eff.markdown() and "no gain to divide by" in eff.markdown()


def test_held_out_split_is_per_service_seeded_and_never_whole():
    suite = load_suite("demo")
    quarter = suite.held_out(0.25)
    assert len(quarter) == 10 and {q.service for q in suite.questions if q.id in quarter} == set(
        suite.services
    )
    assert suite.held_out(0.25) == quarter and suite.held_out(0.25, seed=1) != quarter
    assert (
        len(suite.held_out(0.5)) == 20 and len(suite.held_out(0.99)) == 30
    )  # one per service always analysed
    assert suite.held_out(0) == frozenset()


def test_report_shows_both_parts_and_the_analyzer_sees_only_its_own():
    held = frozenset({"a-0", "b-0"})  # the first question of each service, which passes when n > 0
    r = report({"a": 1, "b": 2}, held_out=held)
    assert (
        r.pass_rate == 37.5 and r.pass_rate_held_out == 100.0 and r.pass_rate_analyzed == pytest.approx(16.67)
    )
    seen = r.analyzed()
    assert {a.id for a in seen.answers}.isdisjoint(held) and len(seen.answers) == 6
    assert seen.pass_rate == pytest.approx(16.67) and seen.results_by_service["a"].total == 3
    assert all(not f.held_out for f in seen.failures)
    plain = report({"a": 1})
    assert plain.pass_rate_held_out is None and plain.analyzed() is plain


def test_the_gate_promotes_only_a_better_checkpoint_without_regressions():
    from bcomc_dagster.loop import gate

    live = report({"a": 4, "b": 0, "c": 2})  # 50 %
    better = gate(2, report({"a": 4, "b": 3, "c": 2}), 1, live, "if_better")
    assert better.promoted and better.reason == "promoted: 75.0% beats 50.0%" and not better.regressed
    assert better.paired == {"a": (0, 0), "b": (0, 3), "c": (0, 0)}
    same = gate(2, report({"a": 4, "b": 0, "c": 2}), 1, live, "if_better")
    assert not same.promoted and "does not beat the live model's 50.0% (iteration 1)" in same.reason
    assert gate(2, report({"a": 0, "b": 0, "c": 0}), 1, live, "always").promoted  # 'always' never rejects
    # a service that passed nothing before cannot regress
    assert gate(
        1, report({"a": 1, "b": 0, "c": 0}), 0, report({"a": 0, "b": 0, "c": 0}), "if_better"
    ).promoted


def test_a_single_flipped_question_is_not_a_regression():
    """The reworded demo's case: the base's one lucky answer must not block a +17.5-point checkpoint."""
    from bcomc_dagster.loop import gate

    live = report({"a": 1, "b": 0, "c": 0, "d": 0})  # a's one question right (a lucky answer)
    flipped = report({"a": 0, "b": 3, "c": 2, "d": 2})  # a lost it; everything else gained
    p = gate(1, flipped, 0, live, "if_better")
    assert p.promoted and p.paired["a"] == (1, 0) and not p.regressed
    # ... nor one flip on a service of four at 100 % (100 -> 75)
    assert gate(
        2, report({"a": 3, "b": 4, "c": 2}), 1, report({"a": 4, "b": 0, "c": 2}), "if_better"
    ).promoted


def test_a_service_that_loses_many_questions_is_still_rejected():
    from bcomc_dagster.loop import gate, regression_p

    live = report({"a": 4, "b": 0, "c": 0})
    lost = report({"a": 1, "b": 4, "c": 4})  # far better overall, but a lost 3 of 4
    p = gate(1, lost, 0, live, "if_better")
    assert not p.promoted and p.regressed == {"a": (100.0, 25.0)} and p.paired["a"] == (3, 0)
    assert "a 100% -> 25% (lost 3, gained 0)" in p.reason and "net loss above 1 question" in p.rule
    assert gate(1, lost, 0, live, "if_better", max_lost=3).promoted  # a looser count, the test alone
    # the exact paired test: 1 of 1 changed is a coin flip; 8 of 8 is not
    assert regression_p(1, 0) == 0.5 and regression_p(8, 0) == 1 / 256 and regression_p(0, 5) == 1.0
    assert regression_p(5, 5) == pytest.approx(0.623, abs=1e-3)
    big_live = report({"a": 12, "b": 0}, per_service=12)
    four = gate(1, report({"a": 8, "b": 12}, per_service=12), 0, big_live, "if_better", max_lost=100)
    assert four.promoted and not four.regressed  # 4 of 4 changed: p = 1/16, above 0.05
    five = gate(1, report({"a": 7, "b": 12}, per_service=12), 0, big_live, "if_better", max_lost=100)
    assert not five.promoted and five.regressed == {"a": (100.0, 58.33)}  # p = 1/32


def test_effectiveness_compares_each_checkpoint_with_the_live_model():
    # iteration 2 was rejected: iteration 3 is compared with iteration 1, and the final rate is the live one
    reports = {**REPORTS, 3: report({"a": 4, "b": 4, "c": 3})}
    eff = effectiveness("c", 80, reports, {**TARGETED, 3: ["c"]}, {}, promoted={2: False})
    assert [g.promoted for g in eff.iterations] == [True, False, True]
    it3 = eff.iterations[2]
    assert (
        it3.delta == round(reports[3].pass_rate - reports[1].pass_rate, 2)
        and eff.final_pass_rate == reports[3].pass_rate
    )
    assert eff.iterations_to_target == 3  # iteration 2 reached 91.7 % but was never live
    assert [(r.iteration, r.service, r.promoted) for r in eff.regressions] == [
        (1, "c", True),
        (2, "a", False),
    ]
    md = eff.markdown()
    assert "(checkpoint rejected: the live model stayed)" in md and "promoted" in md
    assert [(r.iteration, r.service) for r in eff.live_regressions] == [(1, "c")]  # 50 -> 25, promoted
    assert "losing more than 10 points in a promoted checkpoint): 1 (the gate judges" in md
    assert (
        "checkpoint): none (the gate"
        in effectiveness("c", 80, reports, {}, {}, promoted={1: False, 2: False}).markdown()
    )


def test_the_live_iteration_skips_rejected_checkpoints(tmp_path):
    from bcomc_dagster.artifacts import ArtifactStore
    from bcomc_dagster.loop import gate

    store = ArtifactStore(tmp_path)
    reports = {0: report({"a": 0}), 1: report({"a": 2}), 2: report({"a": 1}), 3: report({"a": 3})}
    for i, r in reports.items():
        store.write_json("c", i, REPORT, r)
    store.write_json("c", 2, PROMOTION, gate(2, reports[2], 1, reports[1], "if_better"))  # rejected
    assert [campaign_state.live_iteration(store, "c", i) for i in range(4)] == [
        0,
        1,
        1,
        3,
    ]  # 3: no record, from before the gate
    store.write_json("c", 3, PROMOTION, gate(3, reports[3], 1, reports[1], "if_better"))
    assert store.promotion("c", 3).promoted and campaign_state.live_iteration(store, "c", 3) == 3
