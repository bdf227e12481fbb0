"""Where a run is, shown while it runs: in the Prefect UI and, when the CLI asks, in the terminal.

In the UI, the flow run's state message names the stage as it starts ("training: 1,204
images, 20 epochs"), and the `curate-progress` artifact rises with every epoch and shard, its
description saying where the stage is ("training: epoch 7/20, loss 4.1203"). In the terminal,
each listening sink gets every report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.runtime import flow_run
from prefect.states import Running

from tasks.progress import StageReport

logger = logging.getLogger(__name__)

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
# What a user reads while the stage runs.
STAGE_LABELS = {
    "discover": "discovering",
    "inspect": "inspecting",
    "train": "training",
    "export": "exporting",
    "embed": "embedding",
    "select": "selecting",
    "publish": "publishing",
}
PROGRESS_KEY = "curate-progress"
# The artifact is updated at most this often within a stage (an epoch can take 0.1 s); a
# stage's start and end always show.
MIN_SECONDS_BETWEEN_UPDATES = 1.0

ProgressSink = Callable[[StageReport], None]
_sinks: list[ProgressSink] = []


@contextmanager
def progress_sink(sink: ProgressSink) -> Iterator[None]:
    """Call `sink(report)` on every progress report while inside."""
    _sinks.append(sink)
    try:
        yield
    finally:
        _sinks.remove(sink)


def stage_text(report: StageReport) -> str:
    """'training: epoch 7/20, loss 4.1203', or 'inspecting: 3/12' when the report has no detail."""
    return f"{STAGE_LABELS[report.stage]}: {report.detail or f'{report.done}/{report.total}'}"


def show_state_message(message: str) -> None:
    """The flow run's state message: Running, with `message`.

    Each such state counts as one more entry into Running in the flow run's `Run Count`, so
    it is set once a stage, not once an epoch; the artifact carries the finer steps.
    """
    run_id = flow_run.get_id()
    if run_id is None:  # not inside a flow run
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(UUID(run_id), Running(message=message), force=True)


class RunProgress:
    """Overall progress of one run, in percent, from per-stage reports.

    Called with each StageReport (it is the run's progress listener).
    """

    def __init__(self) -> None:
        self._fraction = dict.fromkeys(STAGE_WEIGHTS, 0.0)
        self._stage: str | None = None
        self._shown_at = 0.0
        self._artifact = cast(
            UUID,
            create_progress_artifact(0.0, key=PROGRESS_KEY, description="curate: starting"),
        )  # synchronous here: the flow is sync

    @property
    def percent(self) -> float:
        """The share of the run done, by stage weight."""
        done = sum(STAGE_WEIGHTS[stage] * fraction for stage, fraction in self._fraction.items())
        return 100.0 * done / sum(STAGE_WEIGHTS.values())

    def start(self, stage: str, detail: str) -> None:
        """`stage` begins: say so in the state message and the artifact."""
        self(StageReport(stage, 0, 1, detail))

    def update(self, stage: str, done: int, total: int, detail: str = "") -> None:
        """Record `done` of `total` steps for `stage`."""
        self(StageReport(stage, done, total, detail))

    def __call__(self, report: StageReport) -> None:
        """Record the report, show it in the UI (throttled within a stage) and tell every sink."""
        self._fraction[report.stage] = report.done / report.total if report.total else 1.0
        new_stage = report.stage != self._stage
        now = time.monotonic()
        due = new_stage or report.done == report.total or now - self._shown_at >= MIN_SECONDS_BETWEEN_UPDATES
        if due:
            self._stage, self._shown_at = report.stage, now
            self._show(stage_text(report), new_stage)
        for sink in _sinks:
            sink(report)

    def _show(self, text: str, new_stage: bool) -> None:
        """The artifact (and at a new stage the state message) say `text`.

        The UI is where a run is watched, not what it does: a server that fails to answer
        costs a warning, never the run.
        """
        try:
            if new_stage:
                show_state_message(text)
            update_progress_artifact(self._artifact, self.percent, description=text)
        except Exception as error:  # any client or server failure
            logger.warning("could not show the run's progress in the Prefect UI: %s", type(error).__name__)

    def complete(self, message: str) -> None:
        """The run ended: stages it had no work for count as done, so the bar ends at 100%.

        A run with nothing new used to end at 8%, an incremental one at 53%: every nightly
        run after the first looked stuck.
        """
        skipped = [stage for stage, fraction in self._fraction.items() if fraction < 1.0]
        self._fraction = dict.fromkeys(STAGE_WEIGHTS, 1.0)
        self._show(f"done: {message}", new_stage=False)
        for stage in skipped:
            for sink in _sinks:
                sink(StageReport(stage, 1, 1, "nothing to do"))
