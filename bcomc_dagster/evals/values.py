"""What a short factual answer states: quantities with their units, times of day, booleans and names.

Text is read after one normalisation (``canonical``): Unicode folded (NFKC, every dash a hyphen, curly
quotes straight), lower case, thousands separators dropped and number words written as digits (text2num).
Units are converted by pint; the words that name them are mapped here (``UNITS``), because answers say
"KB", "secs" or "req/s" where pint expects its own names. Sizes in KB/MB/GB are binary (1 KB = 1024 bytes),
as the suites' docs use them (1536 MB = 1.5 GB).
"""

from __future__ import annotations

import contextlib
import math
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import Any

from text_to_num import alpha2digit

DASHES = dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"), "-")
QUOTES = dict.fromkeys(map(ord, "\u2018\u2019\u201a\u201b\u2032"), "'") | dict.fromkeys(
    map(ord, "\u201c\u201d\u201e\u201f\u2033"), '"'
)
_SEPARATOR = re.compile(r"(?<=\d)[,\u202f\u00a0 ](?=\d{3}(?!\d))")  # 1,200 / 1 200 (thin space) -> 1200

# unit words -> pint unit names (lower-cased surface forms)
UNITS: dict[str, str] = {
    **dict.fromkeys(["ms", "msec", "millisecond", "milliseconds"], "millisecond"),
    **dict.fromkeys(["s", "sec", "secs", "second", "seconds"], "second"),
    **dict.fromkeys(["min", "mins", "minute", "minutes"], "minute"),
    **dict.fromkeys(["h", "hr", "hrs", "hour", "hours"], "hour"),
    **dict.fromkeys(["day", "days"], "day"),
    **dict.fromkeys(["wk", "wks", "week", "weeks"], "week"),
    **dict.fromkeys(["yr", "yrs", "year", "years"], "year"),
    **dict.fromkeys(["b", "byte", "bytes"], "byte"),
    **dict.fromkeys(["bit", "bits"], "bit"),
    **dict.fromkeys(["kb", "kib", "kilobyte", "kilobytes", "kibibyte", "kibibytes"], "kibibyte"),
    **dict.fromkeys(["mb", "mib", "megabyte", "megabytes", "mebibyte", "mebibytes"], "mebibyte"),
    **dict.fromkeys(["gb", "gib", "gigabyte", "gigabytes", "gibibyte", "gibibytes"], "gibibyte"),
    **dict.fromkeys(["tb", "tib", "terabyte", "terabytes", "tebibyte", "tebibytes"], "tebibyte"),
    **dict.fromkeys(["%", "percent"], "percent"),
}
PER = {"per", "/", "a", "an", "each", "every"}
# words before a number that make it a label, not an amount ("version 2.1", "error 413", "rule 12")
LABELS = set(
    "version release v build rev revision step error code http status section rule article chapter page "
    "line table figure form part item number".split()
)  # "1200 requests per minute", "1200/min", "1200 a minute"
TRUE_WORDS = {"yes", "true", "on", "enabled", "enable", "allowed", "supported"}
FALSE_WORDS = {"no", "false", "off", "disabled", "disable", "forbidden", "unsupported"}
# words skipped when looking for what a number is said of ("the replication factor is 5")
FUNCTION_WORDS = set(
    "is are was were be been being of to at on in by the a an it its it's and or up as set default "
    "about around approximately roughly exactly just only than for with after within under over "
    "maximum max minimum min limit up to which that this there has have had can may will would "
    "must keeps keep uses use runs run offers allows allow gets get stays stay lasts last takes take "
    "either maybe perhaps possibly probably likely typically usually generally also then could should "
    "might shall but however though although".split()
)

_TOKEN = re.compile(r"[a-z0-9]+(?:[._\-][a-z0-9]+)*|%|/")
_TIME = re.compile(
    r"(?<![\w:.])(\d{1,2}):(\d{2})(?::\d{2})?(?![\d:])\s*(a\.?m\.?|p\.?m\.?)?"
    r"(?:\s*(?:in the )?(morning|evening|afternoon|at night))?"
    r"|(?<![\w:.])(\d{1,2})\s*(a\.?m\.?|p\.?m\.?)(?!\w)"
)
ZONES = (
    "utc gmt z cet cest eet eest wet west bst ist pst pdt mst mdt cst cdt est edt akst akdt hst jst kst "
    "aest aedt acst awst nzst nzdt sgt hkt msk"
).split()
_ZONE = re.compile(rf"\s*({'|'.join(ZONES)})\b")
_UNIT_WORD = r"(second|minute|hour|day|week|year)s?"
# spoken fractions of a unit, as decimals: "a quarter of an hour" -> "0.25 hour"
FRACTIONS = [
    (re.compile(rf"\b(?:a |one )?quarter of (?:a|an|one) {_UNIT_WORD}\b"), r"0.25 \1"),
    (re.compile(rf"\bthree quarters of (?:a|an|one) {_UNIT_WORD}\b"), r"0.75 \1"),
    (re.compile(rf"\b(?:a |one )?third of (?:a|an|one) {_UNIT_WORD}\b"), r"0.333333333 \1"),
    (re.compile(rf"\b(?:a |one )?half (?:of )?(?:a|an|one) {_UNIT_WORD}\b"), r"0.5 \1"),
    (re.compile(rf"\b(?:a|an|one) {_UNIT_WORD} and a half\b"), r"1.5 \1"),
    (re.compile(rf"\b(\d+) and a half {_UNIT_WORD}\b"), r"\1.5 \2"),
    (re.compile(r"\bhalf past (\d{1,2})\b"), r"\1:30"),
    (re.compile(r"\b(?:a )?quarter past (\d{1,2})\b"), r"\1:15"),
    (re.compile(r"(?<![\d:.])([01]\d|2[0-3])([0-5]\d)(?=\s*(?:utc|gmt|z|hours?|hrs)\b)"), r"\1:\2"),
]
_SECOND = re.compile(r"\bsecond\b")
_PRONOUN_ONE = re.compile(
    r"\b(the |this |that |default |no |any |each |every |which |only |another |new |old )one\b(?! (?:of )?\d)"
)
_CLAUSE = re.compile(r"[,;:()\[\]!?]|\.(?!\w)|\b(?:but|while|whereas|although|though)\b")


def canonical(text: str) -> str:
    """The normal form every comparison is made in (see the module docstring)."""
    text = unicodedata.normalize("NFKC", text).translate(DASHES).translate(QUOTES).lower()
    text = _SEPARATOR.sub("", text)
    text = _SECOND.sub("secondq", _fractions(text))  # text2num reads "per second" as an ordinal ("per 2nd")
    text = _PRONOUN_ONE.sub(r"\1oneq", text)  # "the one it listens on": a pronoun, not the number 1
    # number words as digits: "two weeks" -> "2 weeks", "thirty-eight" -> "38"; text2num gives up on a
    # few odd word runs, and then the words are kept
    with contextlib.suppress(ValueError, IndexError):
        text = alpha2digit(text, "en", threshold=0)
    text = text.replace("secondq", "second").replace("oneq", "one")
    return _fractions(text)  # again, for "2 and a half hours"


def _fractions(text: str) -> str:
    for pattern, repl in FRACTIONS:
        text = pattern.sub(repl, text)
    return text


def stem(word: str) -> str:
    """A word without its plural ending, for matching "copies" with "copy", "zones" with "zone"."""
    for end, repl in (("ies", "y"), ("ses", "s"), ("es", "e"), ("s", "")):
        if word.endswith(end) and len(word) > len(end) + 2:
            return word[: -len(end)] + repl
    return word


def content_stems(text: str) -> set[str]:
    return {stem(w) for w in _TOKEN.findall(canonical(text)) if w not in FUNCTION_WORDS and w != "/"}


@cache
def unit_registry() -> Any:
    import pint  # loads its unit definitions once, on first use

    return pint.UnitRegistry()


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str | None  # a pint unit expression ("second", "1 / minute"), None for a bare or counted number
    noun: str | None  # the counted thing or the word it is said of ("copies", "port"), stemmed
    start: int  # token index in the answer
    end: int
    surface: str = ""  # the words it was read from

    def magnitude(self) -> Any:
        """The pint quantity (None for a number without a unit)."""
        return unit_registry().Quantity(self.value, self.unit) if self.unit else None

    def same_kind(self, other: Quantity) -> bool:
        a, b = self.magnitude(), other.magnitude()
        if a is None or b is None:
            return a is None and b is None
        return bool(a.dimensionality == b.dimensionality)

    def equals(self, other: Quantity) -> bool:
        if not (math.isfinite(self.value) and math.isfinite(other.value)):
            return False
        a, b = self.magnitude(), other.magnitude()
        if a is None or b is None:
            return a is None and b is None and abs(self.value - other.value) < 1e-9
        if a.dimensionality != b.dimensionality:
            return False
        x, y = a.to_base_units().magnitude, b.to_base_units().magnitude
        return bool(abs(x - y) <= 1e-6 * max(abs(x), abs(y), 1e-12))

    def describe(self) -> str:
        return repr(self.surface or f"{self.value:g}")


@dataclass(frozen=True)
class TimeOfDay:
    minutes: int  # since midnight
    zone: str | None
    start: int  # character offset in the canonical text
    end: int

    def describe(self) -> str:
        return f"{self.minutes // 60:02d}:{self.minutes % 60:02d}" + (
            f" {self.zone.upper()}" if self.zone else ""
        )


def tokens(text: str) -> list[str]:
    """The canonical text's words; a name such as quill.toml, hmac-vex or 02 is one word."""
    return _TOKEN.findall(text)


def parts(token: str) -> list[str]:
    return re.split(r"[._\-]", token)


def times(text: str) -> list[TimeOfDay]:
    """Times of day in canonical text: 02:30, 2:30 am, 2:30 in the morning, 2 pm; with a zone if given."""
    out = []
    for m in _TIME.finditer(text):
        if m.group(1) is not None:
            hour, minute, half, part = int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)
        else:
            hour, minute, half, part = int(m.group(5)), 0, m.group(6), None
        half = (half or "").replace(".", "")
        if half == "pm" or (part in ("evening", "afternoon", "at night") and hour < 12):
            hour = hour % 12 + 12
        elif half == "am" and hour == 12:
            hour = 0
        if hour > 23 or minute > 59:
            continue
        zone = _ZONE.match(text, m.end())
        out.append(TimeOfDay(hour * 60 + minute, zone.group(1) if zone else None, m.start(), m.end()))
    return out


def _unit_at(words: list[str], i: int) -> tuple[str | None, str | None, int]:
    """The unit (pint name) and counted noun that start at word ``i``, and the index after them."""
    unit, noun, j = None, None, i
    if j < len(words) and words[j] in UNITS:
        unit, j = UNITS[words[j]], j + 1
    elif j < len(words) and words[j].isalpha() and len(words[j]) > 1 and words[j] not in FUNCTION_WORDS | PER:
        noun, j = stem(words[j]), j + 1
    if j + 1 < len(words) and words[j] in PER and words[j + 1] in UNITS:
        per = UNITS[words[j + 1]]
        unit, j = (f"{unit} / {per}" if unit else f"1 / {per}"), j + 2
    return unit, noun, j


def quantities(words: list[str]) -> list[Quantity]:
    """Numbers among the canonical words, each with its unit or counted noun, or else the content word
    before it (what it is said of). Numbers inside names (peb-north-3, es384, v2) are not quantities."""
    out = []
    for i, w in enumerate(words):
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([a-z%]+)?", w)
        if not m:
            continue
        value, suffix = float(m.group(1)), m.group(2)
        if suffix and suffix not in UNITS:
            continue  # 3rd, 2x, a name
        if not math.isfinite(value) or (i and words[i - 1] in LABELS):
            continue  # a run of digits past float's range; "version 2.1", "error 413": labels, not amounts
        rest = ([suffix] if suffix else []) + words[i + 1 :]
        unit, noun, j = _unit_at(rest, 0)
        if (  # "24 or 72 hours", "5 to 10 minutes": the first number shares the second's unit
            not suffix
            and j == 0
            and len(rest) > 2
            and rest[0] in ("or", "to", "and")
            and re.fullmatch(r"\d+(?:\.\d+)?", rest[1])
        ):
            unit, noun, _ = _unit_at(rest, 2)
        end = i + 1 + max(0, j - (1 if suffix else 0))
        if noun is None and unit is None:
            before = [
                x for x in words[max(0, i - 4) : i] if x not in FUNCTION_WORDS and x.isalpha() and len(x) > 1
            ]
            noun = stem(before[-1]) if before else None
        out.append(Quantity(value, unit, noun, i, end, " ".join(words[i:end])))
    return out


def parse_quantity(text: str) -> Quantity | None:
    """``text`` as one quantity ("9 days", "1200 requests per minute", "5"), or None when it is a name."""
    words = tokens(canonical(text))
    qs = quantities(words)
    if len(qs) == 1 and qs[0].start == 0 and qs[0].end == len(words):
        return qs[0]
    return None


def boolean(text: str) -> bool | None:
    w = canonical(text).strip(" .")
    return True if w in TRUE_WORDS else False if w in FALSE_WORDS else None


def clause_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of the clauses of canonical text (split at commas, semicolons, full stops, 'but')."""
    spans, start = [], 0
    for m in _CLAUSE.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return spans
