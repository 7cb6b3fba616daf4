import pytest

from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import load_suite

DOC = "# Svc\n\n## Reference\n- Default port: 1234\n"


def test_demo_suite_has_at_least_8_services_with_4_questions_each():
    suite = load_suite("demo")
    assert len(suite.services) >= 8
    for service, questions in suite.by_service.items():
        assert len(questions) >= 4, service
        assert suite.docs[service].strip()
    assert all(q.reference for q in suite.questions)


def test_suite_by_path(write_suite):
    root = write_suite(
        {"svc": DOC}, [{"id": "q1", "service": "svc", "question": "Port?", "reference": "1234"}]
    )
    suite = load_suite(str(root))
    assert suite.services == ["svc"] and suite.questions[0].reference == "1234"


def test_question_without_reference_names_file_line_and_field(write_suite):
    root = write_suite(
        {"svc": DOC},
        [
            {"id": "q1", "service": "svc", "question": "Port?", "reference": "1"},
            {"id": "q2", "service": "svc", "question": "Port?"},
        ],
    )
    with pytest.raises(InputError, match=r"questions.jsonl:2: reference: Field required"):
        load_suite(str(root))


def test_blank_reference_rejected(write_suite):
    root = write_suite({"svc": DOC}, [{"id": "q1", "service": "svc", "question": "Port?", "reference": "  "}])
    with pytest.raises(InputError, match=r"questions.jsonl:1: reference: .*blank"):
        load_suite(str(root))


def test_question_for_service_without_docs(write_suite):
    root = write_suite(
        {"svc": DOC}, [{"id": "q1", "service": "other", "question": "Port?", "reference": "1"}]
    )
    with pytest.raises(
        InputError, match=r"service 'other' has no documentation file docs/other\.<md\|markdown\|txt\|html"
    ):
        load_suite(str(root))


def test_missing_docs_folder(write_suite):
    root = write_suite({"svc": DOC}, [{"id": "q1", "service": "svc", "question": "Port?", "reference": "1"}])
    for f in (root / "docs").iterdir():
        f.unlink()
    (root / "docs").rmdir()
    with pytest.raises(InputError, match=r"docs: missing"):
        load_suite(str(root))


def test_malformed_json_line(write_suite):
    root = write_suite({"svc": DOC}, ['{"id": "q1", "service": "svc",'])
    with pytest.raises(InputError, match=r"questions.jsonl:1"):
        load_suite(str(root))


def test_duplicate_ids(write_suite):
    q = {"id": "q1", "service": "svc", "question": "Port?", "reference": "1"}
    root = write_suite({"svc": DOC}, [q, q])
    with pytest.raises(InputError, match=r"duplicate question ids \['q1'\]"):
        load_suite(str(root))


def test_unknown_suite_lists_builtins():
    with pytest.raises(InputError, match=r"suite 'nope' is neither a built-in suite \(demo"):
        load_suite("nope")


def test_a_suite_can_ask_about_a_built_in_suites_docs(tmp_path):
    """demo-reworded asks the demo's facts in other words, over the demo's own docs (docs_from)."""
    reworded, demo = load_suite("demo-reworded"), load_suite("demo")
    assert reworded.docs == demo.docs and len(reworded.questions) == len(demo.questions) == 40
    assert (reworded.path / reworded.doc_file("quillstream")).is_file()
    same = {(q.service, q.reference) for q in demo.questions}
    assert {(q.service, q.reference) for q in reworded.questions} == same  # the same facts...
    assert not {q.question for q in demo.questions} & {q.question for q in reworded.questions}  # ...reworded
    (tmp_path / "suite.json").write_text('{"docs_from": "nosuch"}')
    (tmp_path / "questions.jsonl").write_text(
        '{"id": "a", "service": "quillstream", "question": "q?", "reference": "1"}\n'
    )
    with pytest.raises(InputError, match="docs_from 'nosuch': expected a built-in suite's name"):
        load_suite(str(tmp_path))
