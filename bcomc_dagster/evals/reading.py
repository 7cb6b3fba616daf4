"""An answer, read for grading: its words in clauses, the quantities, times of day and names it states, and
whether a value is negated or hedged; and the accepted forms of a reference, by the kind of value each is.
The strict judge (``evals.judge``) matches the two."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bcomc_dagster.evals import values as v
from bcomc_dagster.evals.suite import Question

NEGATORS = {"not", "never", "no", "nor", "neither", "without", "instead", "rather", "cannot"}
NEGATOR_STEMS = {"isn", "aren", "doesn", "don", "didn", "wasn", "weren", "won", "can", "shouldn"}
NOT_NEGATING = {
    "more",
    "less",
    "longer",
    "later",
    "greater",
    "larger",
    "bigger",
    "exceed",
    "only",
    "over",
    "beyond",
    "above",
}
# in another clause, a second value of the asked kind is extra detail ("17 seconds (default), up to 60
# seconds") unless the clause hedges or corrects ("… but it could also be 6012", "sorry, 7 days")
SECOND_THOUGHTS = {
    "or",
    "either",
    "maybe",
    "perhaps",
    "possibly",
    "could",
    "might",
    "probably",
    "alternatively",
    "actually",
    "sometimes",
    "depending",
    "depend",
    "sorry",
    "correction",
    "rather",
    "wait",
    "instead",
    "unless",
}
COPULAS = {"is", "are", "was", "were", "does", "do"}
HEDGES = {"or", "either"}
REFUSAL = re.compile(
    r"\b(i don'?t know|i do not know|not sure|no idea|unsure|can'?not (?:find|say|answer|determine|tell)|"
    r"can'?t (?:find|say|answer|determine|tell)|unable to|no information|(?:is|are) not (?:specified|"
    r"mentioned|documented|available|stated)|i'?m sorry|i am sorry|i apologi[sz]e)\b"
)
WINDOW = 5  # words before a value searched for a negation or a hedge
QUESTION_WORDS = {"what", "which", "how", "many", "much", "long", "big", "large", "often", "when", "where"}


def compound(qs: list[v.Quantity], words: list[str]) -> list[v.Quantity]:
    """Adjacent amounts of one dimension as their sum: "1 hour 30 minutes", "1 hour and 30 minutes"."""
    out: list[v.Quantity] = []
    for q in qs:
        prev = out[-1] if out else None
        gap = words[prev.end : q.start] if prev else []
        if prev and prev.unit and q.unit and prev.same_kind(q) and gap in ([], ["and"]):
            total = (prev.magnitude() + q.magnitude()).to(q.unit).magnitude
            out[-1] = v.Quantity(
                float(total), q.unit, q.noun, prev.start, q.end, f"{prev.surface} {q.surface}"
            )
        else:
            out.append(q)
    return out


@dataclass
class Reading:
    """One answer, read: its words (in clauses), quantities and times of day."""

    text: str
    words: list[str]
    clause: list[int]  # clause index of each word
    quantities: list[v.Quantity]
    times: list[v.TimeOfDay]

    time_words: list[int] = field(default_factory=list)  # the word index of each time of day

    @classmethod
    def of(cls, answer: str) -> Reading:
        text = v.canonical(answer)
        text = re.sub(rf"(?<=\d)-(?=(?:{'|'.join(k for k in v.UNITS if k.isalpha())})\b)", " ", text)
        tods = v.times(text)
        plain, last = "", 0
        for k, t in enumerate(tods):  # each time of day stands as one word, tod<k>, among the others
            plain += text[last : t.start] + f" tod{k} "
            last = t.end
        plain += text[last:]
        words: list[str] = []
        clause: list[int] = []
        qs: list[v.Quantity] = []
        for n, (a, b) in enumerate(v.clause_spans(plain)):
            ws = v.tokens(plain[a:b])
            qs += [
                v.Quantity(q.value, q.unit, q.noun, q.start + len(words), q.end + len(words), q.surface)
                for q in compound(v.quantities(ws), ws)
            ]
            words += ws
            clause += [n] * len(ws)
        at = {int(w[3:]): i for i, w in enumerate(words) if re.fullmatch(r"tod\d+", w)}
        return cls(text, words, clause, qs, tods, [at.get(k, 0) for k in range(len(tods))])

    def negated(self, start: int, end: int) -> bool:
        """A negation before the value in its clause ("does not use snapshot"), or after it with a verb
        ("snapshot mode is not used"); limits ("no more than 512 bytes") are not negations."""
        c = self.clause[start]
        before = [i for i in range(max(0, start - WINDOW), start) if self.clause[i] == c]
        for i in before:
            w = self.words[i]
            if w in NEGATORS or (w in NEGATOR_STEMS and i + 1 < start and self.words[i + 1] == "t"):
                nxt = {v.stem(x) for x in self.words[i + 1 : i + 3]} | set(self.words[i + 1 : i + 3])
                if not (nxt & NOT_NEGATING):
                    return True
        after = []
        for i in range(end, min(len(self.words), end + 4)):
            if self.clause[i] != c or self.words[i] in ("and", "which", "that", "so"):
                break  # "kept 9 days and is not deleted earlier": another statement
            after.append(self.words[i])
        for j, w in enumerate(after):
            if w in COPULAS and j + 1 < len(after) and after[j + 1] in NEGATORS | {"not"}:
                return True
            if w in NEGATOR_STEMS and j + 1 < len(after) and after[j + 1] == "t":
                return True
        return False

    def second_thoughts(self, index: int) -> bool:
        """The clause of word ``index``, or the one before it ("Sorry, 7 days"), hedges or corrects."""
        c = self.clause[index]
        return any(self.clause[i] in (c - 1, c) and w in SECOND_THOUGHTS for i, w in enumerate(self.words))

    def hedged(self, start: int, end: int) -> bool:
        """'or' / 'either' next to the value: before it in its clause, or just after ("LFU-7 or LRU",
        "Serpent-X, or possibly AES-256")."""
        c = self.clause[start]
        before = [self.words[i] for i in range(max(0, start - 3), start) if self.clause[i] == c]
        return bool(HEDGES & set(before + self.words[end : end + 2]))


@dataclass(frozen=True)
class Form:
    """One accepted form of the reference, by the kind of value it is."""

    text: str
    quantity: v.Quantity | None = None
    time: v.TimeOfDay | None = None
    boolean: bool | None = None
    name: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str) -> Form:
        c = v.canonical(text)
        tods = v.times(c)
        if (
            len(tods) == 1
            and not re.sub(r"\b(utc|gmt|z)\b", "", c[: tods[0].start] + c[tods[0].end :]).strip()
        ):
            return cls(text, time=tods[0])
        if (b := v.boolean(text)) is not None:
            return cls(text, boolean=b)
        if q := v.parse_quantity(text):
            return cls(text, quantity=q)
        return cls(text, name=tuple(p for t in v.tokens(c) for p in v.parts(t)))


def forms_of(question: Question) -> list[Form]:
    return [Form.of(t) for t in (question.reference, *question.aliases) if t.strip()]


def find_name(words: list[str], name: tuple[str, ...]) -> list[tuple[int, int]]:
    """Word spans whose parts spell ``name`` (hmac-vex = hmac vex = hmac_vex), on word boundaries."""
    spans = []
    for i in range(len(words)):
        got: list[str] = []
        for j in range(i, len(words)):
            got += v.parts(words[j])
            if tuple(got) == name:
                spans.append((i, j + 1))
                break
            if len(got) >= len(name) or tuple(got) != name[: len(got)]:
                break
    return spans
