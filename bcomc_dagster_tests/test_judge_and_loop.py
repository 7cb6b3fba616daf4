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
