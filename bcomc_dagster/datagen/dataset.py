"""The cumulative training dataset: iteration i = iteration i-1's rows + the new pairs of iteration i.

Rows are keyed by content id, so re-running an iteration (or a generator repeating itself) adds nothing
twice. Files are JSONL, written atomically.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from bcomc_dagster.datagen.schema import QAPair
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.judge import normalise
from bcomc_dagster.evals.suite import Suite


def read_jsonl(path: Path) -> list[QAPair]:
    rows = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(QAPair.model_validate_json(line))
            except ValidationError as e:
                raise InputError(f"{path}:{lineno}: not a training pair: {e.errors()[0]['msg']}") from e
    return rows


def write_jsonl(path: Path, rows: list[QAPair]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w") as f:
        for r in rows:
            f.write(r.model_dump_json() + "\n")
    os.replace(tmp, path)


def merge(previous: list[QAPair], new: list[QAPair]) -> tuple[list[QAPair], int, int]:
    """Returns (rows, added, duplicates): previous rows first, then new ones whose id is unseen."""
    seen = {r.id for r in previous}
    rows = list(previous)
    dupes = 0
    for r in new:
        if r.id in seen:
            dupes += 1
            continue
        seen.add(r.id)
        rows.append(r)
    return rows, len(rows) - len(previous), dupes


def rows_by_service(rows: list[QAPair]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.service] = out.get(r.service, 0) + 1
    return dict(sorted(out.items()))


def contaminated(rows: list[QAPair], suite: Suite) -> list[dict]:
    """Training pairs whose question is an eval question (after normalisation)."""
    evals = {normalise(q.question): q.id for q in suite.questions}
    return [
        {"pair": r.id, "question": r.question, "eval_question": evals[normalise(r.question)]}
        for r in rows
        if normalise(r.question) in evals
    ]


def dump_rows(rows: list[QAPair]) -> str:
    return json.dumps([r.model_dump() for r in rows], indent=1)
