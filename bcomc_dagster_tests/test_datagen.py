import pytest

from bcomc_dagster.analysis.analyzer import analyze
from bcomc_dagster.datagen import coordinator, dataset
from bcomc_dagster.datagen.extractive import ExtractiveWorker
from bcomc_dagster.datagen.schema import Provenance, QAPair
from bcomc_dagster.datagen.snippets import extract_snippets
from bcomc_dagster.evals.report import Answer, EvalReport, summarise
from bcomc_dagster.evals.suite import load_suite


@pytest.fixture(scope="module")
def suite():
    return load_suite("demo")


def test_snippets_are_the_reference_lines(suite):
    snips = extract_snippets("quillstream", suite.docs["quillstream"])
    assert [s.attribute for s in snips][:2] == ["default port", "maximum message size"]
    assert snips[0].title == "Quillstream" and snips[0].value == "7443"
    assert snips[0].text == "- Default port: 7443"


def test_generated_pairs_are_grounded_and_carry_provenance(suite):
    r = coordinator.generate(suite, ["quillstream", "brambledb"], 12, ExtractiveWorker(), "c", 1)
    assert r.produced == {"quillstream": 12, "brambledb": 12} and not r.skipped_services
    for p in r.pairs:
        value = p.provenance.snippet.split(": ", 1)[1]
        assert value in p.answer  # the answer says what its snippet says
        assert p.provenance.iteration == 1 and p.provenance.model == "extractive"
    assert len({p.id for p in r.pairs}) == 24


def test_later_iterations_ask_for_new_phrasings(suite):
    first = coordinator.generate(suite, ["quillstream"], 10, ExtractiveWorker(), "c", 1)
    second = coordinator.generate(suite, ["quillstream"], 10, ExtractiveWorker(), "c", 2, already={"quillstream": 10})
    assert not {p.question for p in first.pairs} & {p.question for p in second.pairs}


class Flaky:
    """Fails the first ``fails`` calls for one service, then works."""

    name = "flaky"

    def __init__(self, service: str, fails: int):
        self.service, self.fails, self.calls = service, fails, 0

    def generate(self, snippet, variant, prompt_config=None):
        if snippet.service == self.service and self.calls < self.fails:
            self.calls += 1
            raise TimeoutError("worker timed out")
        return ExtractiveWorker().generate(snippet, variant)


def test_failing_service_is_retried_then_succeeds(suite):
    r = coordinator.generate(suite, ["quillstream", "brambledb"], 5, Flaky("brambledb", 3), "c", 1, max_retries=2)
    assert r.produced == {"quillstream": 5, "brambledb": 5}
    assert r.attempts["brambledb"] == 2 and not r.skipped_services


def test_service_that_keeps_failing_is_skipped_whole_and_reported(suite):
    r = coordinator.generate(suite, ["quillstream", "brambledb"], 5, Flaky("brambledb", 10**6), "c", 1, max_retries=2)
    assert set(r.produced) == {"quillstream"}
    assert "failed after 3 attempts: TimeoutError" in r.skipped_services["brambledb"]
    assert all(p.service == "quillstream" for p in r.pairs)


def _pair(q, a="A.", it=1):
    return QAPair(service="s", question=q, answer=a, provenance=Provenance(campaign="c", iteration=it, model="m", snippet="x"))


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
    return EvalReport(run_id="r", suite="t", model="m", endpoint="e", judge="j", pass_rate=rate,
                      results_by_service=by, failures=[a for a in answers if not a.passed], answers=answers)


def test_analyzer_targets_weakest_services_and_trends():
    before = _report({"a": (0, 4), "b": (2, 4), "c": (4, 4), "d": (3, 4), "e": (1, 4), "f": (0, 4), "g": (2, 4)})
    after = _report({"a": (0, 4), "b": (1, 4), "c": (4, 4), "d": (3, 4), "e": (1, 4), "f": (0, 4), "g": (3, 4)})
    a = analyze([before, after], examples_per_service=20)
    # worst first, ties (d, g at 75%) to the one not improving; never the perfect "c"; at most 5
    assert a.datagen_services == ["a", "f", "b", "e", "d"]
    assert a.priority_services["a"] == 1 and a.datagen_count == 20
    assert a.trend_analysis["b"] == "regressing" and a.trend_analysis["g"] == "improving"
    assert any("regressions: b" in s for s in a.suggested_actions)


def test_report_deltas():
    prev, cur = _report({"a": (1, 4), "b": (0, 4)}), _report({"a": (3, 4), "b": (0, 4)})
    r = cur.with_previous(prev)
    assert r.improvement_delta == 25.0 and r.service_deltas == {"a": 50.0, "b": 0.0}
    assert list(r.table()["delta"]) == [50.0, 0.0]
