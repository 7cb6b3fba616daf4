"""Eval suites: documentation per service (the source of truth) plus questions with reference answers.

A suite is a folder::

    suite.json          {"name", "description", "domain"}
    docs/<service>.md   one documentation file per service: Markdown (.md), plain text (.txt) or HTML (.html)
    questions.jsonl     {"id", "service", "question", "reference", "aliases"} one per line

Built-in suites live in ``bcomc_dagster/suites``; any other folder can be named by path.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bcomc_dagster.datagen.passages import DOC_KINDS
from bcomc_dagster.errors import InputError, field_errors

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "suites"


SERVICE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # a doc's file name stem: letters, digits, . _ -
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls but tab and line ends, and DEL


def _no_controls(text: str, what: str) -> None:
    if (m := _CONTROL.search(text)) is not None:
        raise ValueError(f"{what} holds control character {m.group()!r} at offset {m.start()}")


class Question(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=200, pattern=r"^[^\s\x00-\x1f\x7f]+$")
    service: str = Field(
        pattern=SERVICE_NAME, description="The service: its doc's file name, docs/<service>.<ext>"
    )
    question: str = Field(min_length=1)
    reference: str = Field(min_length=1, description="The expected answer; the judge looks for it.")
    aliases: tuple[str, ...] = Field(default=(), description="Other accepted spellings of the reference.")

    @field_validator("question", "reference", "aliases")
    @classmethod
    def _not_blank(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for text in (value,) if isinstance(value, str) else value:
            if not text.strip():
                raise ValueError("must not be blank")
            if "\n" in text or "\r" in text:
                raise ValueError("must be one line")
            _no_controls(text, "the text")
        return value


class Suite(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    domain: str = ""
    path: Path
    docs: dict[str, str]  # service -> the doc's text as written
    doc_files: dict[str, str] = {}  # service -> its file, relative to the suite (docs/<service>.<ext>, or
    # ../<suite>/docs/<service>.<ext> with docs_from)
    questions: tuple[Question, ...]

    @property
    def services(self) -> list[str]:
        return sorted(self.docs)

    def doc_file(self, service: str) -> str:
        return self.doc_files.get(service, f"docs/{service}.md")

    def held_out(self, fraction: float, seed: int = 0) -> frozenset[str]:
        """Ids of the questions kept from the analyzer: ``fraction`` of each service's questions (at least
        one where the fraction is above 0 and the service has two or more), chosen by a seeded hash."""
        if fraction <= 0:
            return frozenset()
        out: set[str] = set()
        for qs in self.by_service.values():
            k = min(len(qs) - 1, max(1, round(fraction * len(qs))))
            ranked = sorted(qs, key=lambda q: hashlib.sha256(f"{seed}:{q.id}".encode()).hexdigest())
            out.update(q.id for q in ranked[:k])
        return frozenset(out)

    @cached_property
    def by_service(self) -> dict[str, list[Question]]:
        out: dict[str, list[Question]] = {s: [] for s in self.services}
        for q in self.questions:
            out[q.service].append(q)
        return out


def builtin_suites() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "questions.jsonl").is_file())


def resolve_suite_path(name_or_path: str) -> Path:
    """A built-in suite name or a folder path; raises InputError naming both options otherwise."""
    builtin = BUILTIN_DIR / name_or_path
    if (builtin / "questions.jsonl").is_file():
        return builtin
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path.resolve()
    raise InputError(
        f"suite {name_or_path!r} is neither a built-in suite ({', '.join(builtin_suites())}) "
        "nor a folder with docs/ and questions.jsonl"
    )


class SuiteMeta(BaseModel):
    """``suite.json``."""

    model_config = ConfigDict(extra="allow", strict=True)

    name: str | None = None
    description: str = ""
    domain: str = ""
    docs_from: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9-]*$",
        description="A built-in suite whose docs this one asks about (its own docs/ then absent): the "
        "same facts, other questions",
    )


def read_text(path: Path, root: Path) -> str:
    """A suite file's text: a regular file inside the suite (a symlink may point only within it), UTF-8."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise InputError(f"{path}: points outside the suite ({resolved}); suite files must be inside {root}")
    if not resolved.is_file():
        raise InputError(f"{path}: not a regular file")
    try:
        text = resolved.read_bytes().decode("utf-8-sig")  # a byte-order mark is not part of the text
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    if (m := _CONTROL.search(text)) is not None:
        line = text.count("\n", 0, m.start()) + 1
        raise InputError(f"{path}:{line}: control character {m.group()!r} (a binary file?); expected text")
    return text


def _check_html(path: Path, text: str) -> None:
    """An HTML doc the passage splitter can read: one nested too deeply for the HTML parser is refused."""
    from bcomc_dagster.datagen.passages import to_markdown

    try:
        to_markdown(text, "html")
    except RecursionError:
        raise InputError(f"{path}: HTML nested too deeply to read; flatten the page's markup") from None


def _read_docs(docs_dir: Path, root: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Each service's doc text and file; one file per service, in a format the passage splitter reads."""
    docs: dict[str, str] = {}
    files: dict[str, str] = {}
    kinds = ", ".join(DOC_KINDS)
    for p in sorted(x for x in docs_dir.iterdir() if not x.name.startswith(".")):
        if p.suffix.lower() not in DOC_KINDS:
            raise InputError(f"{p}: not a documentation format this project reads; expected one of {kinds}")
        if not re.match(SERVICE_NAME, p.stem):
            raise InputError(
                f"{p}: a service's doc is named <service>.<ext>, the service of letters, digits, '.', '_' "
                f"and '-' (at most 128, starting with a letter or digit); got {p.stem!r}"
            )
        if p.stem in files:
            raise InputError(
                f"{p}: service {p.stem!r} already has {root / files[p.stem]}; keep one doc per service"
            )
        docs[p.stem], files[p.stem] = read_text(p, root), f"docs/{p.name}"
        if p.suffix.lower() == ".html":
            _check_html(p, docs[p.stem])
    empty = [files[s] for s, text in docs.items() if not text.strip()]
    if not docs or empty:
        raise InputError(
            f"{docs_dir}: expected one non-empty doc per service ({kinds}); empty or none: {empty or 'none'}"
        )
    return docs, files


def load_suite(name_or_path: str) -> Suite:
    """Load and validate a suite; every problem names the file (and line) it is in."""
    root = resolve_suite_path(name_or_path)
    meta = SuiteMeta()
    meta_file = root / "suite.json"
    if meta_file.exists():
        try:
            meta = SuiteMeta.model_validate(json.loads(read_text(meta_file, root)))
        except json.JSONDecodeError as e:
            raise InputError(f"{meta_file}: not valid JSON ({e})") from e
        except ValidationError as e:
            fields = "; ".join(field_errors(e, "suite.json"))
            raise InputError(
                f"{meta_file}: expected an object with string name, description, domain ({fields})"
            ) from None
    docs_root = root
    if meta.docs_from is not None:
        docs_root = BUILTIN_DIR / meta.docs_from
        if not (docs_root / "docs").is_dir():
            raise InputError(
                f"{meta_file}: docs_from {meta.docs_from!r}: expected a built-in suite's name "
                f"({', '.join(builtin_suites())})"
            )
        if (root / "docs").exists():
            raise InputError(f"{meta_file}: docs_from is set, and {root / 'docs'} exists too; keep one")
    docs_dir = docs_root / "docs"
    if not docs_dir.is_dir():
        raise InputError(f"{docs_dir}: missing; a suite needs one documentation file per service")
    docs, doc_files = _read_docs(docs_dir, docs_root)
    if docs_root != root:
        doc_files = {s: os.path.relpath(docs_root / f, root) for s, f in doc_files.items()}

    questions_file = root / "questions.jsonl"
    if not questions_file.is_file():
        raise InputError(f"{questions_file}: missing; expected one JSON question per line")
    questions: list[Question] = []
    for lineno, line in enumerate(read_text(questions_file, root).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{questions_file}:{lineno}"
        try:
            q = Question.model_validate_json(line)
        except ValidationError as e:
            fields = "; ".join(field_errors(e, "line"))
            raise InputError(f"{where}: {fields}") from e
        if q.service not in docs:
            raise InputError(
                f"{where}: service {q.service!r} has no documentation file "
                f"docs/{q.service}.<{'|'.join(x[1:] for x in DOC_KINDS)}>"
            )
        questions.append(q)
    if not questions:
        raise InputError(f"{questions_file}: no questions")
    dupes = sorted(i for i, n in Counter(q.id for q in questions).items() if n > 1)
    if dupes:
        raise InputError(f"{questions_file}: duplicate question ids {dupes}")
    return Suite(
        name=meta.name or root.name,
        description=meta.description,
        domain=meta.domain,
        path=root,
        docs=docs,
        doc_files=doc_files,
        questions=tuple(questions),
    )
