"""Dataset types as presets: each validates, fills prompt_config, and generates pairs in its own style
(read back through the dataset's own quality filters); custom templates are checked at validate."""

import dataclasses
import re

import pytest

from bcomc_dagster import campaign_state
from bcomc_dagster.config import parse_config
from bcomc_dagster.datagen import coordinator, presets, quality
from bcomc_dagster.datagen.extractive import ExtractiveWorker
from bcomc_dagster.datagen.facts import extract_facts
from bcomc_dagster.datagen.llm_worker import pair_request
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import load_suite

CUSTOM = {
    "system_template": "You write flash cards about {domain} for {persona}. {answer_style}",
    "answer_template": "{svc} / {attr}: {value}",
    "answer_style": "Answer with the value alone.",
}


def _config(dataset_type, suite, **prompt):
    return parse_config(
        {
            "eval_suite": suite,
            "datagen": {"dataset_type": dataset_type, "prompt_config": prompt, "examples_per_service": 12},
        }
    )


def _generated(cfg, services):
    """The embedded generator's pairs for ``services`` as the stage makes them, and what the dataset's
    quality filters keep of them."""
    d = cfg.datagen
    suite = load_suite(cfg.eval_suite)
    worker = ExtractiveWorker(None, d.prompting.lexicon)
    r = coordinator.generate(
        suite, services, d.examples_per_service, worker, "c", 1, prompt_config=d.prompting
    )
    names = {s: [suite.docs[s].splitlines()[0].lstrip("# ").strip()] for s in services}
    kept = quality.filter_pairs(r.pairs, [], campaign_state.eval_index(cfg), cfg.quality, names)
    return r.pairs, kept


@pytest.mark.parametrize(
    ("dataset_type", "suite", "service", "answer"),
    [
        ("qa-grounded", "demo", "quillstream", r"^The [a-z -]+ of Quillstream is .+\.$"),
        ("aws-qa", "demo", "quillstream", r"^For Quillstream, the [a-z -]+ is .+\.$"),
        # a citation of the section the rule is read from
        ("gov-qa", "forms", "apiary", r"^Under (Fees and deadlines|Fields) of Apiary Registration, the "),
        ("form-qa", "forms", "apiary", r"^On Apiary Registration, the [a-z ]+ "),
        ("custom", "forms", "apiary", r"^Apiary Registration / [a-z ]+: \S"),
    ],
)
def test_each_dataset_type_generates_pairs_in_its_style(dataset_type, suite, service, answer):
    cfg = _config(dataset_type, suite, **(CUSTOM if dataset_type == "custom" else {}))
    pairs, kept = _generated(cfg, [service])
    assert len(pairs) >= 12 and all(re.match(answer, p.answer) for p in pairs), [p.answer for p in pairs]
    # grounded, clean: the style does not make the filters throw the pairs away
    assert not [d for d in kept.dropped if d.reason in ("ungrounded", "invalid", "contaminated")]
    assert len(kept.kept) >= 10


def test_form_qa_reads_each_field_with_its_allowed_values_and_where_it_appears():
    cfg = _config("form-qa", "forms")
    pairs, kept = _generated(cfg, ["harbour-mooring"])
    by_answer = {p.answer for p in kept.kept}
    assert "On Harbour Mooring Permit, the vessel class field (Part 1, box 3) is A, B or C." in by_answer
    assert "On Harbour Mooring Permit, the application fee is 85 crowns." in by_answer
    # the form's own ways of asking: what a field takes, where it goes
    field_questions = [p.question for p in pairs if "vessel class" in p.question.lower()]
    assert any(q.startswith(("What can I put", "Which entries", "Where on")) for q in field_questions)
    # qa-grounded reads the same table as rows: one fact per cell, no field, no place on the form
    suite = load_suite("forms")
    passage = next(p for p in coordinator.passages(suite, "harbour-mooring") if "Vessel class" in p.text)
    as_rows = {f.attribute for f in extract_facts(passage)}
    as_fields = {f.attribute: f.where for f in extract_facts(passage, presets.PRESETS["form-qa"].fact_forms)}
    assert "allowed values of the vessel class" in as_rows and "vessel class field" not in as_rows
    assert as_fields["vessel class field"] == "Part 1, box 3"


def test_the_reader_takes_only_the_forms_asked_for_and_gov_qa_cites_the_heading():
    demo = load_suite("demo")
    passage = next(p for p in coordinator.passages(demo, "quillstream") if "Default port" in p.text)
    assert extract_facts(passage) and not extract_facts(passage, ("sentences",))  # a settings list only
    cfg = _config("gov-qa", "forms")
    _, kept = _generated(cfg, ["dog-licence"])
    assert any(
        p.answer
        == "Under Fees and deadlines of Dog Licence Registration, the licence fee is 18 crowns a year."
        for p in kept.kept
    )


def test_an_llm_generator_is_told_each_types_style_and_a_question_style_per_call():
    suite = load_suite("forms")
    reqs = coordinator.plan_requests(suite, "apiary", 16, 0, needs_facts=False)
    one_fact = [dataclasses.replace(reqs[0], variant=v) for v in range(8)]
    for name, preset in presets.PRESETS.items():
        if name == "custom":
            continue
        p = presets.prompting(name)
        prompts = [pair_request(r, p) for r in one_fact]
        assert all(preset.answer_style in x.system and preset.domain in x.system for x in prompts)
        styles = {
            s for s in preset.question_styles if any(f"Write {s} (" in x.messages[0].content for x in prompts)
        }
        assert len(styles) == min(8, len(preset.question_styles))  # no two calls on a fact share a style
    # the user's fields override the preset's; the rest stay the preset's
    p = _config(
        "gov-qa", "forms", persona="a farmer", question_styles=["a question in one line"]
    ).datagen.prompting
    x = pair_request(reqs[0], p)
    assert "a farmer" in x.system and "a resident" not in x.system and "cites the section" in x.system
    assert "Write a question in one line (" in x.messages[0].content
    custom = pair_request(reqs[0], _config("custom", "forms", **CUSTOM).datagen.prompting)
    assert (
        custom.system
        == "You write flash cards about a software product for a user. Answer with the value alone."
    )


def test_dataset_types_validate_and_custom_templates_are_checked():
    for name in presets.DATASET_TYPES:
        extra = CUSTOM if name == "custom" else {}
        assert _config(name, "forms", **extra).datagen.prompting.dataset_type == name
    with pytest.raises(InputError, match=r"datagen\.dataset_type: unknown dataset type 'faq'.*'form-qa'"):
        _config("faq", "forms")
    with pytest.raises(
        InputError,
        match=r"datagen\.prompt_config\.system_template and datagen\.prompt_config\.answer_template: "
        "required when dataset_type is 'custom'",
    ):
        _config("custom", "forms")
    with pytest.raises(
        InputError, match=r"datagen\.prompt_config\.answer_template: unknown placeholder\(s\) \['colour'\]"
    ):
        _config("custom", "forms", **{**CUSTOM, "answer_template": "{svc} is {colour}"})
    with pytest.raises(InputError, match=r"datagen\.prompt_config\.system_template: not a template"):
        _config("aws-qa", "forms", system_template="About {domain")
    with pytest.raises(InputError, match=r"datagen\.prompt_config\.system_template: a placeholder is a name"):
        _config("aws-qa", "forms", system_template="About {}")
    with pytest.raises(InputError, match=r"datagen\.prompt_config\.question_styles"):
        _config("aws-qa", "forms", question_styles=[])
    # a config stored before presets (prompt_config of three strings, empty ones unset) reads as before
    old = parse_config({"datagen": {"prompt_config": {"domain": "", "persona": "an SRE", "doc_label": ""}}})
    p = old.datagen.prompting
    assert (p.domain, p.persona, p.doc_label) == ("a software product", "an SRE", "documentation")


def test_the_launchpad_documents_each_preset():
    from bcomc_dagster.defs.assets import LAUNCH_SCHEMA

    datagen = LAUNCH_SCHEMA["datagen"].config_type.fields
    described = datagen["dataset_type"].description
    assert all(f"'{name}': {p.description}" in described for name, p in presets.PRESETS.items())
    fields = datagen["prompt_config"].config_type.fields
    assert {"question_styles", "answer_style", "system_template", "answer_template"} <= set(fields)
    assert "{where}" in fields["answer_template"].description
