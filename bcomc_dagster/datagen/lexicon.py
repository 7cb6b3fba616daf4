"""The embedded generator's lexicon: the kind of each fact's value, and the ways people ask for it.

The kinds, their questions, the situations an attribute names and the attributes' synonyms are data
(``lexicon.toml``, extended by a user's file of the same shape), not code: a fact is asked by what kind
of value it is ("what port do I connect to"), by the task its attribute names ("how often does it run a
backup"), and by its attribute's name in other words.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import tomllib

from bcomc_dagster.datagen.facts import Fact
from bcomc_dagster.errors import InputError

SHIPPED = Path(__file__).with_name("lexicon.toml")
_FIELDS = frozenset({"svc", "attr", "noun", "nouns", "unit"})
_FILLER = frozenset("of for in on the a an per to by".split())


@dataclass(frozen=True)
class Kind:
    name: str
    attribute: frozenset[str]
    value: re.Pattern[str] | None
    head: frozenset[str]
    questions: tuple[str, ...]
    alone: tuple[str, ...]

    def fits(self, fact: Fact) -> bool:
        words = set(_words(fact.attribute))
        if self.attribute and not words & self.attribute:
            return False
        # a kind with no rule takes any fact
        return self.value is None or self.value.search(fact.value) is not None


@dataclass(frozen=True)
class Situation:
    attribute: frozenset[str]
    questions: tuple[str, ...]
    kinds: frozenset[str] = frozenset()  # the kinds of value it fits (none: any)


@dataclass(frozen=True)
class Lexicon:
    kinds: tuple[Kind, ...]
    situations: tuple[Situation, ...]
    general: tuple[str, ...]
    synonyms: dict[str, tuple[str, ...]]

    def kind_of(self, fact: Fact) -> Kind:
        return next(k for k in self.kinds if k.fits(fact))

    def questions(self, fact: Fact, peers: tuple[Fact, ...] = ()) -> list[str]:
        """Every question this lexicon asks of ``fact``: first interleaved by source (its attribute by
        name, its kind, the situations its attribute names) so that the first few already differ in
        shape, then every other pairing of a template with a name of the attribute. ``peers``: the
        service's facts; a question that names neither the attribute nor its noun is asked only of a
        fact alone in its kind (else two facts would share a question and not an answer)."""
        kind = self.kind_of(fact)
        alone = not any(self.kind_of(p) == kind for p in peers if p.value.lower() != fact.value.lower())
        words = set(_words(fact.attribute))
        situations = [
            q
            for s in self.situations
            if words & s.attribute and (not s.kinds or kind.name in s.kinds)
            for q in s.questions
        ]
        # the docs' own label first, then the kind's and the situations' ways of asking
        sources = [list(self.general), list(kind.questions) + list(kind.alone), situations]
        sources = [[t for t in src if alone or _names_its_fact(t)] for src in sources]
        names = self.attributes(fact.attribute)
        fill = {"svc": fact.title, "noun": noun(fact.attribute, kind.head), "unit": unit(fact.value)}
        fill["nouns"] = fill["noun"] if fill["noun"].endswith("s") else ""
        out: list[str] = []
        seen: set[str] = set()

        def add(template: str, attr: str) -> None:
            if (q := _fill(template, fill | {"attr": attr})) is not None and q not in seen:
                seen.add(q)
                out.append(q)

        for i in range(max(map(len, sources))):
            for src in sources:
                if i < len(src):
                    add(src[i], names[len(out) % len(names)])
        for shift in range(1, len(names)):  # then each template with the attribute's other names
            for i in range(max(map(len, sources))):
                for src in sources:
                    if i < len(src):
                        add(src[i], names[(i + shift) % len(names)])
        return out

    def attributes(self, attribute: str) -> list[str]:
        """The attribute, then the attribute with one of its phrases swapped for each synonym."""
        out = [attribute]
        for phrase in sorted(self.synonyms, key=len, reverse=True):
            if re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", attribute):
                for other in self.synonyms[phrase]:
                    swapped = re.sub(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", other, attribute, count=1)
                    if swapped not in out:
                        out.append(swapped)
        return out


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9][a-z0-9-]*", text.lower())


def _names_its_fact(template: str) -> bool:
    return "{attr}" in template or "{noun}" in template or "{nouns}" in template


def noun(attribute: str, head: frozenset[str]) -> str:
    """The attribute without the words that name its kind: 'maximum message size' -> 'message'."""
    words = [w for w in attribute.split() if w.lower() not in head]
    while words and words[0].lower() in _FILLER:
        words.pop(0)
    while words and words[-1].lower() in _FILLER:
        words.pop()
    return " ".join(words)


def unit(value: str) -> str:
    """The unit word after a value's number ('21 days' -> 'days'), '' for a bare number or a name."""
    m = re.match(r"^[\d.,]+\s*([A-Za-z]+)", value)
    if not m or m.group(1).lower() == "per":
        return ""
    word = m.group(1)
    return word if word.endswith("s") or word.isupper() or len(word) <= 2 else word + "s"  # "how many hours"


def _fill(template: str, values: dict[str, str]) -> str | None:
    needed = {f for _, f, _, _ in string.Formatter().parse(template) if f}
    if any(not values.get(f) for f in needed):
        return None
    text = template.format(**{f: values[f] for f in needed})
    text = re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", r"\1n ", text)  # "an eviction", not "a eviction"
    text = re.sub(r"(?<=s)'s\b", "'", text)  # "Kestrel Functions' runtime"
    return text[0].upper() + text[1:]


def _check(data: object, source: Path) -> dict[str, object]:
    """The TOML's shape, with errors that name the file and the entry."""
    if not isinstance(data, dict):
        raise InputError(f"{source}: not a lexicon table")
    for key in data:
        if key not in ("kind", "situation", "general", "synonyms"):
            raise InputError(
                f"{source}: unknown section {key!r}; expected kind, situation, general, synonyms"
            )

    def templates(where: str, items: object) -> None:
        if not isinstance(items, list) or not all(isinstance(t, str) and t.strip() for t in items):
            raise InputError(f"{source}: {where}: expected a list of question templates")
        for t in items:
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(t) if f is not None}
            except ValueError as e:
                raise InputError(f"{source}: {where}: template {t!r}: {e}") from None
            if bad := fields - _FIELDS:
                raise InputError(
                    f"{source}: {where}: template {t!r} has unknown placeholder(s) {sorted(bad)}; "
                    f"expected {sorted(_FIELDS)}"
                )

    def words(where: str, items: object) -> None:
        if not isinstance(items, list) or not all(isinstance(w, str) and w.strip() for w in items):
            raise InputError(f"{source}: {where}: expected a list of words")

    for key, shape in (("kind", "[[kind]]"), ("situation", "[[situation]]")):
        if not isinstance(data.get(key, []), list):
            raise InputError(f"{source}: {key}: expected an array of tables ({shape})")
    if not isinstance(data.get("general", {}), dict):
        raise InputError(f"{source}: general: expected a table ([general] with questions = [...])")
    for i, k in enumerate(data.get("kind", [])):
        where = f"[[kind]] {i + 1}"
        if not isinstance(k, dict) or not isinstance(k.get("name"), str):
            raise InputError(f"{source}: {where}: needs a name")
        if extra := set(k) - {"name", "attribute", "value", "head", "questions", "alone"}:
            raise InputError(f"{source}: {where} ({k['name']}): unknown field(s) {sorted(extra)}")
        for field in ("attribute", "head"):
            words(f"{where} ({k['name']}) {field}", k.get(field, []))
        templates(f"{where} ({k['name']}) questions", k.get("questions", []))
        templates(f"{where} ({k['name']}) alone", k.get("alone", []))
        if "value" in k:
            try:
                re.compile(k["value"])
            except (re.error, TypeError) as e:
                raise InputError(
                    f"{source}: {where} ({k['name']}) value: not a regular expression: {e}"
                ) from None
    for i, s in enumerate(data.get("situation", [])):
        where = f"[[situation]] {i + 1}"
        if not isinstance(s, dict) or not s.get("attribute"):
            raise InputError(f"{source}: {where}: needs attribute words")
        if extra := set(s) - {"attribute", "kind", "questions"}:
            raise InputError(f"{source}: {where}: unknown field(s) {sorted(extra)}")
        words(f"{where} attribute", s["attribute"])
        words(f"{where} kind", s.get("kind", []))
        templates(f"{where} questions", s.get("questions", []))
    templates("general questions", data.get("general", {}).get("questions", []))
    syn = data.get("synonyms", {})
    if not isinstance(syn, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in syn.values()
    ):
        raise InputError(f"{source}: synonyms: expected phrase = [other phrases]")
    return data


def _read(path: Path) -> dict[str, object]:
    try:
        return _check(tomllib.loads(path.read_text(encoding="utf-8")), path)
    except OSError as e:
        raise InputError(f"{path}: cannot read the lexicon: {e.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a TOML lexicon: {e}") from None


def load(*extras: Path | None) -> Lexicon:
    """The shipped lexicon, with each of ``extras``' kinds first (in order) and their questions and
    synonyms added (read again when a file changes)."""
    files = tuple(e.expanduser().resolve() for e in extras if e is not None)
    stamps = tuple(f.stat().st_mtime_ns if f.is_file() else -1 for f in (SHIPPED, *files))
    return _load(files, stamps)


@cache
def _load(extras: tuple[Path, ...], stamps: tuple[int, ...]) -> Lexicon:
    base = _read(SHIPPED)
    more = [_read(e) for e in extras]
    first = [*more, base]  # kinds and situations: the extras' first
    kinds = [k for t in first for k in t.get("kind", [])]  # type: ignore[attr-defined]
    synonyms: dict[str, tuple[str, ...]] = {}
    for table in (base, *more):
        for phrase, others in table.get("synonyms", {}).items():  # type: ignore[attr-defined]
            synonyms[phrase.lower()] = (*synonyms.get(phrase.lower(), ()), *others)
    return Lexicon(
        kinds=tuple(
            Kind(
                name=k["name"],
                attribute=frozenset(w.lower() for w in k.get("attribute", [])),
                value=re.compile(k["value"], re.IGNORECASE) if "value" in k else None,
                head=frozenset(w.lower() for w in k.get("head", [])),
                questions=tuple(k.get("questions", [])),
                alone=tuple(k.get("alone", [])),
            )
            for k in kinds
        ),
        situations=tuple(
            Situation(
                frozenset(w.lower() for w in s["attribute"]),
                tuple(s.get("questions", [])),
                frozenset(s.get("kind", [])),
            )
            for t in first
            for s in t.get("situation", [])  # type: ignore[attr-defined]
        ),
        general=tuple(q for t in (base, *more) for q in t.get("general", {}).get("questions", [])),  # type: ignore[attr-defined]
        synonyms=synonyms,
    )
