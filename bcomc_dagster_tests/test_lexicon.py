"""The embedded generator asks each fact in many ways, read from a lexicon file; generation meets its
request or says why."""

import pytest

from bcomc_dagster.datagen import coordinator, lexicon, quality
from bcomc_dagster.datagen.extractive import ExtractiveWorker
from bcomc_dagster.datagen.facts import Fact
from bcomc_dagster.datagen.passages import Passage
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import load_suite

P = Passage(service="q", title="Quillstream", source="docs/q.md", index=0, headings=(), text="")


def fact(attribute: str, value: str) -> Fact:
    return Fact("q", "Quillstream", attribute, value, f"- {attribute}: {value}", P)


@pytest.mark.parametrize(
    ("attribute", "value", "kind"),
    [
        ("default port", "7443", "port"),
        ("retention period", "9 days", "duration"),
        ("maximum message size", "256 KB", "size"),
        ("edge locations", "38", "count"),
        ("rate limit", "1200 requests per minute", "rate"),
        ("snapshot schedule", "02:30 UTC", "time of day"),
        ("config file", "quill.toml", "file"),
        ("audit log location", "/var/q/audit", "file"),
        ("command-line tool", "qsctl", "tool"),
        ("encryption algorithm", "AES-Cinder", "algorithm"),
        ("query language", "BQL", "language"),
        ("storage engine", "Thornleaf", "name"),
        ("memory limit", "1536 MB per invocation", "size"),
    ],
)
def test_each_fact_gets_the_kind_of_its_value(attribute, value, kind):
    assert lexicon.load().kind_of(fact(attribute, value)).name == kind


def test_a_fact_is_asked_in_many_ways_not_in_its_attributes_words_alone():
    lex = lexicon.load()
    port = fact("default port", "7443")
    qs = lex.questions(port)
    assert len(qs) >= 20 and len(set(qs)) == len(qs)
    assert "What port do I connect to for Quillstream?" in qs  # by the kind of value
    assert any("standard port" in q for q in qs)  # the attribute in other words
    assert sum("default port" not in q.lower() for q in qs) >= len(qs) // 2
    assert any(q.startswith("Quillstream") for q in qs) and any(not q.startswith("Quillstream") for q in qs)
    assert min(map(len, qs)) < 25 < max(map(len, qs)) - 20  # short and long
    size = lex.questions(fact("maximum message size", "256 KB"))
    assert "How big can a message be in Quillstream?" in size  # {noun}: the attribute less its kind
    days = lex.questions(fact("retention period", "9 days"))
    assert any(q.startswith("How many days is the retention") for q in days)  # {unit}: the value's
    assert "How long does Quillstream keep data before deleting it?" in days  # a situation


@pytest.mark.parametrize(
    ("attribute", "value", "wrong"),
    [
        ("zone limit", "500 zones per account", "Which region does Quillstream run in?"),
        ("config reload interval", "30 seconds", "Which file holds the configuration for Quillstream?"),
        ("replication lag", "5 seconds", "How many copies of the data does Quillstream keep?"),
        ("default chunk size", "8 MB", "What's the largest chunk Quillstream accepts?"),
        ("audit log location", "/var/q/audit", "Which file do I edit to change Quillstream's settings?"),
    ],
)
def test_a_situation_is_asked_only_of_the_kind_of_value_it_fits(attribute, value, wrong):
    assert wrong not in lexicon.load().questions(fact(attribute, value))


def test_a_question_that_names_no_attribute_is_asked_only_of_a_kind_alone_in_its_service():
    lex = lexicon.load()
    port, other = fact("default port", "7443"), fact("admin port", "7444")
    assert "What port does Quillstream listen on?" in lex.questions(port, (port,))
    for q in ("What port does Quillstream listen on?", "What port do I connect to for Quillstream?"):
        assert q not in lex.questions(port, (port, other))  # two ports: only questions that name theirs
    both = set(lex.questions(port, (port, other))) & set(lex.questions(other, (port, other)))
    assert not both  # no question shared by two facts with different answers


def test_a_users_lexicon_extends_the_shipped_one(tmp_path):
    extra = tmp_path / "mine.toml"
    extra.write_text(
        '[[kind]]\nname = "colour"\nattribute = ["colour"]\nquestions = ["What shade is {svc} painted?"]\n'
        '[synonyms]\n"colour" = ["hue"]\n'
    )
    lex = lexicon.load(extra)
    qs = lex.questions(fact("brand colour", "teal"))
    assert (
        lex.kind_of(fact("brand colour", "teal")).name == "colour"
        and qs[1] == "What shade is Quillstream painted?"
    )
    assert "I need the brand hue for Quillstream." in qs  # its synonym
    assert lex.kind_of(fact("default port", "8080")).name == "port"  # the shipped kinds still apply


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[[kind]]\nname = 'x'\nquestions = ['What is {colour}?']\n", "unknown placeholder(s) ['colour']"),
        ("[[kind]]\nname = 'x'\nvalue = '('\n", "value: not a regular expression"),
        ("[wrong]\n", "unknown section 'wrong'"),
        ("[[kind]]\nname = 'x'\nquestion = []\n", "unknown field(s) ['question']"),
        ("kind = [\n", "not a TOML lexicon"),
        (
            "[[kind]]\nname = 'x'\nattribute = 'widget'\n",
            "[[kind]] 1 (x) attribute: expected a list of words",
        ),
        ("general = ['What?']\n", "general: expected a table"),
        ("[[situation]]\nattribute = ['a']\nkinds = []\n", "[[situation]] 1: unknown field(s) ['kinds']"),
    ],
)
def test_a_broken_lexicon_is_refused_naming_the_file_and_entry(tmp_path, text, error):
    extra = tmp_path / "bad.toml"
    extra.write_text(text)
    with pytest.raises(InputError, match=r"bad\.toml: .*") as e:
        lexicon.load(extra)
    assert error in str(e.value)


def test_a_lexicon_named_in_the_config_is_checked_at_validate(tmp_path):
    from bcomc_dagster.config import parse_config
    from bcomc_dagster.launch_checks import check_docs

    bad = tmp_path / "bad.toml"
    bad.write_text("[wrong]\n")
    with pytest.raises(InputError, match="datagen.lexicon: .*bad.toml: unknown section"):
        check_docs(parse_config({"datagen": {"lexicon": str(bad)}}))


def test_a_fact_stated_twice_is_one_unit_asked_in_new_words_each_time(tmp_path):
    """A sentence and a settings line state the same fact: its questions do not repeat across them."""
    root = tmp_path / "s"
    (root / "docs").mkdir(parents=True)
    (root / "suite.json").write_text('{"name": "s"}')
    (root / "docs" / "orrery.md").write_text(
        "# Orrery\n\nOrrery is a queue. The default port of Orrery is 5100.\n\n"
        "## Settings\n- Default port: 5100\n"
    )
    (root / "questions.jsonl").write_text(
        '{"id": "o-1", "service": "orrery", "question": "Which port for Orrery?", "reference": "5100"}\n'
    )
    suite = load_suite(str(root))
    reqs = coordinator.plan_requests(suite, "orrery", 6, 0)
    assert [r.variant for r in reqs] == [0, 1, 2, 3, 4, 5]  # one fact: every request a new variant
    assert len({r.grounding.passage.id for r in reqs}) == 2  # grounded in both statements in turn
    r = coordinator.generate(suite, ["orrery"], 6, ExtractiveWorker(), "c", 1)
    assert len({p.question for p in r.pairs}) == 6


def test_generation_tops_up_what_the_filters_would_drop_and_says_so():
    suite = load_suite("demo")
    index = quality.EvalIndex({q.id: q.question for q in suite.questions})
    cfg = quality.QualityConfig()
    seen: list[int] = []

    def screen(pairs):
        seen.append(len(pairs))
        return quality.filter_pairs(pairs, [], index, cfg)

    # a question the eval suite asks is dropped as contaminated: the shortfall is asked again
    class Copycat(ExtractiveWorker):
        def generate(self, request, prompt_config=None):
            q, a = super().generate(request, prompt_config)
            return ("Which port does Quillstream listen on by default?" if request.variant == 0 else q), a

    r = coordinator.generate(suite, ["quillstream"], 10, Copycat(), "c", 1, screen=screen, top_up_rounds=3)
    assert r.asked == {"quillstream": 10} and r.delivered == {"quillstream": 10} and r.rounds == 2
    assert r.requested["quillstream"] == 15 and r.dropped["quillstream"] == {"contaminated": 5}
    assert seen == [10, 15] and not r.short
    kept = quality.filter_pairs(r.pairs, [], index, cfg)
    assert len(kept.kept) == 10  # what the dataset will keep: what was asked

    # a worker that only ever repeats itself: the stage gives up after its rounds and warns
    class Parrot(ExtractiveWorker):
        def generate(self, request, prompt_config=None):
            return "What is the default port of Quillstream?", "The default port of Quillstream is 7443."

    r = coordinator.generate(suite, ["quillstream"], 10, Parrot(), "c", 1, screen=screen, top_up_rounds=5)
    assert r.delivered == {"quillstream": 1} and r.rounds == 2  # a top-up that adds nothing is the last
    assert "1 clean pairs of 10 asked after 2 round(s)" in r.short["quillstream"]
    assert r.dropped["quillstream"]["duplicate"] >= 9


def test_a_failed_top_up_keeps_the_complete_first_round():
    """Round 1 is whole; a top-up round that fails leaves it standing, short of its count, not skipped."""
    suite = load_suite("demo")
    index = quality.EvalIndex({q.id: q.question for q in suite.questions})

    class FailsLater(ExtractiveWorker):
        def generate(self, request, prompt_config=None):
            q, a = super().generate(request, prompt_config)
            if request.variant >= 2:
                raise TimeoutError("worker timed out")
            copied = request.grounding.fact.attribute != "default port"  # all but the port's: dropped
            return ("Which port does Quillstream listen on by default?" if copied else q), a

    r = coordinator.generate(
        suite,
        ["quillstream"],
        10,
        FailsLater(),
        "c",
        1,
        max_retries=0,
        screen=lambda ps: quality.filter_pairs(ps, [], index, quality.QualityConfig()),
        top_up_rounds=3,
    )
    assert not r.skipped_services and r.produced == {"quillstream": 10} and r.delivered == {"quillstream": 2}
    assert r.short["quillstream"].endswith(
        "a top-up failed: failed after 1 attempts: TimeoutError: worker timed out"
    )
    assert len(r.pairs) == 10 and r.rounds == 2


def test_an_llm_generator_is_told_to_paraphrase_in_a_new_style_per_call():
    from bcomc_dagster.datagen.llm_worker import PARAPHRASE, STYLES, pair_request

    suite = load_suite("demo")
    reqs = coordinator.plan_requests(suite, "quillstream", 20 * len(STYLES), 0, needs_facts=False)
    port = [r for r in reqs if r.grounding.fact and r.grounding.fact.attribute == "default port"]
    one_fact = port[: len(STYLES)]
    prompts = [pair_request(r).messages[0].content for r in one_fact]
    assert len(prompts) == len(STYLES) and all(PARAPHRASE in p for p in prompts)
    styles = [p.rsplit("Write ", 1)[1].split(" (variation")[0] for p in prompts]
    assert sorted(styles) == sorted(STYLES)  # no two calls on one fact share a style


def test_the_stage_summary_and_metadata_say_asked_delivered_and_short(tmp_path):
    from bcomc_dagster.artifacts import GENERATION, ArtifactStore
    from bcomc_dagster.defs.metadata import generation_metadata
    from bcomc_dagster.summary import stage_lines

    r = coordinator.GenerationResult(
        pairs=[],
        requested={"a": 30, "b": 10},
        produced={"a": 30, "b": 10},
        skipped_services={},
        attempts={"a": 1, "b": 1},
        asked={"a": 20, "b": 10},
        delivered={"a": 8, "b": 10},
        dropped={"a": {"duplicate": 22}},
        rounds=4,
        short={"a": "8 clean pairs of 20 asked after 4 round(s); dropped: {'duplicate': 22}"},
    )
    store = ArtifactStore(tmp_path)
    store.write_json("c", 1, GENERATION, r)
    lines = stage_lines(store, "generated_examples", "c", 1)
    assert lines[0] == "  generated_examples: 18 clean pairs of 30 asked (40 made in 4 round(s))"
    assert lines[1].startswith("    a short: 8 clean pairs of 20 asked")
    md = generation_metadata(r, 1.0)
    assert md["asked"] == 30 and md["delivered"] == 18 and md["rounds"] == 4 and "short_services" in md
