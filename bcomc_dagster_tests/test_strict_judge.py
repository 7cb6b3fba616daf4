"""The strict judge: the labelled table of the issue that made it, kinds of values, and the labelled
benchmark's thresholds (benchmarks/judge.py prints the same figures)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from bcomc_dagster.evals.judge import ReferenceJudge, StrictJudge, loose_aliases
from bcomc_dagster.evals.suite import Question, load_suite

DEMO = {q.id: q for q in load_suite("demo").questions}
JUDGE = StrictJudge()


def _by(text: str) -> Question:
    return next(q for q in DEMO.values() if text in q.question)


OLD_ALIASES = {"nimbusgate-2": ("1200",), "ferrocache-3": ("512",)}  # dropped: see loose_aliases
# the answers the containment judge got wrong, 12 of 12: each graded right now
TABLE = [
    ("Brambledb keeps 3 copies of each record, spread across 5 availability zones.", "replication", False),
    ("The Nimbusgate rate limit is 1200 requests per second.", "rate limit", False),
    ("A Ferrocache key may be at most 512 KB.", "key size", False),
    ("Ferrocache does not use snapshot mode; it persists with an append-only file.", "persistence", False),
    (
        "Quillstream's default port is either 8443 or 7443, depending on the release.",
        "Quillstream listen",
        False,
    ),
    ("Hollowbeam runs 12 edge locations across 38 countries.", "edge locations", False),
    ("Nimbusgate allows 1,200 requests per minute.", "rate limit", True),
    ("Driftkey rotates secrets every two weeks.", "rotation interval", True),
    ("The Hollowbeam cache TTL is ten minutes.", "Hollowbeam cache TTL", True),
    ("The snapshot schedule runs every day at 2:30 AM UTC.", "snapshot schedule", True),
    ("Quillstream reads its settings from /etc/quillstream/quill.toml.", "config file?", True),
    ("Clients must sign requests with HMAC\u2011Vex.", "auth scheme", True),
]


@pytest.mark.parametrize("answer, question, truth", TABLE)
def test_the_table_is_graded_right(answer, question, truth):
    q = _by(question)
    v = JUDGE.grade(q, answer)
    assert v.passed is truth, v.reason
    assert v.grade == ("correct" if truth else "incorrect") and v.reason
    # the containment judge had every one of them wrong (with the bare aliases the suite then had)
    was = q.model_copy(update={"aliases": q.aliases + OLD_ALIASES.get(q.id, ())})
    assert ReferenceJudge().grade(was, answer).passed is not truth


Q = Question(id="q", service="s", question="How long is the retention period?", reference="9 days")


@pytest.mark.parametrize(
    "answer, grade",
    [
        ("Retention is 9 days.", "correct"),
        ("216 hours", "correct"),  # converted
        ("nine days", "correct"),
        ("9 seconds", "incorrect"),  # same number, another unit
        ("The retention is 9.", "incorrect"),  # a bare number where the reference has a unit
        ("9 or 10 days", "incorrect"),  # a hedge between values
        ("Not 9 days.", "incorrect"),
        ("Messages are kept no more than 9 days.", "correct"),  # a limit is not a negation
        ("I'm not sure.", "not_attempted"),
        ("", "not_attempted"),
        ("It keeps messages for a while.", "not_attempted"),
    ],
)
def test_quantities_need_an_equivalent_unit(answer, grade):
    v = JUDGE.grade(Q, answer)
    assert v.grade == grade, v.reason


def test_verdicts_say_why():
    v = JUDGE.grade(_by("rate limit"), "The Nimbusgate rate limit is 1200 requests per second.")
    assert "1200 requests per second" in v.reason and "1200 requests per minute" in v.reason
    v = JUDGE.grade(
        _by("replication"), "Brambledb keeps 3 copies of each record across 5 availability zones."
    )
    assert "3 copies" in v.reason and "availability" in v.reason


def test_extra_correct_detail_passes_and_a_value_of_another_service_does_not():
    q = _by("Quillstream listen")
    assert JUDGE.grade(q, "Quillstream listens on 7443; messages up to 256 KB are kept 9 days.").passed
    assert not JUDGE.grade(q, "Brambledb listens on 6120.").passed


def test_loose_aliases_are_found():
    q = _by("rate limit")  # reference '1200 requests per minute'
    assert loose_aliases(q.model_copy(update={"aliases": ("1200", "1,200 requests per minute")})) == ["1200"]
    timeout = Question(id="t", service="s", question="After how many seconds?", reference="900 seconds")
    assert loose_aliases(timeout.model_copy(update={"aliases": ("900",)})) == []  # the question names it
    assert JUDGE.grade(timeout, "900").passed and not JUDGE.grade(timeout, "900 minutes").passed
    count = Question(
        id="c", service="s", question="How many attempts?", reference="4 attempts", aliases=("4",)
    )
    assert loose_aliases(count) == []  # a count is clear without its noun
    shipped = [q for s in ("demo", "prose") for q in load_suite(s).questions]
    assert [q.id for q in shipped if loose_aliases(q)] == []


def _benchmark():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "judge.py"
    spec = importlib.util.spec_from_file_location("judge_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_labelled_benchmark_thresholds():
    """The default judge: at most 2 % false passes and 5 % false fails on the labelled cases, every
    source of them (written while the judge was built, written after, real SmolLM2 answers)."""
    bench = _benchmark()
    cases = bench.load_cases()
    assert len(cases) >= 150 and {c.label for c in cases} == {"correct", "incorrect", "not_attempted"}
    r = bench.measure(StrictJudge(), cases)
    assert r["false_pass_rate"] <= 0.02 and r["false_fail_rate"] <= 0.05, r["wrong"]
    lenient = bench.measure(ReferenceJudge(), cases)  # the benchmark can tell a lenient judge apart
    assert lenient["false_pass_rate"] > 0.1


# -- bcomc grade and bcomc validate -------------------------------------------------------------------
def _answers(tmp_path, *lines: str) -> str:
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_grade_prints_each_verdict_and_a_json_summary(tmp_path, monkeypatch, capsys):
    from bcomc_dagster import cli

    monkeypatch.setenv("BCOMC_HOME", str(tmp_path / "home"))
    path = _answers(
        tmp_path,
        '{"id": "quillstream-1", "answer": "Port 7443."}',
        '{"id": "nimbusgate-2", "answer": "1200 requests per second", "model": "any"}',
        '{"id": "driftkey-2", "answer": "I am not sure."}',
    )
    assert cli.main(["grade", "demo", path]) == 0
    out = capsys.readouterr().out
    assert "quillstream-1  pass  correct" in out and "not_attempted  declines" in out
    assert "pass rate 33.3% (1 of 3 answers; the suite has 40 questions)" in out
    assert cli.main(["grade", "demo", path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["passed"], r["grade"]) for r in data["results"]] == [
        ("quillstream-1", True, "correct"),
        ("nimbusgate-2", False, "incorrect"),
        ("driftkey-2", False, "not_attempted"),
    ]
    assert data["pass_rate"] == 33.33 and all(r["reason"] for r in data["results"])
    assert cli.main(["grade", "demo", path, "--judge", "reference", "--json"]) == 0
    lenient = json.loads(capsys.readouterr().out)
    assert lenient["judge"] == "reference" and lenient["results"][0]["passed"] is True


@pytest.mark.parametrize(
    "lines, message",
    [
        (['{"id": "nope", "answer": "x"}'], "id 'nope' is not a question of suite 'demo'"),
        (['{"id": "quillstream-1"}'], "answer: Field required"),
        (["not json"], ":1: not a JSON object"),
        (
            ['{"id": "quillstream-1", "answer": "a"}', '{"id": "quillstream-1", "answer": "b"}'],
            "answered twice",
        ),
    ],
)
def test_grade_refuses_bad_answers_files(tmp_path, capsys, lines, message):
    from bcomc_dagster import cli

    assert cli.main(["grade", "demo", _answers(tmp_path, *lines)]) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert message in err and "answers.jsonl" in err


def test_validate_warns_of_loose_aliases(tmp_path, capsys):
    import shutil

    from bcomc_dagster import cli

    suite = tmp_path / "suite"
    shutil.copytree(load_suite("demo").path, suite)
    lines = (suite / "questions.jsonl").read_text().splitlines()
    lines = [
        ln.replace('"aliases": []', '"aliases": ["1200"]') if "nimbusgate-2" in ln else ln for ln in lines
    ]
    (suite / "questions.jsonl").write_text("\n".join(lines) + "\n")
    cfg = tmp_path / "c.json"
    cfg.write_text(
        json.dumps({"model_name": "bcomc-tiny", "model_backend": "local", "eval_suite": str(suite)})
    )
    assert cli.main(["validate", str(cfg), "--json"]) == 0
    warnings = json.loads(capsys.readouterr().out)["warnings"]
    assert len(warnings) == 1 and "question nimbusgate-2: alias '1200' is a bare number" in warnings[0]


YES = Question(id="b", service="s", question="Is compression enabled?", reference="yes")
NO = Question(id="c", service="s", question="Is compression disabled?", reference="no")
ALL = {q.id: q for s in ("demo", "prose") for q in load_suite(s).questions}


@pytest.mark.parametrize(
    "qid, answer, truth",
    [
        ("quillstream-2", "1" + "0" * 400 + " days", False),  # past float's range: not a value
        ("cindervault-2", "It does not run at 02:30 UTC", False),
        ("cindervault-2", "02:30 UTC or later", False),
        ("cindervault-2", "2:30AM UTC", True),
        ("cindervault-2", "02:30Z", True),
        ("cindervault-2", "02:30 most nights", True),  # "most" is no time zone
        ("cindervault-2", "02:30 CET", False),  # the zone-less alias keeps the reference's zone
        (YES, "It is not enabled", False),
        (NO, "No, it is enabled", True),  # a leading no answers the question
        ("quillstream-1", "Port 7443 is the one it listens on.", True),  # "one": a pronoun
        ("nimbusgate-4", "17 seconds (default), configurable from 1 to 60 seconds", True),  # extra detail
        ("sable-vault-3", "Leases last 12 hours; keys rotate every 30 days.", True),
        ("pinwheel-scheduler-2", "1 hour and 30 minutes", True),  # a compound duration
        ("quillstream-1", "Version 2.1 listens on 7443", True),  # a version is a label
        ("quillstream-2", "Data is kept for 9 days and is not deleted earlier", True),
        ("quillstream-2", "Retention never exceeds 9 days", True),
        ("quillstream-2", "Retention is 9 days. Sorry, 7 days.", False),  # a correction
        ("brambledb-1", "Probably 6120, but it could also be 6012.", False),
    ],
)
def test_odd_answers_a_review_tried(qid, answer, truth):
    q = ALL[qid] if isinstance(qid, str) else qid
    v = StrictJudge(ALL.values()).grade(q, answer)
    assert v.passed is truth, v.reason
