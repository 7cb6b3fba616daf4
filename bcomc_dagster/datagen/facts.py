"""Facts: the attribute-value statements of a passage, as the embedded generator reads them.

The forms read (``FORMS``; a dataset type says which, ``presets.py``), each the way documentation
usually states a setting:

- reference lines: ``- Default port: 6120`` (``**bold**`` keys too);
- table rows: ``| Visibility timeout | 45 seconds |`` (the first column names the attribute; in a wider
  table each further column is one fact, named by its header);
- sentences: "The visibility timeout of Marrow Queue is 45 seconds.", "Its default port is 7443.",
  "Marrow Queue's retention period is 9 days.", "Marrow Queue uses Thornleaf as its storage engine.",
  "The batch size defaults to 64."

- form fields (``datagen.dataset_type`` "form-qa"): a table whose header names a field column and an
  allowed-values column (``| Field | Allowed values | Where it appears |``) gives one fact per field:
  "<field> field" takes its allowed values, and is found where the table says.

A sentence is taken only where its value reads as a value: a number, a name or identifier, or a short
phrase that is not a description ("is designed for ...", "is a queue ..."). An LLM generator needs none
of this: it reads the passage itself; facts only tell it which statement to ask about.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bcomc_dagster.datagen.passages import Passage

_LINE = re.compile(r"^\s*[-*+]\s+(?:\*\*)?([^:*\n|]{2,60}?)(?:\*\*)?\s*:\s*(\S.*?)\s*$", re.MULTILINE)
_ROW = re.compile(r"^\s*\|(.+)\|\s*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(`])")
_VERB = r"(?:is|are|is set to|defaults to|is fixed at|is capped at|is limited to)"
_NOT_A_VALUE = frozenset(
    "a an the not also only designed used meant built made able available responsible one each every this "
    "that these those there it its".split()
)
_GENERIC_ATTR = frozenset("service it this that which there one".split())
FORMS = ("fields", "lines", "rows", "sentences")  # what the reader can take
DEFAULT_FORMS = ("lines", "rows", "sentences")
_FIELD_COLUMN = re.compile(r"^(?:form\s+)?field(?:\s+name)?$", re.IGNORECASE)
_VALUES_COLUMN = re.compile(r"\b(?:allowed|accepted|permitted|valid)\b|^(?:values?|entries)$", re.IGNORECASE)
_WHERE_COLUMN = re.compile(r"\b(?:where|location|appears|box|part|section)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Fact:
    service: str
    title: str  # the service's name in its docs
    attribute: str  # lower case, e.g. "visibility timeout"
    value: str  # as written, e.g. "45 seconds"
    text: str  # the line, row or sentence that states it
    passage: Passage
    where: str = ""  # a form field's place on its form ("Part 2, box 5"), where the docs say


def _clean(text: str) -> str:
    """Without Markdown emphasis and code marks (an underscore inside a name stays)."""
    return re.sub(r"\*+|`+|(?<!\w)_+|_+(?!\w)", "", text).strip()


def _sentence_patterns(title: str) -> list[re.Pattern[str]]:
    t = re.escape(title)
    attr = r"(?P<attr>[A-Za-z][\w\- ]{1,50}?)"
    value = r"(?P<value>[^;:]+?)"
    end = r"(?:[,;:]\s.*)?\s*[.!]?$"  # a clause after the value ("..., after which ...") is not part of it
    scope = r"(?:\s+(?:for|in|on|wherever|when|across|within)\b.*)?"  # "... as its codec for every zone"
    return [
        re.compile(p, re.IGNORECASE)
        for p in (
            rf"^(?:By default,\s+)?(?:the|its|{t}'s)\s+{attr}"
            rf"(?:\s+(?:of|for|in)\s+{t})?\s+{_VERB}\s+{value}{end}",
            rf"^{t}\s+uses\s+{value}\s+as\s+its\s+{attr}{scope}{end}",
            rf"^(?:In|On|For)\s+{t},\s+the\s+{attr}\s+{_VERB}\s+{value}{end}",
        )
    ]


def _value_ok(value: str) -> bool:
    words = value.split()
    if not words or len(words) > 8 or words[0].lower() in _NOT_A_VALUE or words[0].lower().endswith("ed"):
        return False
    return (
        any(ch.isdigit() for ch in value)
        or any(w[0].isupper() or "_" in w or "." in w for w in words)
        or len(words) <= 3
    )


def _attr_ok(attr: str) -> bool:
    words = attr.lower().split()
    return 0 < len(words) <= 6 and words[-1] not in _GENERIC_ATTR


def _table(p: Passage) -> list[list[str]]:
    rows = [[_clean(c) for c in m.group(1).split("|")] for m in _ROW.finditer(p.text)]
    return [r for r in rows if not all(re.fullmatch(r":?-{2,}:?", c) for c in r if c)]  # the delimiter row


def _field_columns(header: list[str]) -> tuple[int, int, int | None] | None:
    """(field, allowed values, where) columns of a form's field table, or None when it is not one."""

    def find(rule: re.Pattern[str]) -> int | None:
        return next((j for j, h in enumerate(header) if rule.search(h)), None)

    name, values, where = find(_FIELD_COLUMN), find(_VALUES_COLUMN), find(_WHERE_COLUMN)
    if name is None or values is None or name == values:
        return None
    return name, values, where if where not in (name, values) else None


def _field_facts(p: Passage) -> list[tuple[str, str, str, str]]:
    """(attribute, allowed values, row, where) of each field of a form's field table."""
    rows = _table(p)
    cols = _field_columns(rows[0]) if len(rows) >= 2 else None
    if cols is None:
        return []
    name, values, where = cols
    out = []
    for r in rows[1:]:
        if len(r) == len(rows[0]) and r[name] and r[values]:
            attr = r[name] if r[name].lower().endswith("field") else f"{r[name]} field"
            out.append((attr, r[values], "| " + " | ".join(r) + " |", r[where] if where is not None else ""))
    return out


def _table_facts(p: Passage) -> list[tuple[str, str, str]]:
    rows = _table(p)
    if len(rows) < 2:
        return []
    header, body = rows[0], rows[1:]
    out = []
    for r in body:
        if len(r) != len(header) or not r[0]:
            continue
        for j in range(1, len(r)):
            if r[j]:
                attr = r[0] if len(r) == 2 else f"{header[j]} of the {r[0]}"
                out.append((attr, r[j], "| " + " | ".join(r) + " |"))
    return out


def extract_facts(p: Passage, forms: tuple[str, ...] = DEFAULT_FORMS) -> list[Fact]:
    """Every fact the passage states in the given ``forms`` (``FORMS``), in reading order of form: form
    fields, lines, table rows, then sentences. A table read as form fields is not read again as rows."""
    fields = _field_facts(p) if "fields" in forms else []
    found = list(fields)
    if "lines" in forms:
        found += [(m.group(1), m.group(2), m.group(0).strip(), "") for m in _LINE.finditer(p.text)]
    if "rows" in forms and not fields:
        found += [(*row, "") for row in _table_facts(p)]
    if "sentences" in forms:
        lines = p.text.splitlines()
        prose = "\n".join(ln for ln in lines if not _LINE.match(ln) and not _ROW.match(ln))
        patterns = _sentence_patterns(p.title)
        for sentence in _SENTENCE_END.split(re.sub(r"\s*\n\s*", " ", prose)):
            s = _clean(sentence)
            for pat in patterns:
                if (m := pat.match(s)) and _attr_ok(m["attr"]) and _value_ok(m["value"].strip()):
                    found.append((m["attr"], m["value"].strip(), s, ""))
                    break
    out, seen = [], set()
    for attr, value, text, where in found:
        a, v = _clean(attr).lower(), _clean(value).rstrip(".")
        if (a, v) not in seen and _attr_ok(a):
            seen.add((a, v))
            out.append(Fact(p.service, p.title, a, v, text, p, where))
    return out
