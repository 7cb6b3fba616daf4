"""Dataset types (``datagen.dataset_type``) as presets: what each kind of data asks and answers.

A preset fills ``prompt_config``'s defaults (domain, persona, doc label) and says what its data needs:
the question styles an LLM generator asks in (one per call), the answer style it is told, the embedded
generator's answer template, the lexicon that adds its own ways of asking, and the forms of fact the
extractive reader takes. ``custom`` takes its templates from ``prompt_config``. A field given in
``prompt_config`` overrides the preset's.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from bcomc_dagster.datagen.facts import DEFAULT_FORMS, Fact

PRESET_DIR = Path(__file__).with_name("presets")
# what a template may name; anything else is refused at validate
SYSTEM_FIELDS = frozenset({"domain", "persona", "doc_label", "answer_style"})
ANSWER_FIELDS = frozenset({"svc", "attr", "value", "section", "where"})

SYSTEM = (
    "You write training data for an assistant that answers questions about {domain}. Write one question "
    "that {persona} would ask, and its answer, using only the {doc_label} passage given. The answer must "
    "be fully supported by the passage: no fact, number or name that the passage does not state. "
    "{answer_style}"
)
# one style per variant, so that no two calls on the same passage and fact share a question template
GENERAL_STYLES = (
    "a direct question",
    "a question as someone would type it in a hurry, a few words long",
    "a question that mentions the task they are doing",
    "a question that asks to confirm the value",
    "a question phrased as a request",
    "a question that names the documentation",
    "a question from someone new to the service",
    "a question while troubleshooting",
    "a question that starts with the service's name",
    "a question that ends with the service's name",
    "a question that describes what the value is for instead of naming the setting",
    "a long question that first explains the situation they are in",
)


@dataclass(frozen=True)
class Preset:
    name: str
    description: str  # for the launchpad
    domain: str
    persona: str
    doc_label: str
    question_styles: tuple[str, ...]
    answer_style: str  # what an LLM generator is told about the answer
    answer_template: str  # the embedded generator's answer
    system_template: str = SYSTEM
    lexicon: str | None = None  # a lexicon file under datagen/presets/, added to the shipped one
    fact_forms: tuple[str, ...] = DEFAULT_FORMS


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="qa-grounded",
            description="questions about a product's documented facts, answered with the value and its unit",
            domain="a software product",
            persona="a user",
            doc_label="documentation",
            question_styles=GENERAL_STYLES,
            answer_style="Answer in one sentence that names the service and states the value with its unit.",
            answer_template="The {attr} of {svc} is {value}.",
        ),
        Preset(
            name="aws-qa",
            description="cloud-service facts (ports, limits, quotas, defaults), answered with the value, "
            "its unit and whether it is a default or a limit",
            domain="cloud services",
            persona="a cloud engineer",
            doc_label="service documentation",
            question_styles=(
                "a direct question",
                "a question from someone sizing a deployment",
                "a question about a limit or quota they just hit",
                "a question about what the setting is when nobody changes it",
                "a question while writing infrastructure code for the service",
                "a question as typed into a search box, a few words long",
                "a question from someone migrating a workload to the service",
                "a question while troubleshooting an error",
                "a question that describes what the value is for instead of naming the setting",
                "a long question that first explains the architecture they are building",
            ),
            answer_style="Answer in one sentence that names the service and states the value with its "
            "unit, and says whether it is a default, a limit or a quota where the passage says so.",
            answer_template="For {svc}, the {attr} is {value}.",
        ),
        Preset(
            name="gov-qa",
            description="rules of government services (eligibility, fees, deadlines, periods), answered "
            "with the rule and the section it comes from",
            domain="government services",
            persona="a resident",
            doc_label="official guidance",
            question_styles=(
                "a direct question",
                "a question a resident would ask before applying",
                "a question about whether a rule applies to their case",
                "a question that asks which section says so",
                "a question about a deadline, fee or period",
                "a formal question, as in a letter",
                "a question from someone helping a relative apply",
                "a short question as typed into a help box",
                "a question that describes their situation first",
            ),
            answer_style="Answer in one sentence that states the rule or value and cites the section of "
            "the passage it comes from by its heading ('Under Fees, ...').",
            answer_template="Under {section} of {svc}, the {attr} is {value}.",
        ),
        Preset(
            name="form-qa",
            description="the fields of forms: what a field takes, its allowed values and where it "
            "appears on the form; and the form's fees and deadlines",
            domain="government forms",
            persona="someone filling in the form",
            doc_label="form guidance",
            question_styles=(
                "a question asked while filling in the form",
                "a question about which values a field accepts",
                "a question about where on the form something goes",
                "a question about a fee or a deadline of the form",
                "a short question as typed into a help box",
                "a question from someone whose first application was returned",
                "a question that describes what they want to enter instead of naming the field",
                "a question from someone filling in the form for another person",
            ),
            answer_style="Answer in one sentence that names the field, its allowed values and where it "
            "appears on the form (its part, section or box), as the passage states them.",
            answer_template="On {svc}, the {attr}{where} is {value}.",
            lexicon="form-qa.toml",
            fact_forms=("fields", "lines", "rows", "sentences"),
        ),
        Preset(
            name="custom",
            description="your own templates: prompt_config.system_template and answer_template are required",
            domain="a software product",
            persona="a user",
            doc_label="documentation",
            question_styles=GENERAL_STYLES,
            answer_style="",
            answer_template="",
            system_template="",
        ),
    )
}
DATASET_TYPES = tuple(PRESETS)


def placeholders(template: str) -> set[str]:
    """The ``{names}`` a template uses; ValueError when it is not a valid format string."""
    return {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}


def check_template(template: str, allowed: frozenset[str]) -> str:
    """The template, or ValueError naming what is wrong (a bad brace, a placeholder not in ``allowed``)."""
    try:
        used = placeholders(template)
    except ValueError as e:
        raise ValueError(f"not a template ({e}); write literal braces as {{{{ and }}}}") from None
    if any(not f.isidentifier() for f in used):
        raise ValueError(f"a placeholder is a name in braces, one of {sorted(allowed)}")
    if bad := sorted(used - allowed):
        raise ValueError(f"unknown placeholder(s) {bad}; expected some of {sorted(allowed)}")
    return template


@dataclass(frozen=True)
class Prompting:
    """A dataset type's preset with the config's overrides: what the generators read."""

    dataset_type: str
    domain: str
    persona: str
    doc_label: str
    question_styles: tuple[str, ...]
    answer_style: str
    answer_template: str
    system_template: str
    lexicon: Path | None = None
    fact_forms: tuple[str, ...] = DEFAULT_FORMS

    @property
    def system(self) -> str:
        return self.system_template.format(
            domain=self.domain, persona=self.persona, doc_label=self.doc_label, answer_style=self.answer_style
        ).strip()

    def style(self, variant: int) -> str:
        return self.question_styles[variant % len(self.question_styles)]

    def answer(self, fact: Fact) -> str:
        """The embedded generator's answer: the fact as the template states it, its section the heading
        of the passage it is read from, ``where`` its place on a form (``' (Part 2, box 5)'``) or ''."""
        section = fact.passage.headings[-1] if fact.passage.headings else "the opening section"
        return self.answer_template.format(
            svc=fact.title,
            attr=fact.attribute,
            value=fact.value,
            section=section,
            where=f" ({fact.where})" if fact.where else "",
        )


def prompting(
    dataset_type: str,
    *,
    domain: str | None = None,
    persona: str | None = None,
    doc_label: str | None = None,
    question_styles: list[str] | None = None,
    answer_style: str | None = None,
    answer_template: str | None = None,
    system_template: str | None = None,
) -> Prompting:
    """The preset of ``dataset_type`` with every given (non-empty) field in its place."""
    p = PRESETS[dataset_type]
    return Prompting(
        dataset_type=p.name,
        domain=domain or p.domain,
        persona=persona or p.persona,
        doc_label=doc_label or p.doc_label,
        question_styles=tuple(question_styles or p.question_styles),
        answer_style=p.answer_style if answer_style is None else answer_style,
        answer_template=answer_template or p.answer_template,
        system_template=system_template or p.system_template,
        lexicon=PRESET_DIR / p.lexicon if p.lexicon else None,
        fact_forms=p.fact_forms,
    )


DEFAULT = prompting("qa-grounded")
