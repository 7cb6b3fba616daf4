"""Passages: a service's documentation cut into section-aware chunks within a token budget.

Markdown is split at its headings (markdown-it-py finds them, so a ``#`` inside a code block is not one);
each section is then cut, where it is over the budget, at the largest semantic unit that fits: paragraph,
list item, table row, sentence (semantic-text-splitter). HTML is converted to Markdown first
(markdownify); plain text is split at blank lines, a short line on its own being a heading. Every passage
keeps its heading path, and the budget counts the path as well as the text: a passage is what one
generator call is given.

Tokens are counted as words and punctuation marks, a close, model-free stand-in for any subword
tokenizer's count on English prose (which runs somewhat higher: leave headroom in the budget).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import PurePath

from markdown_it import MarkdownIt
from semantic_text_splitter import MarkdownSplitter, TextSplitter

DOC_KINDS = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".html": "html", ".htm": "html"}
DEFAULT_BUDGET = 160  # tokens per passage, heading path included
MIN_BUDGET = 32  # below this a heading path and one sentence no longer fit
_TOKEN = re.compile(r"\w+|[^\w\s]")
_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)
_PLAIN_HEADING = re.compile(r"^[^\n.!?;:,]{1,60}$")  # a short line with no sentence punctuation


def count_tokens(text: str) -> int:
    return len(_TOKEN.findall(text))


@dataclass(frozen=True)
class Passage:
    service: str  # the suite's key for the service (the doc file's stem)
    title: str  # the name the documentation uses
    source: str  # the doc file, relative to the suite: docs/<service>.<ext>
    index: int  # position in the file
    headings: tuple[str, ...]  # the heading path below the title
    text: str

    @property
    def id(self) -> str:
        return f"{self.source}#{self.index}"

    @property
    def path(self) -> str:
        return " > ".join((self.title, *self.headings))

    def render(self) -> str:
        """What a generator is given: where the passage stands, then the passage."""
        return f"{self.path}\n\n{self.text}"


def to_markdown(text: str, kind: str) -> str:
    """A doc's text as Markdown (plain text stays plain: it has its own splitter)."""
    if kind == "html":
        from bs4 import BeautifulSoup  # only suites with HTML docs need these (markdownify brings bs4)
        from markdownify import MarkdownConverter

        soup = BeautifulSoup(text, "html.parser")
        for tag in soup(["head", "script", "style", "nav", "footer"]):
            tag.decompose()  # what is not the page's text
        return MarkdownConverter(heading_style="ATX").convert_soup(soup).strip() + "\n"
    return text


def service_title(service: str, text: str, kind: str = "markdown") -> str:
    """The service's name as its documentation gives it: the first top-level heading (the first line of
    plain text, when it reads as a heading), else the file's stem."""
    if kind == "text":
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return first if _PLAIN_HEADING.match(first) else service
    m = _TITLE.search(to_markdown(text, kind))
    return m.group(1) if m else service


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def _markdown_sections(markdown: str) -> list[tuple[tuple[str, ...], str]]:
    """(heading path below the title, body) for each section, in order; the first h1 is the title."""
    lines = markdown.splitlines()
    heads = []  # (first line, last line + 1, level, text)
    tokens = _parser().parse(markdown)
    for k, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.level == 0 and tok.map:
            heads.append((tok.map[0], tok.map[1], int(tok.tag[1]), tokens[k + 1].content.strip()))
    out: list[tuple[tuple[str, ...], str]] = []
    stack: list[tuple[int, str]] = []
    starts = [(0, 0, 0, "")] + heads  # the text before the first heading has an empty path
    title_seen = False
    for n, (_, body_from, level, text) in enumerate(starts):
        if n:
            while stack and stack[-1][0] >= level:
                stack.pop()
            if level > 1 or title_seen:  # the first top-level heading is the title; a later one is a section
                stack.append((level, text))
            title_seen = title_seen or level == 1
        body_to = heads[n][0] if n < len(heads) else len(lines)
        body = "\n".join(lines[body_from:body_to]).strip()
        if body:
            out.append((tuple(t for _, t in stack), body))
    return out


def _text_sections(text: str, title: str) -> list[tuple[tuple[str, ...], str]]:
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if paragraphs and paragraphs[0] == title:
        paragraphs = paragraphs[1:]
    out: list[tuple[tuple[str, ...], str]] = []
    heading: tuple[str, ...] = ()
    for k, p in enumerate(paragraphs):
        if "\n" not in p and _PLAIN_HEADING.match(p) and k + 1 < len(paragraphs):
            heading = (p,)
            continue
        if out and out[-1][0] == heading:
            out[-1] = (heading, out[-1][1] + "\n\n" + p)
        else:
            out.append((heading, p))
    return out


def split(
    service: str, text: str, kind: str = "markdown", source: str | None = None, budget: int = DEFAULT_BUDGET
) -> list[Passage]:
    """The passages of one doc, each within ``budget`` tokens with its heading path."""
    if kind not in DOC_KINDS.values():
        raise ValueError(f"unknown doc kind {kind!r}; expected one of {sorted(set(DOC_KINDS.values()))}")
    source = source or f"docs/{service}.md"
    title = service_title(service, text, kind)
    md = to_markdown(text, kind)
    sections = _text_sections(md, title) if kind == "text" else _markdown_sections(md)
    out: list[Passage] = []
    for headings, body in sections:
        path = " > ".join((title, *headings))
        room = max(MIN_BUDGET // 2, budget - count_tokens(path))
        splitter = (TextSplitter if kind == "text" else MarkdownSplitter).from_callback(count_tokens, room)
        out += [
            Passage(service, title, source, len(out) + k, headings, chunk)
            for k, chunk in enumerate(splitter.chunks(body))
        ]
    return out


def kind_of(path: str | PurePath) -> str:
    return DOC_KINDS[PurePath(path).suffix.lower()]
