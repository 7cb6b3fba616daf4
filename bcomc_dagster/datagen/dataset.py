"""The cumulative training dataset's files: JSONL of training pairs, written atomically.

Iteration i = iteration i-1's rows + the new pairs of iteration i that pass ``quality.filter_pairs``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from bcomc_dagster.datagen.schema import QAPair
from bcomc_dagster.errors import InputError, field_errors
from bcomc_dagster.files import atomic_write


def read_jsonl(path: Path) -> list[QAPair]:
    rows = []
    for lineno, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.strip():
            try:
                rows.append(QAPair.model_validate_json(line))
            except ValidationError as e:
                raise InputError(f"{path}:{lineno}: not a training pair: {field_errors(e, 'row')[0]}") from e
    return rows


def write_jsonl(path: Path, rows: list[QAPair]) -> None:
    atomic_write(Path(path), "".join(r.model_dump_json() + "\n" for r in rows))


def rows_by_service(rows: list[QAPair]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.service] = out.get(r.service, 0) + 1
    return dict(sorted(out.items()))
