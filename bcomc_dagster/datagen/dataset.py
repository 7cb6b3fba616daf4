"""The cumulative training dataset's files: JSONL of training pairs, written atomically.

Iteration i = iteration i-1's rows + the new pairs of iteration i that pass ``quality.filter_pairs``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from bcomc_dagster.datagen.schema import QAPair
from bcomc_dagster.errors import InputError


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


def rows_by_service(rows: list[QAPair]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r.service] = out.get(r.service, 0) + 1
    return dict(sorted(out.items()))
