"""Documentation snippets: the grounded facts a generator may draw Q&A pairs from.

A snippet is one reference line of a service's documentation (``- Attribute: value``) with the service's
title; nothing a generator writes may go beyond what its snippet says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TITLE = re.compile(r"^#\s+(.+?)\s*$", re.MULTILINE)
_FACT = re.compile(r"^\s*[-*]\s+(?:\*\*)?([^:*\n]{2,60}?)(?:\*\*)?\s*:\s*(\S.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Snippet:
    service: str  # the suite's key for the service (doc file stem)
    title: str  # the name the documentation uses
    attribute: str  # lower case, e.g. "default port"
    value: str
    text: str  # the line as written in the documentation


def service_title(service: str, doc: str) -> str:
    m = _TITLE.search(doc)
    return m.group(1) if m else service


def extract_snippets(service: str, doc: str) -> list[Snippet]:
    title = service_title(service, doc)
    return [
        Snippet(service, title, m.group(1).strip().lower(), m.group(2), m.group(0).strip())
        for m in _FACT.finditer(doc)
    ]
