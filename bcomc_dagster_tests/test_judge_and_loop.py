import pytest

from bcomc_dagster.evals.judge import ReferenceJudge
from bcomc_dagster.evals.suite import Question
from bcomc_dagster.loop import Decision, decide
from bcomc_dagster.text import normalise

Q = Question(id="q", service="s", question="Port?", reference="7443", aliases=("seven four",))


@pytest.mark.parametrize(
    "answer, passed",
    [
        ("The default port of Quillstream is 7443.", True),
        ("7443", True),
        ("It is 74430.", False),  # whole words only
        ("port 443", False),
        ("Seven four!", True),  # alias, punctuation folded
        ("", False),
    ],
)
def test_reference_judge(answer, passed):
    assert ReferenceJudge().grade(Q, answer).passed is passed


def test_normalise_keeps_inner_marks():
    assert normalise("At 02:30 UTC, use quill.toml (HMAC-Vex)!") == "at 02:30 utc use quill.toml hmac-vex"


@pytest.mark.parametrize(
    "iteration, rate, auto, expected",
    [
        (0, 10, True, Decision.ADVANCE),
        (2, 80, True, Decision.TARGET_REACHED),
        (5, 79.9, True, Decision.MAX_ITERATIONS_REACHED),
        (1, 50, False, Decision.WAIT),
        (5, 50, False, Decision.MAX_ITERATIONS_REACHED),
    ],
)
def test_decide(iteration, rate, auto, expected):
    assert decide(iteration, rate, target=80, max_iterations=5, auto_advance=auto) is expected


def test_the_held_out_part_drives_no_decision():
    """A candidate that gains only on held-out questions is not promoted, and the target is judged on
    the decided part: the held-out figure stays an unbiased estimate."""
    from bcomc_dagster.loop import gate

    from .test_effectiveness import report

    held = frozenset({"a-3", "b-3"})  # one question of each service is only measured
    live = report({"a": 1, "b": 1}, held_out=held)  # a-0 and b-0 pass
    # the candidate passes the same decided questions, and both held-out ones (a-3, b-3)
    candidate = report({"a": 1, "b": 1}, held_out=held)
    candidate = candidate.model_copy(
        update={
            "answers": [
                x.model_copy(update={"passed": True}) if x.id in held else x for x in candidate.answers
            ]
        }
    )
    candidate = type(candidate).build(
        candidate.answers, run_id="r", suite="s", model="m", endpoint="e", judge="j"
    )
    assert candidate.pass_rate > live.pass_rate  # the whole suite improved ...
    assert candidate.decided_pass_rate == live.decided_pass_rate  # ... the decided part did not
    p = gate(1, candidate, 0, live, "if_better")
    assert not p.promoted and p.pass_rate == candidate.decided_pass_rate
    assert decide(1, candidate.decided_pass_rate, 50, 5, True) is Decision.ADVANCE  # 33.3 < 50 decided
    assert (
        candidate.against(live, 0).improvement_delta == 0.0 and candidate.against(live, 0).compared_with == 0
    )


def test_the_delta_is_against_the_live_model_not_a_rejected_checkpoint():
    from .test_effectiveness import report

    base, rejected, current = report({"a": 1}), report({"a": 4}), report({"a": 3})
    r = current.against(base, 0)  # iteration 1 (rejected) is skipped: base is what was live
    assert r.improvement_delta == 50.0 and r.compared_with == 0 and r.service_deltas == {"a": 50.0}
    assert current.against(rejected, 1).improvement_delta == -25.0
