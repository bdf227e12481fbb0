"""Decoding processes: how inspection gets past the GIL on one machine without Dask.

Pillow's decoders release the GIL, but the Python part of each image (hashing, metadata,
the row) holds it, so the threads of one process top out at a few cores' worth. The local
engine therefore hands images to a pool of worker processes, in batches (one call to a
process costs about 0.3 ms of the flow's CPU; inspection.FILES_PER_READ says how many).

The pool is loky's ProcessPoolExecutor: its workers are fresh interpreters (not forks of
the flow's process, whose threads may hold locks), it never re-runs the caller's `__main__`
(so a script that calls `curate()` needs no `if __name__ == "__main__":` guard), and the
workers exit after IDLE_SECONDS without work, so a notebook that ran a flow keeps no idle
processes; the next batch starts them again. One pool a size serves every run and thread
of the process (loky's own reusable executor is one a thread, which would start a pool for
each of inspection's threads). Dask workers are processes already: inspection there stays
on threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from contextvars import ContextVar

# Workers without work for this long exit; the next run starts them again (under a second).
IDLE_SECONDS = 120

# How often a worker checks that the process that started it is still there.
PARENT_CHECK_SECONDS = 1.0

# How many decoding processes the inspection in this context may use; 0: none, threads only.
_PROCESSES: ContextVar[int] = ContextVar("decoding_processes", default=0)

# The pools started in this process, by size.
_POOLS: dict[int, Executor] = {}
_POOLS_LOCK = threading.Lock()


@contextmanager
def decoding_in_processes(count: int) -> Iterator[None]:
    """Inspection within the block decodes images in `count` worker processes.

    Prefect's thread-pool task runner copies the context into its task threads, so the
    shard tasks of a run submitted within the block see it.
    """
    token = _PROCESSES.set(count)
    try:
        yield
    finally:
        _PROCESSES.reset(token)


def decoding_processes() -> int:
    """How many decoding processes inspection in this context may use; 0: threads only."""
    return _PROCESSES.get()


def decoding_executor(count: int) -> Executor:
    """The pool of `count` decoding processes, started on first use."""
    # Imported here: Dask workers (and the GPU benchmarks) inspect on threads and never need it.
    from loky import ProcessPoolExecutor

    with _POOLS_LOCK:
        if count not in _POOLS:
            _POOLS[count] = ProcessPoolExecutor(
                max_workers=count, timeout=IDLE_SECONDS, initializer=exit_with_parent, initargs=(os.getpid(),)
            )
        return _POOLS[count]


def replace_broken(pool: Executor) -> None:
    """Forget `pool`, one of whose workers died: the next `decoding_executor` call starts a new one."""
    with _POOLS_LOCK:
        for count, known in list(_POOLS.items()):
            if known is pool:
                del _POOLS[count]
    pool.shutdown(wait=False)


def exit_with_parent(parent: int) -> None:
    """Run in each decoding worker as it starts: end the worker once `parent` is gone.

    A flow's process killed outright (SIGKILL, the OOM killer) cannot stop its workers, and
    loky's would live on until their idle timeout. The parent is polled rather than asked
    to signal (PR_SET_PDEATHSIG fires when the parent's *thread* ends, and workers are
    started from whichever thread submits). Its pid comes from the parent itself: a worker
    still starting when the parent died has been adopted already, and its own parent pid
    would name the adopter.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_SECONDS)
        os._exit(0)

    threading.Thread(target=watch, name="winnow-parent-watch", daemon=True).start()
