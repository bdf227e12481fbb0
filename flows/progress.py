"""Stage progress, shown in the Prefect UI and, when the CLI asks for it, in the terminal.

In the Prefect UI as a progress artifact; in the terminal as a bar.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

# How much of a run each stage takes, roughly, on a CPU: weights of the overall bar.
STAGE_WEIGHTS = {
    "discover": 1,
    "inspect": 25,
    "train": 45,
    "export": 2,
    "embed": 20,
    "select": 4,
    "publish": 3,
}
PROGRESS_KEY = "curate-progress"

ProgressSink = Callable[[str, int, int], None]
_sinks: list[ProgressSink] = []


@contextmanager
def progress_sink(sink: ProgressSink) -> Iterator[None]:
    """Call `sink(stage, done, total)` on every progress update while inside."""
    _sinks.append(sink)
    try:
        yield
    finally:
        _sinks.remove(sink)


class RunProgress:
    """Overall progress of one run, in percent, from per-stage counts."""

    def __init__(self) -> None:
        self._fraction = dict.fromkeys(STAGE_WEIGHTS, 0.0)
        self._artifact = cast(
            UUID,
            create_progress_artifact(
                0.0, key=PROGRESS_KEY, description="curate: share of the run done, by stage weight"
            ),
        )  # synchronous here: the flow is sync

    def complete(self) -> None:
        """The run ended: stages it had no work for count as done, so the bar ends at 100%.

        A run with nothing new used to end at 8%, an incremental one at 53%: every nightly
        run after the first looked stuck.
        """
        self._fraction = dict.fromkeys(STAGE_WEIGHTS, 1.0)
        update_progress_artifact(self._artifact, 100.0)

    def update(self, stage: str, done: int, total: int) -> None:
        """Record `done` of `total` for `stage`, update the progress artifact and tell every sink."""
        self._fraction[stage] = done / total if total else 1.0
        overall = sum(STAGE_WEIGHTS[s] * f for s, f in self._fraction.items())
        update_progress_artifact(self._artifact, 100.0 * overall / sum(STAGE_WEIGHTS.values()))
        for sink in _sinks:
            sink(stage, done, total)
