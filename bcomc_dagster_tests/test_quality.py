"""Each quality filter on crafted cases, and the dataset card."""

import pytest

from bcomc_dagster.artifacts import CHECKPOINT, CONFIG, DATASET, GENERATED
from bcomc_dagster.datagen.card import dataset_card
from bcomc_dagster.datagen.quality import EvalIndex, QualityConfig, contaminated, filter_pairs, grounding
from bcomc_dagster.datagen.schema import Provenance, QAPair
from bcomc_dagster.evals.suite import load_suite

SNIPPET = "- Default port: 6120"
CFG = QualityConfig()


def pair(q, a="The default port of Brambledb is 6120.", snippet=SNIPPET, service="brambledb", it=1):
    return QAPair(
        service=service,
        question=q,
        answer=a,
        provenance=Provenance(campaign="c", iteration=it, model="m", snippet=snippet),
    )


@pytest.fixture(scope="module")
def evals():
    suite = load_suite("demo")
    return EvalIndex({q.id: q.question for q in suite.questions})


def run(new, previous=(), evals_=None, cfg=CFG):
    return filter_pairs(list(new), list(previous), evals_ or EvalIndex({}), cfg, {"brambledb": ["Brambledb"]})


def test_a_correct_grounded_pair_passes():
    r = run([pair("What is the default port of Brambledb?")])
    assert len(r.kept) == 1 and not r.dropped


@pytest.mark.parametrize(
    "answer, why",
    [
        ("The default port of Brambledb is 8080.", "8080"),  # a number the snippet does not say
        ("Brambledb uses the SQL query language over HTTPS.", "sql"),  # words the snippet does not support
    ],
)
def test_an_unsupported_answer_is_dropped(answer, why):
    r = run([pair("What is the default port of Brambledb?", a=answer)])
    assert not r.kept and r.dropped[0].reason == "ungrounded" and why in r.dropped[0].detail
    assert r.counts()["ungrounded"] == 1


def test_a_paraphrase_of_the_snippet_is_grounded():
    share, missing = grounding("Brambledb listens on port 6120 by default.", SNIPPET, ["Brambledb"])
    assert share >= 0.8 and missing == ["listens"]


@pytest.mark.parametrize(
    "question, answer, detail",
    [
        ("Port?", None, "question has 5 characters; expected 10-500"),
        ("What is the default port of Brambledb?", "", None),  # rejected by the schema itself
        ("1234 5678 9012 3456 ??", None, "letters; expected mostly words"),
        ("port port port port port port port port port?", None, "repeats itself"),
        ("What is the default\x00 port of Brambledb?", None, "control characters"),
    ],
)
def test_invalid_pairs_are_dropped_with_the_reason(question, answer, detail):
    if answer == "":
        with pytest.raises(ValueError):
            pair(question, a=answer)
        return
    r = run([pair(question)])
    assert not r.kept and r.dropped[0].reason == "invalid" and detail in r.dropped[0].detail


def test_a_paraphrased_eval_question_is_caught(evals):
    # eval question brambledb-1: "Which default port is Brambledb reachable on?"
    r = run(
        [
            pair("Which default port is Brambledb reachable on, please?"),
            pair("On which port can I reach Brambledb?"),
        ],
        evals_=evals,
    )
    assert [d.reason for d in r.dropped] == ["contaminated"] and "brambledb-1" in r.dropped[0].detail
    assert [p.question for p in r.kept] == ["On which port can I reach Brambledb?"]


def test_an_eval_question_shown_to_the_generator_as_an_example_failure_is_caught(evals):
    """An LLM generator sees the analyzer's example failures; copying one into a pair is contamination."""
    failure = load_suite("demo").questions[5]  # whatever the analyzer quoted
    r = run([pair(failure.question.lower().rstrip("?") + " exactly?", service=failure.service)], evals_=evals)
    assert r.counts()["contaminated"] == 1 and failure.id in r.dropped[0].detail


def test_on_contamination_fail_keeps_the_pair_for_the_blocking_check(evals):
    cfg = QualityConfig(on_contamination="fail")
    r = run([pair("Which default port is Brambledb reachable on?")], evals_=evals, cfg=cfg)
    assert len(r.kept) == 1
    hits = contaminated(r.kept, evals)
    assert hits[0]["eval_question"] == "brambledb-1" and hits[0]["overlap"] == 1.0


def test_exact_and_near_duplicates_keep_the_first_within_and_across_iterations():
    previous = [pair("What is the default port of Brambledb?", it=1)]
    new = [
        pair("What is the default port of Brambledb?", it=2),  # exact, from an earlier iteration
        pair("what is the default port of brambledb ??", a="Brambledb's default port is 6120.", it=2),  # near
        pair("Tell me the default port of Brambledb.", it=2),  # a different phrasing: kept
        pair("Tell me the default port of the Brambledb.", it=2),  # near-duplicate of the one just kept
        pair(
            "What is the default port of Brambledb?",
            service="other",
            a="The default port of Other is 6120.",
            it=2,
        ),
    ]
    r = filter_pairs(new, previous, EvalIndex({}), CFG, {"brambledb": ["Brambledb"], "other": ["Other"]})
    assert [d.reason for d in r.dropped] == ["duplicate", "near_duplicate", "near_duplicate"]
    assert [p.question for p in r.kept] == [
        "Tell me the default port of Brambledb.",
        "What is the default port of Brambledb?",
    ]
    assert r.counts() == {
        "invalid": 0,
        "ungrounded": 0,
        "contaminated": 0,
        "duplicate": 1,
        "near_duplicate": 2,
    }
    # running the same iteration again over the same previous rows keeps exactly the same pairs
    again = filter_pairs(new, previous, EvalIndex({}), CFG, {"brambledb": ["Brambledb"], "other": ["Other"]})
    assert [p.id for p in again.kept] == [p.id for p in r.kept]


def test_dataset_card_lists_rows_by_service_and_iteration_and_drops():
    previous = [pair("What is the default port of Brambledb?", it=1)]
    new = [
        pair("Tell me the default port of Brambledb.", it=2),
        pair("Port?", it=2),
        pair("What is Brambledb's default port?", a="It is 9999.", it=2),
    ]
    r = run(new, previous)
    card = dataset_card("c", 2, previous + r.kept, r)
    assert "campaign `c`, iteration 2" in card and "2 rows: 1 from earlier iterations, 1 added now" in card
    table = card.split("## Rows by service and iteration")[1].split("##")[0]
    assert "| brambledb |   1 |   1 |       2 |" in table and "| total     |   1 |   1 |       2 |" in table
    assert "| invalid    |       1 |" in card and "| ungrounded |       1 |" in card and "9999" in card
    assert "Tell me the default port of Brambledb." in card.split("## Sample pairs added")[1]


def test_blocking_check_stops_an_iteration_that_would_train_on_an_eval_question(tmp_path, monkeypatch):
    """quality.on_contamination 'fail': the pair reaches the dataset, the check fails, nothing trains."""
    import dagster as dg

    from bcomc_dagster.artifacts import ArtifactStore
    from bcomc_dagster.config import parse_config
    from bcomc_dagster.datagen import dataset
    from bcomc_dagster.definitions import defs
    from bcomc_dagster.defs.partitions import iteration_key

    monkeypatch.setenv("BCOMC_HOME", str(tmp_path))
    store = ArtifactStore(tmp_path)
    store.write_json("c-dirty", None, CONFIG, parse_config({"quality": {"on_contamination": "fail"}}))
    leaked = pair("Which default port is Brambledb reachable on?")  # eval question brambledb-1, verbatim
    dataset.write_jsonl(
        store.path("c-dirty", 1, GENERATED), [pair("On which port can I reach Brambledb?"), leaked]
    )
    d = defs()
    job = d.resolve_job_def("iteration_job").get_subset(
        asset_selection={dg.AssetKey("training_dataset"), dg.AssetKey("checkpoint")}
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("campaign", ["c-dirty"])
        instance.add_dynamic_partitions("iteration", ["1"])
        res = job.execute_in_process(
            instance=instance, partition_key=iteration_key("c-dirty", 1), raise_on_error=False
        )
        assert not res.success
        check = res.get_asset_check_evaluations()[0]
        assert not check.passed and check.metadata["contaminated_pairs"].value == 1
        assert check.metadata["offending_pairs"].value[0]["pair"] == leaked.id
        assert check.metadata["offending_pairs"].value[0]["eval_question"] == "brambledb-1"
        failed = [e.step_key for e in res.all_events if e.is_step_failure]
        assert failed == [
            "training_dataset_no_eval_questions_in_training_data"
        ]  # the check's step, nothing else
        assert len(dataset.read_jsonl(store.path("c-dirty", 1, DATASET))) == 2  # kept for inspection
        assert not store.path("c-dirty", 1, CHECKPOINT).exists()  # fine-tune never ran
        assert not instance.fetch_materializations(dg.AssetKey("checkpoint"), limit=1).records


def test_two_facts_asked_alike_are_not_near_duplicates_one_fact_asked_alike_is():
    def on(fact, q, a):
        p = pair(q, a=a)
        return p.model_copy(update={"provenance": p.provenance.model_copy(update={"fact": fact})})

    count = "| Hive count | 1 to 200 | Part A, question 4 |"
    kind = "| Hive type | National or top bar | Part A, question 5 |"
    new = [
        on(count, "What can I put in the hive count field?", "The hive count field is 1 to 200."),
        on(kind, "What can I put in the hive type field?", "The hive type field is National or top bar."),
        on(count, "What can I put in the hive count field ?", "The hive count field takes 1 to 200."),
    ]
    snippet = "| Hive count | 1 to 200 |\n| Hive type | National or top bar |"
    new = [
        p.model_copy(update={"provenance": p.provenance.model_copy(update={"snippet": snippet})}) for p in new
    ]
    r = filter_pairs(new, [], EvalIndex({}), CFG.model_copy(update={"grounding": "off"}))
    assert [p.question for p in r.kept] == [new[0].question, new[1].question]
    assert [(d.reason, d.question) for d in r.dropped] == [("near_duplicate", new[2].question)]
