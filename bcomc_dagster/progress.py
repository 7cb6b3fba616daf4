"""Progress of the long stages (pairs generated, training steps and loss, questions answered), for
whoever watches in this process: ``bcomc`` draws progress bars from it. Without a watcher a report
costs nothing; the stages also log milestones, which is what the Dagster UI shows."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

Watcher = Callable[[str, int, int, str], None]  # (task, done, total, note)

_watchers: list[Watcher] = []
_lock = threading.Lock()


def report(task: str, done: int, total: int, note: str = "") -> None:
    with _lock:
        watchers = list(_watchers)
    for w in watchers:
        w(task, done, total, note)


@contextmanager
def watching(watcher: Watcher) -> Iterator[None]:
    with _lock:
        _watchers.append(watcher)
    try:
        yield
    finally:
        with _lock:
            _watchers.remove(watcher)


def rich_watcher(progress: Progress) -> Watcher:
    """Bars on a ``rich.progress.Progress``: one per task while it runs, removed when it completes."""
    tasks: dict[str, TaskID] = {}
    lock = threading.Lock()

    def watch(task: str, done: int, total: int, note: str) -> None:
        with lock:
            if task not in tasks:
                tasks[task] = progress.add_task(task, total=total)
            progress.update(tasks[task], completed=done, total=total, description=f"{task} {note}".strip())
            if done >= total:
                progress.remove_task(tasks.pop(task))

    return watch
