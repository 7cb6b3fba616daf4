"""Judges grade one answer against one question. The default judge, ``strict``, reads the asked value.

Grades follow SimpleQA: *correct* (the asked value is stated and neither contradicted, hedged between
values nor negated), *incorrect* and *not_attempted*; only correct passes. *error* is a judge that gave no
verdict; it fails the question too. ``reference`` is the older containment judge, kept by name for
campaigns that were graded with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from bcomc_dagster.evals import values as v
from bcomc_dagster.evals.reading import (
    QUESTION_WORDS,
    REFUSAL,
    Form,
    Reading,
    find_name,
    forms_of,
)
from bcomc_dagster.evals.suite import Question
from bcomc_dagster.text import normalise

Grade = Literal["correct", "incorrect", "not_attempted", "error"]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    error: bool = False  # the judge could not grade: a failed question, counted apart in the report
    grade_: Grade | None = field(default=None, kw_only=True)  # from passed/error when not given

    @property
    def grade(self) -> Grade:
        if self.grade_:
            return self.grade_
        return "error" if self.error else "correct" if self.passed else "incorrect"


def graded(grade: Grade, reason: str) -> Verdict:
    return Verdict(grade == "correct", reason, error=grade == "error", grade_=grade)


class Judge(Protocol):
    name: str

    def grade(self, question: Question, answer: str) -> Verdict: ...


class ReferenceJudge:
    """Passes an answer that contains, as whole words, the reference or one of its aliases (lenient: a
    hedge, a negation or a wrong unit passes too; see ``strict``)."""

    name = "reference"

    def grade(self, question: Question, answer: str) -> Verdict:
        said = f" {normalise(answer)} "
        for expected in (question.reference, *question.aliases):
            want = normalise(expected)
            if want and f" {want} " in said:
                return Verdict(True, f"contains {expected!r}")
        return Verdict(False, f"expected {question.reference!r}")


def _matches(a: v.Quantity, f: v.Quantity, related: set[str]) -> bool:
    if f.unit:
        return bool(a.unit) and a.equals(f)
    if a.unit or abs(a.value - f.value) > 1e-9:
        return False
    return f.noun is None or a.noun is None or a.noun == f.noun or a.noun in related


def _conflicts(a: v.Quantity, f: v.Quantity, related: set[str]) -> bool:
    """``a`` states another value of the asked kind: the same dimension, or a number said of the same
    thing."""
    if f.unit:
        return bool(a.unit) and a.same_kind(f) and not a.equals(f)
    return a.unit is None and a.value != f.value and (a.noun is None or a.noun in related)


def asked_unit(question: Question) -> str | None:
    """The unit the question itself names ("after how many seconds"), as a pint unit name."""
    named = {v.UNITS[w] for w in v.tokens(v.canonical(question.question)) if w in v.UNITS and len(w) > 2}
    return named.pop() if len(named) == 1 else None


def _in_the_asked_unit(r: Reading, question: Question, fs: list[v.Quantity]) -> Reading:
    """Bare numbers read in the unit the question names, when the reference is in that unit."""
    unit = asked_unit(question)
    if unit is None or not any(f.unit == unit for f in fs):
        return r
    qs = [replace(a, unit=unit) if a.unit is None and a.noun is None else a for a in r.quantities]
    return replace(r, quantities=qs)


class StrictJudge:
    """The default judge for short factual answers (see the module docstring); each verdict says why.

    Given the suite's questions, it also knows each service's other attributes, and fails a value said
    of one of them ("The key rotation interval is 12 hours." asked for the lease)."""

    name = "strict"

    def __init__(self, questions: Iterable[Question] = ()):
        v.unit_registry()  # loaded once, before eval threads grade at once
        self.siblings: dict[str, list[Question]] = {}
        for q in questions:
            self.siblings.setdefault(q.service, []).append(q)

    def _said_of_another(self, r: Reading, question: Question, start: int, related: set[str]) -> str | None:
        """Another attribute of the service, when the words before the value name it (two or more words
        of another question about the service) and none of the asked one's."""
        service = {v.stem(w) for w in re.split(r"[-_.]", question.service.lower())}
        c = r.clause[start]
        subject = {v.stem(w) for i, w in enumerate(r.words[:start]) if r.clause[i] == c} - service
        if subject & (related - service):
            return None
        for q in self.siblings.get(question.service, []):
            named = subject & (v.content_stems(q.question) - related - service - QUESTION_WORDS)
            if q.id != question.id and len(named) >= 2:
                return " ".join(sorted(named))
        return None

    @staticmethod
    def _extra(r: Reading, question: Question, hit: v.Quantity, other: v.Quantity, related: set[str]) -> bool:
        """``other`` is extra detail, not a second answer: it stands in another clause that neither hedges
        or corrects nor names the asked attribute, while the value's own clause names it or leads the
        answer ("17 seconds (default), configurable up to 60 seconds"; "Leases last 12 hours; keys rotate
        every 30 days")."""
        service = {v.stem(w) for w in re.split(r"[-_.]", question.service.lower())}
        asked = related - service

        def names_it(index: int) -> bool:  # the clause, or a relative clause after it ("…, which is when")
            c = r.clause[index]
            nxt = [i for i, k in enumerate(r.clause) if k == c + 1]
            clauses = {c, c + 1} if nxt and r.words[nxt[0]] in ("which", "that", "when", "where") else {c}
            return any(r.clause[i] in clauses and v.stem(w) in asked for i, w in enumerate(r.words))

        c_hit, c_other = r.clause[hit.start], r.clause[other.start]
        leads = all(r.clause[q.start] >= c_hit for q in r.quantities)
        return (
            c_other != c_hit
            and not r.second_thoughts(other.start)
            and not names_it(other.start)
            and (names_it(hit.start) or leads)
        )

    def grade(self, question: Question, answer: str) -> Verdict:
        if not answer.strip():
            return graded("not_attempted", "empty answer")
        r = Reading.of(answer)
        forms = forms_of(question)
        related = (v.content_stems(question.question) - QUESTION_WORDS) | {
            f.quantity.noun for f in forms if f.quantity and f.quantity.noun
        }
        quantity_forms = [f for f in forms if f.quantity]
        if quantity_forms:
            return self._quantity(r, question, quantity_forms, related)
        if time_forms := [f for f in forms if f.time]:
            return self._time(r, question, time_forms)
        return self._name(r, question, forms)

    @staticmethod
    def _unattempted(r: Reading, question: Question, stated: str | None) -> Verdict:
        if stated:
            return graded("incorrect", f"states {stated}, expected {question.reference!r}")
        if REFUSAL.search(r.text):
            return graded("not_attempted", "declines to answer")
        return graded("not_attempted", f"no value stated; expected {question.reference!r}")

    def _quantity(self, r: Reading, question: Question, forms: list[Form], related: set[str]) -> Verdict:
        fs = [f.quantity for f in forms if f.quantity]
        r = _in_the_asked_unit(r, question, fs)
        hits = [a for a in r.quantities if any(_matches(a, f, related) for f in fs)]
        asked = v.quantities(v.tokens(v.canonical(question.question)))  # "one account": not an answer
        others = [
            a
            for a in r.quantities
            if a not in hits
            and any(_conflicts(a, f, related) for f in fs)
            and not any(a.equals(h) for h in hits)
            and not any(a.value == q.value for q in asked)
            and not r.negated(a.start, a.end)  # "not 256 bytes; the maximum is 512 bytes"
        ]
        own = [a for a in hits if a.unit or a.noun is None or a.noun in related]
        if not hits:
            wrong_unit = [a for a in r.quantities if any(a.value == f.value and a.unit != f.unit for f in fs)]
            if others or wrong_unit:
                said = (others or wrong_unit)[0]
                why = "a non-equivalent unit: " if not others else ""
                return graded("incorrect", f"states {why}{said.describe()}, expected {question.reference!r}")
            return self._unattempted(r, question, r.quantities[0].describe() if r.quantities else None)
        hit = (own or hits)[0]
        if r.negated(hit.start, hit.end):
            return graded("incorrect", f"negates {hit.describe()}")
        if not others and (attr := self._said_of_another(r, question, hit.start, related)):
            return graded("incorrect", f"states {hit.describe()} of another attribute ({attr})")
        if own:  # a second value in a clause about something else is extra detail (see _extra)
            others = [o for o in others if not self._extra(r, question, hit, o, related)]
        listed = ", ".join(o.describe() for o in others)
        if others and not own:
            return graded("incorrect", f"states {listed}; {hit.describe()} is said of {hit.noun!r}")
        if others and (r.hedged(hit.start, hit.end) or any(r.second_thoughts(o.start) for o in others)):
            return graded("incorrect", f"hedges between {hit.describe()} and {listed}")
        if others:
            return graded("incorrect", f"contradicts itself: states {hit.describe()} and {listed}")
        # a value said of a word the question does not use, with nothing else stated, is the answer
        return graded("correct", f"states {hit.describe()}")

    def _time(self, r: Reading, question: Question, forms: list[Form]) -> Verdict:
        want = [f.time for f in forms if f.time]
        utc = {"utc", "gmt", "z"}
        asked_zone = next((w.zone for w in want if w.zone), None)  # a zone-less alias keeps the zone

        def same_zone(a: v.TimeOfDay, b: v.TimeOfDay) -> bool:
            zone = b.zone or asked_zone
            return a.zone is None or zone is None or a.zone == zone or {a.zone, zone} <= utc

        hits = [t for t in r.times if any(t.minutes == w.minutes and same_zone(t, w) for w in want)]
        others = [t for t in r.times if t not in hits]
        if not hits:
            return self._unattempted(r, question, others[0].describe() if others else None)
        k = r.times.index(hits[0])
        at = r.time_words[k]
        if r.negated(at, at + 1):
            return graded("incorrect", f"negates {hits[0].describe()}")
        if others or r.hedged(at, at + 1):
            also = f" and {others[0].describe()}" if others else " and another value"
            return graded("incorrect", f"hedges between {hits[0].describe()}{also}")
        return graded("correct", f"states {hits[0].describe()}")

    @staticmethod
    def _polarity(r: Reading) -> bool | None:
        """Yes or no: a leading yes / no decides ("No, it is enabled" answers no); else the state words,
        each flipped by a negation ("it is not enabled"); None when they disagree or there are none."""
        if r.words and r.words[0] in ("yes", "no"):
            return r.words[0] == "yes"
        said = {
            (w in v.TRUE_WORDS) != r.negated(i, i + 1)
            for i, w in enumerate(r.words)
            if w in v.TRUE_WORDS | v.FALSE_WORDS
        }
        return said.pop() if len(said) == 1 else None

    def _name(self, r: Reading, question: Question, forms: list[Form]) -> Verdict:
        spans = [(f, s) for f in forms if f.name for s in find_name(r.words, f.name)]
        if booleans := [f for f in forms if f.boolean is not None]:
            polarity = self._polarity(r)
            if polarity is not None:
                ok = polarity == booleans[0].boolean
                return graded("correct" if ok else "incorrect", f"answers {'yes' if polarity else 'no'}")
        if not spans:
            return self._unattempted(r, question, None if REFUSAL.search(r.text) else "something else")
        form, (start, end) = spans[0]
        said = " ".join(r.words[start:end])
        if r.negated(start, end):
            return graded("incorrect", f"negates {said!r}")
        if r.hedged(start, end):
            return graded("incorrect", f"hedges between {said!r} and another value")
        return graded("correct", f"states {said!r}")


def loose_aliases(question: Question) -> list[str]:
    """Aliases that accept more than the reference: a bare number where the reference has a unit that the
    question does not name (the strict judge passes "1200 requests per second" for "1200 requests per
    minute" no more, but with such an alias it passes a bare "1200", which may not mean the same)."""
    ref = Form.of(question.reference)
    if not (ref.quantity and ref.quantity.unit) or asked_unit(question) == ref.quantity.unit:
        return []  # a count ("4 attempts") or a unit the question names ("how many seconds") is clear
    return [
        a
        for a in question.aliases
        if (q := Form.of(a).quantity) is not None and q.unit is None and q.noun is None
    ]
