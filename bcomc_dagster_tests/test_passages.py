"""Grounding on real documents: passages from Markdown, plain text and HTML within a token budget, the
facts the embedded generator reads from lines, tables and sentences, and docs that give it nothing."""

import json
import shutil

import pytest

from bcomc_dagster.config import parse_config
from bcomc_dagster.datagen import coordinator
from bcomc_dagster.datagen.extractive import ExtractiveWorker
from bcomc_dagster.datagen.facts import extract_facts
from bcomc_dagster.datagen.passages import count_tokens, split
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import BUILTIN_DIR, load_suite
from bcomc_dagster.launch_checks import check_docs

GUIDE = """# Marrow Queue

Marrow Queue is the message queue of the platform.

## Delivery

The visibility timeout of Marrow Queue is 45 seconds. A consumer can extend it.

### Retention

Its retention period is 9 days, after which unread messages are removed.

```
# not a heading: a comment in a code block
mqctl purge --queue orders
```

## Limits

| Setting | Value |
|---|---|
| Maximum message size | 256 KB |
| Batch size | 10 messages |

Marrow Queue is designed for small messages. The service is a managed one.
"""


def facts(text, service="marrow-queue", kind="markdown"):
    return [(f.attribute, f.value) for p in split(service, text, kind) for f in extract_facts(p)]


def test_markdown_passages_keep_their_nested_heading_path():
    ps = split("marrow-queue", GUIDE)
    assert [p.path for p in ps] == [
        "Marrow Queue",
        "Marrow Queue > Delivery",
        "Marrow Queue > Delivery > Retention",
        "Marrow Queue > Limits",
    ]
    assert "# not a heading" in ps[2].text  # a '#' in a code block stays text
    assert ps[1].render().startswith("Marrow Queue > Delivery\n\n") and ps[3].id == "docs/marrow-queue.md#3"


def test_a_second_top_level_heading_is_a_section_not_a_new_title():
    ps = split("x", "# Guide\n\nIntro.\n\n# Appendix\n\nMore.\n\n## Limits\n\nThe zone limit is 5.\n")
    assert [p.path for p in ps] == ["Guide", "Guide > Appendix", "Guide > Appendix > Limits"]


def test_every_passage_is_within_its_budget():
    long = "# Big\n\n" + "\n\n".join(
        f"## Part {k}\n\n" + " ".join(f"The setting number {k}.{j} of Big is {j} units." for j in range(40))
        for k in range(5)
    )
    for budget in (32, 64, 160):
        ps = split("big", long, budget=budget)
        assert all(count_tokens(p.render()) <= budget for p in ps), budget
        assert len(ps) > 5 and ps[-1].headings == ("Part 4",)
    joined = " ".join(p.text for p in split("big", long, budget=64))
    assert "The setting number 4.39 of Big is 39 units." in joined  # nothing lost at the cuts


def test_plain_text_and_html_become_passages_with_headings():
    text = (
        "Fernline DNS\n\nFernline DNS answers lookups.\n\nRecords\n\nThe default record TTL is 300 seconds.\n"
    )
    ps = split("fernline-dns", text, "text", "docs/fernline-dns.txt")
    assert [p.path for p in ps] == ["Fernline DNS", "Fernline DNS > Records"] and ps[
        1
    ].id == "docs/fernline-dns.txt#1"
    html = (
        "<html><head><title>ignored</title><script>var x = 1;</script></head><body><h1>Quarry Blob</h1>"
        "<p>Stores files.</p><h2>Uploads</h2><p>The default chunk size is 8 MB.</p><h3>Naming</h3>"
        "<ul><li>Bucket name limit: 63 characters</li></ul></body></html>"
    )
    ps = split("quarry-blob", html, "html")
    assert [p.path for p in ps] == ["Quarry Blob", "Quarry Blob > Uploads", "Quarry Blob > Uploads > Naming"]
    assert "var x" not in " ".join(p.text for p in ps) and "ignored" not in " ".join(p.render() for p in ps)
    assert facts(html, "quarry-blob", "html") == [
        ("default chunk size", "8 MB"),
        ("bucket name limit", "63 characters"),
    ]


def test_facts_from_sentences_and_tables_but_not_from_descriptions():
    assert facts(GUIDE) == [
        ("visibility timeout", "45 seconds"),
        ("retention period", "9 days"),
        ("maximum message size", "256 KB"),
        ("batch size", "10 messages"),
    ]
    more = (
        "# Brine Stream\n\nBrine Stream uses Zephyr as its compression codec for every batch. "
        "In Brine Stream, the consumer group limit is 64. Brine Stream's default partition count is 12.\n"
    )
    assert facts(more, "brine-stream") == [
        ("compression codec", "Zephyr"),
        ("consumer group limit", "64"),
        ("default partition count", "12"),
    ]


def test_the_prose_suite_yields_pairs_for_every_service():
    suite = load_suite("prose")
    assert {suite.doc_file(s).rsplit(".", 1)[1] for s in suite.services} == {"md", "txt", "html"}
    for s in suite.services:  # before passages: 0 requests for every service of this suite
        assert len(coordinator.plan_requests(suite, s, 40, 0)) == 40
        values = " ".join(g.fact.value for g in coordinator.groundings(suite, s, needs_facts=True))
        assert all(q.reference in values for q in suite.by_service[s]), s  # every asked fact is found
    r = coordinator.generate(suite, ["fernline-dns", "quarry-blob"], 8, ExtractiveWorker(), "c", 1)
    assert r.produced == {"fernline-dns": 8, "quarry-blob": 8} and not r.skipped_services
    assert {p.provenance.passage.split("#")[0] for p in r.pairs} == {
        "docs/fernline-dns.txt",
        "docs/quarry-blob.html",
    }


@pytest.fixture
def prose_copy(tmp_path):
    root = tmp_path / "suite"
    shutil.copytree(BUILTIN_DIR / "prose", root)
    return root


def test_a_doc_without_usable_facts_is_rejected_at_validate_naming_the_file(prose_copy, capsys):
    from bcomc_dagster import cli

    (prose_copy / "docs" / "wicker-auth.md").write_text(
        "# Wicker Auth\n\nWicker Auth signs users in. It is fast and safe.\n"
    )
    cfg = json.loads((prose_copy / "campaign.json").read_text()) | {"eval_suite": str(prose_copy)}
    (prose_copy / "campaign.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=r"wicker-auth\.md: the embedded generator finds no facts in it"):
        check_docs(parse_config(cfg))
    assert cli.main(["validate", str(prose_copy / "campaign.json")]) == 2
    assert "wicker-auth.md: the embedded generator finds no facts" in capsys.readouterr().err
    # an LLM generator reads the passage itself: the same doc is enough for it
    llm = cfg | {
        "datagen": cfg["datagen"] | {"generator_backend": "bedrock", "generator_model": "claude-3-5-haiku"}
    }
    check_docs(parse_config(llm))
    # at run time (docs changed after launch) the service is skipped, and why is said
    r = coordinator.generate(
        load_suite(str(prose_copy)), ["wicker-auth", "sable-vault"], 4, ExtractiveWorker(), "c", 1
    )
    assert (
        r.produced == {"sable-vault": 4}
        and "docs/wicker-auth.md: the embedded generator" in r.skipped_services["wicker-auth"]
    )


def test_suite_docs_in_an_unknown_format_or_twice_are_errors(prose_copy):
    (prose_copy / "docs" / "extra.pdf").write_bytes(b"%PDF")
    with pytest.raises(
        InputError, match=r"extra\.pdf: not a documentation format this project reads; expected one of \.md"
    ):
        load_suite(str(prose_copy))
    (prose_copy / "docs" / "extra.pdf").unlink()
    (prose_copy / "docs" / "wicker-auth.txt").write_text("Wicker Auth\n\nThe token lifetime is 20 minutes.\n")
    with pytest.raises(
        InputError, match=r"wicker-auth\.txt: service 'wicker-auth' already has .*wicker-auth\.md"
    ):
        load_suite(str(prose_copy))
