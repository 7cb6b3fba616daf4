"""The project's home folder, and the one way files and folders are written so that no reader sees half
of one."""

from __future__ import annotations

import os
import shutil
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


@contextmanager
def atomic_dir(target: Path, *, replace: bool = False, done: str | None = None) -> Iterator[Path]:
    """A folder whose content becomes ``target`` on success, in one rename (written beside it under a name
    starting with a dot, and readable by all: a server run by another user reads it). With ``replace`` an
    existing ``target`` is removed first; without, a ``target`` that another process completed first (it
    holds the file ``done``) is kept and this one discarded. On failure nothing is left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        yield tmp
        tmp.chmod(0o755)  # mkdtemp's 0700
        if replace and target.exists():
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:
            if done is None or not (target / done).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
