"""Filters between generation and training: validation, grounding, decontamination, dedup.

Every dropped pair is counted under one reason and kept in the report with its detail, never dropped
silently. The order matters: a pair that fails validation is not compared with anything, and a
contaminated pair is caught even when it also duplicates another.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from rapidfuzz import fuzz, process

from bcomc_dagster.datagen.schema import QAPair
from bcomc_dagster.text import normalise, words

REASONS = ("invalid", "ungrounded", "contaminated", "duplicate", "near_duplicate")
STOPWORDS = frozenset(
    "a an the is are was were be been of for in on at to by with from and or its it this that these those "
    "what which who whom whose when where why how do does did can could should would will shall may might "
    "me my you your i we our they their there here as so than then s please tell give".split()
)

# what a valid pair looks like beyond its length: a question mostly of letters, text that does not repeat
MIN_LETTER_SHARE = 0.5  # of a question's characters
REPEAT_MIN_WORDS = 8  # texts this long or longer are checked for repetition
MIN_DISTINCT_SHARE = 0.3  # of their words, at least this share distinct


class QualityConfig(BaseModel):
    # no 1 for true, no "5" for 5, no Infinity or NaN
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    min_question_chars: int = Field(10, ge=1, le=100_000, description="Shortest question kept.")
    max_question_chars: int = Field(500, ge=1, le=100_000, description="Longest question kept.")
    min_answer_chars: int = Field(1, ge=1, le=100_000, description="Shortest answer kept.")
    max_answer_chars: int = Field(2000, ge=1, le=100_000, description="Longest answer kept.")
    near_duplicate_threshold: float = Field(
        92,
        ge=50,
        le=100,
        description="rapidfuzz ratio (0-100) of normalised questions at or above which two pairs of one "
        "passage are near duplicates, unless they were read from two facts and answer differently.",
    )
    decontamination_ngram: int = Field(
        3, ge=1, le=13, description="Word n-gram size for eval-overlap checks."
    )
    decontamination_threshold: float = Field(
        0.6,
        gt=0,
        le=1,
        description="Share of an eval question's n-grams found in a training question that makes it "
        "contaminated.",
    )
    on_contamination: Literal["drop", "fail"] = Field(
        "drop",
        description="'drop' contaminated pairs, or 'fail': keep them so the blocking check stops the "
        "iteration.",
    )
    grounding: Literal["overlap", "judge", "off"] = Field(
        "overlap",
        description="How answers are checked against their passage: content-word overlap, or the judge "
        "model (judge_backend / judge_model) deciding whether the passage supports the answer.",
    )
    min_grounding_overlap: float = Field(
        0.8,
        ge=0,
        le=1,
        description="Share of an answer's content words found in its passage (and service name).",
    )

    @model_validator(mode="after")
    def _bounds_in_order(self) -> QualityConfig:
        for kind in ("question", "answer"):
            lo, hi = getattr(self, f"min_{kind}_chars"), getattr(self, f"max_{kind}_chars")
            if lo > hi:
                raise ValueError(
                    f"quality.min_{kind}_chars ({lo}) is above quality.max_{kind}_chars ({hi}): every "
                    "pair would be dropped"
                )
        return self


class Drop(BaseModel):
    id: str
    service: str
    question: str
    reason: str
    detail: str


class FilterResult(BaseModel):
    kept: list[QAPair]
    dropped: list[Drop]

    def counts(self) -> dict[str, int]:
        c = Counter(d.reason for d in self.dropped)
        return {r: c.get(r, 0) for r in REASONS}


class QualityRecord(BaseModel):
    """What the dataset stage kept and dropped, and why (``dataset_quality.json``)."""

    rows: int | None = None  # the cumulative dataset's rows; None: written before the record counted them
    added: int | None = None
    dropped_by_reason: dict[str, int]
    dropped: list[Drop] = []


# -- text helpers ---------------------------------------------------------------------------------


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i : i + n]) for i in range(len(w) - n + 1)}


# -- validation -----------------------------------------------------------------------------------
def invalid_reason(pair: QAPair, cfg: QualityConfig) -> str | None:
    """Why a pair is not fit to train on (lengths, language sanity), or None."""
    for field, text, lo, hi in (
        ("question", pair.question, cfg.min_question_chars, cfg.max_question_chars),
        ("answer", pair.answer, cfg.min_answer_chars, cfg.max_answer_chars),
    ):
        n = len(text.strip())
        if not lo <= n <= hi:
            return f"{field} has {n} characters; expected {lo}-{hi}"
        if any(unicodedata.category(ch) in ("Cc", "Cs", "Co") and ch not in "\n\t" for ch in text):
            return f"{field} contains control characters"
        letters = sum(ch.isalpha() for ch in text)
        if field == "question" and letters < MIN_LETTER_SHARE * n:
            return f"question is {letters}/{n} letters; expected mostly words"
        w = words(text)
        if len(w) >= REPEAT_MIN_WORDS and len(set(w)) < MIN_DISTINCT_SHARE * len(w):
            return f"{field} repeats itself ({len(set(w))} distinct of {len(w)} words)"
    if not pair.provenance.snippet.strip():
        return "provenance has no passage"
    return None


# -- grounding ------------------------------------------------------------------------------------
def grounding(answer: str, passage: str, context: Iterable[str] = ()) -> tuple[float, list[str]]:
    """Share of the answer's content words found in the passage (or the service's names), and the
    words that were not. Any number or identifier missing from the passage makes the share 0."""
    source = set(words(passage)) | {w for c in context for w in words(c)}
    content = [w for w in words(answer) if w not in STOPWORDS]
    if not content:
        return 0.0, []
    missing = [w for w in content if w not in source]
    if any(any(ch.isdigit() for ch in w) for w in missing):
        return 0.0, missing
    return 1 - len(missing) / len(content), missing


# -- decontamination ------------------------------------------------------------------------------
class EvalIndex:
    """The eval questions a training question must not resemble, by word n-gram containment."""

    def __init__(self, questions: dict[str, str], n: int = 3, threshold: float = 0.6):
        self.n, self.threshold = n, threshold
        self.grams = {qid: ngrams(q, n) for qid, q in questions.items()}
        self.text = questions
        self.by_gram: dict[tuple[str, ...], set[str]] = {}
        for qid, gs in self.grams.items():
            for g in gs:
                self.by_gram.setdefault(g, set()).add(qid)

    def match(self, question: str) -> tuple[str, float] | None:
        """The eval question most contained in ``question`` at or above the threshold, with the share."""
        mine = ngrams(question, self.n)
        candidates = {qid for g in mine for qid in self.by_gram.get(g, ())}
        best = None
        for qid in candidates:
            share = len(self.grams[qid] & mine) / len(self.grams[qid])
            if share >= self.threshold and (best is None or share > best[1]):
                best = (qid, round(share, 3))
        return best


# -- the whole filter -----------------------------------------------------------------------------
def filter_pairs(
    new: list[QAPair],
    previous: list[QAPair],
    evals: EvalIndex,
    cfg: QualityConfig,
    service_names: dict[str, list[str]] | None = None,
    judged: dict[str, tuple[bool, str]] | None = None,
) -> FilterResult:
    """Keep the new pairs fit to add to ``previous``; earlier rows always win over later ones.
    ``judged``: pair id -> (supported, reason) from the judge model, for ``grounding: judge``."""
    names = service_names or {}
    kept: list[QAPair] = []
    dropped: list[Drop] = []
    seen_ids = {r.id for r in previous}
    # near duplicates are looked for among pairs of one passage: (normalised questions, their pairs)
    by_passage: dict[tuple[str, str], tuple[list[str], list[QAPair]]] = {}
    for r in previous:
        qs, ps = by_passage.setdefault(_scope(r), ([], []))
        qs.append(normalise(r.question))
        ps.append(r)

    def drop(p: QAPair, reason: str, detail: str) -> None:
        dropped.append(Drop(id=p.id, service=p.service, question=p.question, reason=reason, detail=detail))

    for p in new:
        if why := invalid_reason(p, cfg):
            drop(p, "invalid", why)
            continue
        if cfg.grounding == "overlap":
            share, missing = grounding(p.answer, p.provenance.snippet, [p.service, *names.get(p.service, [])])
            if share < cfg.min_grounding_overlap:
                drop(
                    p,
                    "ungrounded",
                    f"{share:.0%} of the answer's words are in its passage; not found: {missing[:8]}",
                )
                continue
        elif cfg.grounding == "judge":
            supported, reason = (judged or {}).get(p.id, (False, "the judge gave no verdict on this pair"))
            if not supported:
                drop(p, "ungrounded", f"judge: {reason}")
                continue
        if (hit := evals.match(p.question)) and cfg.on_contamination == "drop":
            drop(p, "contaminated", f"{hit[1]:.0%} of eval question {hit[0]!r} ({evals.text[hit[0]]!r})")
            continue
        if p.id in seen_ids:
            drop(p, "duplicate", "same service, question and answer as an earlier pair")
            continue
        q = normalise(p.question)
        earlier, pairs = by_passage.setdefault(_scope(p), ([], []))
        near = next(
            (
                (text, score)
                for text, score, k in process.extract(
                    q, earlier, scorer=fuzz.ratio, score_cutoff=cfg.near_duplicate_threshold, limit=None
                )
                if _same_fact(p, pairs[k])
            ),
            None,
        )
        if near is not None:
            drop(p, "near_duplicate", f"{near[1]:.0f}% like {near[0]!r}")
            continue
        seen_ids.add(p.id)
        earlier.append(q)
        pairs.append(p)
        kept.append(p)
    return FilterResult(kept=kept, dropped=dropped)


def _scope(p: QAPair) -> tuple[str, str]:
    """Where near duplicates are looked for: the pair's passage (rows of older datasets: its service)."""
    return p.service, p.provenance.passage or ""


def _same_fact(p: QAPair, q: QAPair) -> bool:
    """Whether two pairs may be one fact asked twice: not when each names the fact it was read from, the
    facts differ and so do the answers. Two facts asked alike ("the hive count field" and "the hive type
    field" of a form) are two facts."""
    a, b = p.provenance.fact, q.provenance.fact
    return not (a and b and a != b and normalise(p.answer) != normalise(q.answer))


def contaminated(rows: list[QAPair], evals: EvalIndex) -> list[dict[str, object]]:
    """Training pairs whose question resembles an eval question: what the blocking check reports."""
    out: list[dict[str, object]] = []
    for r in rows:
        if hit := evals.match(r.question):
            out.append({"pair": r.id, "question": r.question, "eval_question": hit[0], "overlap": hit[1]})
    return out
