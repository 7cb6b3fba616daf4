"""A job on one GPU card, in a spawned child process (the fine-tune on a GPU host): the child sees only its
leased card (``CUDA_VISIBLE_DEVICES``, numbered as nvidia-smi numbers them), so no library spreads it over
several, and every byte of GPU memory it took is freed when it exits."""

from __future__ import annotations

import multiprocessing
import os
import queue as queues
from collections.abc import Callable
from typing import Any

from bcomc_dagster import gpu
from bcomc_dagster.files import home

IN_CHILD = False  # set in the child: it runs the job itself


def _main(target: Callable[[Any, tuple[Any, ...]], None], q: Any, card: int, args: tuple[Any, ...]) -> None:
    global IN_CHILD
    IN_CHILD = True
    os.environ.update(CUDA_DEVICE_ORDER="PCI_BUS_ID", CUDA_VISIBLE_DEVICES=str(card))  # before torch looks
    try:
        target(q, args)
    except BaseException as e:  # noqa: BLE001  # reported to the parent, which raises it
        q.put(("error", type(e).__name__, str(e)))


def run_on_card(
    found: list[gpu.Card],
    job: str,
    target: Callable[[Any, tuple[Any, ...]], None],
    args: tuple[Any, ...],
    on_log: Callable[..., None] | None = None,
) -> str:
    """Run ``target(queue, args)`` (a module-level function) in a child on a card leased for ``job``; the
    child puts ``("log", ...)`` lines, passed to ``on_log``, and one ``("done", result)``. Returns the
    result; a failure in the child is raised here (ValueError stays a ValueError)."""
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: no CUDA state inherited
    q = ctx.Queue()
    allocator = gpu.Allocator(home() / "gpus", found)
    card = allocator.acquire(job)
    assert card is not None  # found is not empty
    proc = ctx.Process(target=_main, args=(target, q, card.index, args))
    try:
        proc.start()
    except BaseException:
        allocator.release(card, job)
        raise
    allocator.hand_over(card, job, os.getpid(), proc.pid or 0)
    try:
        while True:
            try:
                msg = q.get(timeout=5)
            except queues.Empty:
                if not proc.is_alive():
                    raise RuntimeError(
                        f"{job}: its process (card {card.index}) died with exit code {proc.exitcode} "
                        "before it reported a result"
                    ) from None
                continue
            if msg[0] == "log" and on_log:
                on_log(*msg[1:])
            elif msg[0] == "done":
                return str(msg[1])
            elif msg[0] == "error":
                raise (ValueError if msg[1] == "ValueError" else RuntimeError)(f"{job}: {msg[2]}")
    finally:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
        allocator.release(card, job, proc.pid or 0)
