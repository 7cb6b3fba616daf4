"""The project's home folder, and the one way files are written so that no reader sees half of one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

HOME_ENV = "BCOMC_HOME"
DEFAULT_HOME = ".bcomc"


def home() -> Path:
    """Where artifacts, the model cache and the Dagster instance live: ``$BCOMC_HOME``, else ``./.bcomc``."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser().resolve()


@contextmanager
def atomic_writer(path: Path) -> Iterator[IO[bytes]]:
    """A file object whose content replaces ``path`` on success, in one rename. It is written under a name
    starting with a dot beside ``path`` (``campaign_state.clean_temp`` removes what a killed writer left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_writer(path) as f:
        f.write(data.encode() if isinstance(data, str) else data)
    return path
