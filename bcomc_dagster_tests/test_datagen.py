import pytest

from bcomc_dagster.analysis.analyzer import analyze
from bcomc_dagster.artifacts import CONFIG, DATASET, REPORT
from bcomc_dagster.datagen import coordinator, dataset
from bcomc_dagster.datagen.extractive import ExtractiveWorker
from bcomc_dagster.datagen.facts import extract_facts
from bcomc_dagster.datagen.schema import Provenance, QAPair
from bcomc_dagster.evals.report import Answer, EvalReport, summarise
from bcomc_dagster.evals.suite import load_suite


@pytest.fixture(scope="module")
def suite():
    return load_suite("demo")


def test_facts_of_the_reference_lines(suite):
    facts = [f for p in coordinator.passages(suite, "quillstream") for f in extract_facts(p)]
    assert [f.attribute for f in facts][:2] == ["default port", "maximum message size"]
    assert facts[0].title == "Quillstream" and facts[0].value == "7443"
    assert facts[0].text == "- Default port: 7443" and facts[0].passage.path == "Quillstream > Reference"


def test_generated_pairs_are_grounded_and_carry_provenance(suite):
    r = coordinator.generate(suite, ["quillstream", "brambledb"], 12, ExtractiveWorker(), "c", 1)
    assert r.produced == {"quillstream": 12, "brambledb": 12} and not r.skipped_services
    for p in r.pairs:
        value = p.provenance.fact.split(": ", 1)[1]
        assert (
            value in p.answer and p.provenance.fact in p.provenance.snippet
        )  # the answer says what its passage says
        assert p.provenance.passage.startswith(f"docs/{p.service}.md#")
        assert p.provenance.iteration == 1 and p.provenance.model == "extractive"
    assert len({p.id for p in r.pairs}) == 24


def test_later_iterations_ask_for_new_phrasings(suite):
    first = coordinator.generate(suite, ["quillstream"], 10, ExtractiveWorker(), "c", 1)
    second = coordinator.generate(
        suite, ["quillstream"], 10, ExtractiveWorker(), "c", 2, already={"quillstream": 10}
    )
    assert not {p.question for p in first.pairs} & {p.question for p in second.pairs}


class Flaky:
    """Fails the first ``fails`` calls for one service, then works."""

    name = "flaky"
    needs_facts = True

    def __init__(self, service: str, fails: int):
        self.service, self.fails, self.calls = service, fails, 0

    def generate(self, request, prompt_config=None):
        if request.service == self.service and self.calls < self.fails:
            self.calls += 1
            raise TimeoutError("worker timed out")
        return ExtractiveWorker().generate(request)


def test_failing_service_is_retried_then_succeeds(suite):
    r = coordinator.generate(
        suite, ["quillstream", "brambledb"], 5, Flaky("brambledb", 3), "c", 1, max_retries=2
    )
    assert r.produced == {"quillstream": 5, "brambledb": 5}
    assert r.attempts["brambledb"] == 2 and not r.skipped_services


def test_service_that_keeps_failing_is_skipped_whole_and_reported(suite):
    r = coordinator.generate(
        suite, ["quillstream", "brambledb"], 5, Flaky("brambledb", 10**6), "c", 1, max_retries=2
    )
    assert set(r.produced) == {"quillstream"}
    assert "failed after 3 attempts: TimeoutError" in r.skipped_services["brambledb"]
    assert all(p.service == "quillstream" for p in r.pairs)


def _pair(q, a="A.", it=1):
    return QAPair(
        service="s",
        question=q,
        answer=a,
        provenance=Provenance(campaign="c", iteration=it, model="m", snippet="x"),
    )


def test_jsonl_roundtrip_and_bad_row(tmp_path):
    path = tmp_path / "d.jsonl"
    dataset.write_jsonl(path, [_pair("What is x?")])
    assert dataset.read_jsonl(path)[0].question == "What is x?"
    path.write_text(path.read_text() + '{"service": "s"}\n')
    with pytest.raises(ValueError, match=r"d.jsonl:2: not a training pair"):
        dataset.read_jsonl(path)


def _report(rates: dict[str, tuple[int, int]]) -> EvalReport:
    answers = [
        Answer(id=f"{s}{k}", service=s, question="q", reference="r", answer="a", passed=k < p, reason="")
        for s, (p, n) in rates.items()
        for k in range(n)
    ]
    rate, by = summarise(answers)
    return EvalReport(
        run_id="r",
        suite="t",
        model="m",
        endpoint="e",
        judge="j",
        pass_rate=rate,
        results_by_service=by,
        failures=[a for a in answers if not a.passed],
        answers=answers,
    )


def test_analyzer_targets_weakest_services_and_trends():
    before = _report(
        {"a": (0, 4), "b": (2, 4), "c": (4, 4), "d": (3, 4), "e": (1, 4), "f": (0, 4), "g": (2, 4)}
    )
    after = _report(
        {"a": (0, 4), "b": (1, 4), "c": (4, 4), "d": (3, 4), "e": (1, 4), "f": (0, 4), "g": (3, 4)}
    )
    a = analyze([before, after], examples_per_service=20)
    # worst first, ties (d, g at 75%) to the one not improving; never the perfect "c"; at most 5
    assert a.datagen_services == ["a", "f", "b", "e", "d"]
    assert a.priority_services["a"] == 1 and a.datagen_count == 20
    assert a.trend_analysis["b"] == "regressing" and a.trend_analysis["g"] == "improving"
    assert any("regressions: b" in s for s in a.suggested_actions)


def test_report_deltas():
    prev, cur = _report({"a": (1, 4), "b": (0, 4)}), _report({"a": (3, 4), "b": (0, 4)})
    r = cur.against(prev, 0)
    assert r.improvement_delta == 25.0 and r.service_deltas == {"a": 50.0, "b": 0.0}
    assert list(r.table()["delta"]) == [50.0, 0.0]


def test_learned_services_are_rehearsed_in_new_phrasings(suite, tmp_path):
    """Iteration 2 targets other services: the ones iteration 1 taught get rehearsal_share of the count."""
    from bcomc_dagster import stages
    from bcomc_dagster.artifacts import ArtifactStore
    from bcomc_dagster.config import parse_config

    store = ArtifactStore(tmp_path)
    store.write_json(
        "c", None, CONFIG, parse_config({"datagen": {"examples_per_service": 8, "rehearsal_share": 0.5}})
    )
    first = coordinator.generate(suite, ["brambledb", "driftkey"], 8, ExtractiveWorker(), "c", 1)
    dataset.write_jsonl(store.path("c", 1, DATASET), first.pairs)
    rates = {s: 100 if s in ("brambledb", "driftkey") else 0 for s in suite.services}
    for i in (0, 1):
        store.write_json(
            "c", i, REPORT, _suite_report(suite, rates if i else dict.fromkeys(suite.services, 0))
        )
    a = stages.analyze_failures(store, "c", 2)
    assert a.rehearsal_services == ["brambledb", "driftkey"] and a.rehearsal_count == 4
    assert not set(a.rehearsal_services) & set(a.datagen_services)
    result = stages.generate_examples(store, "c", 2, log=lambda s: None)
    assert result.asked == {**dict.fromkeys(a.datagen_services, 8), "brambledb": 4, "driftkey": 4}
    assert result.delivered == result.asked and not result.short
    old = {p.question for p in first.pairs}
    assert all(p.question not in old for p in result.pairs if p.service == "brambledb")  # new phrasings
    # rehearsal_share 0 turns it off
    store.write_json("d", None, CONFIG, parse_config({"datagen": {"rehearsal_share": 0}}))
    for i in (0, 1):
        store.write_json("d", i, REPORT, _suite_report(suite, rates))
    dataset.write_jsonl(store.path("d", 1, DATASET), first.pairs)
    assert stages.analyze_failures(store, "d", 2).rehearsal_services == []


def _suite_report(suite, rates):
    answers = [
        Answer(
            id=q.id,
            service=q.service,
            question=q.question,
            reference=q.reference,
            answer="x",
            passed=rates[q.service] == 100,
            reason="",
        )
        for q in suite.questions
    ]
    return EvalReport.build(answers, run_id="r", suite="demo", model="m", endpoint="e", judge="reference")
