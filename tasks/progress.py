"""Progress from inside a stage's work (a training epoch), told to whoever listens.

The rooms know nothing of Prefect or terminals: the flow listens while a run lasts and
shows each report in the Prefect UI and the terminal. A context variable carries the
listener, so a task run in a thread of the flow's task runner (which copies the context)
reports to its own run, and code called outside a run reports to nobody.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class StageReport:
    """`done` of `total` steps of `stage`, and a line saying where it is ('epoch 3/20, loss 4.1')."""

    stage: str
    done: int
    total: int
    detail: str = ""


Listener = Callable[[StageReport], None]
_listener: ContextVar[Listener | None] = ContextVar("winnow_progress_listener", default=None)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Send every report made in this context (and the contexts copied from it) to `listener`."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def report(stage: str, done: int, total: int, detail: str = "") -> None:
    """Tell the listener, if there is one, that `done` of `total` steps of `stage` are done."""
    listener = _listener.get()
    if listener is not None:
        listener(StageReport(stage, done, total, detail))
