"""Text normalisation, in one place: how answers are compared and how pairs are cut into words."""

from __future__ import annotations

import re
import unicodedata

_EDGE_PUNCTUATION = re.compile(r"(?<![\w])[^\w\s]+|[^\w\s]+(?![\w])")
_WORD = re.compile(r"[a-z0-9]+(?:[.\-_][a-z0-9]+)*")


def normalise(text: str) -> str:
    """Lower case, accents folded, punctuation to spaces (keeping the inner marks of 02:30, a.b, x-y)."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return " ".join(_EDGE_PUNCTUATION.sub(" ", text).split())


def words(text: str) -> list[str]:
    """The lower-case words of ``text`` (a version such as 1.2 or a name such as x-y is one word)."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


GLIMPSE = 80  # characters of an answer or a name shown inline
ERROR_DETAIL = 300  # of a server's answer or an error, in a message
REASON = 500  # of a verdict's or a fallback's reason


def clip(text: str, limit: int = ERROR_DETAIL) -> str:
    """``text`` cut to ``limit`` characters, for an error message or a log line."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
