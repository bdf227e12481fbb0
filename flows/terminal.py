"""The CLI's view of a run in the terminal: a bar a stage, or a plain line a stage when piped.

Every stage is listed from the start and its bar moves with each report (an epoch, a
shard), with the time the stage has taken so far. Log lines (Prefect's and winnow's) are
printed by rich's logging handler on the bars' own console, so they appear above the bars
instead of breaking them. Piped into a file or another program, bars would only be redrawn
escape codes: each stage prints one plain line when it ends instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.logging.handlers import PrefectConsoleHandler
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from flows.progress import STAGE_LABELS, progress_sink
from tasks.progress import StageReport


class StageBars:
    """A rich bar a stage, listed from the start, started by its first report."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.rows: dict[str, TaskID] = {
            stage: progress.add_task(label, total=None, start=False, detail="waiting")
            for stage, label in STAGE_LABELS.items()
        }

    def __call__(self, report: StageReport) -> None:
        """Move the stage's bar; its clock starts with its first report and stops at its end."""
        row = self.rows[report.stage]
        if not self.progress.tasks[row].started:
            self.progress.start_task(row)
        self.progress.update(row, completed=report.done, total=report.total, detail=report.detail)
        if report.total and report.done >= report.total:
            self.progress.stop_task(row)


class StageLines:
    """One plain line a stage when it ends: 'training: done, loss 4.1203 (12.3 s)'."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started: dict[str, float] = {}
        self.ended: set[str] = set()

    def __call__(self, report: StageReport) -> None:
        """Print the stage's line once, when its last step is reported."""
        started = self.started.setdefault(report.stage, time.monotonic())
        if report.stage in self.ended or (report.total and report.done < report.total):
            return
        self.ended.add(report.stage)
        seconds = time.monotonic() - started
        self.console.print(
            f"{STAGE_LABELS[report.stage]}: {report.detail} ({seconds:.1f} s)", highlight=False
        )


@contextmanager
def logs_on(console: Console) -> Iterator[None]:
    """Print through rich's logging handler on `console` instead of Prefect's own console handlers.

    Each handler keeps its level and format; rich only decides where the line goes.
    """
    replaced: list[tuple[logging.Logger, PrefectConsoleHandler, RichHandler]] = []
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.root.manager.loggerDict))]
    for logger in loggers:
        for handler in [h for h in logger.handlers if isinstance(h, PrefectConsoleHandler)]:
            rich_handler = RichHandler(
                console=console, show_time=False, show_level=False, show_path=False, markup=False
            )
            rich_handler.setLevel(handler.level)
            rich_handler.setFormatter(handler.formatter)
            logger.removeHandler(handler)
            logger.addHandler(rich_handler)
            replaced.append((logger, handler, rich_handler))
    try:
        yield
    finally:
        for logger, handler, rich_handler in replaced:
            logger.removeHandler(rich_handler)
            logger.addHandler(handler)


@contextmanager
def stage_display(console: Console | None = None) -> Iterator[None]:
    """Show the run's stages on `console` (stdout) while inside: bars on a terminal, lines otherwise."""
    console = console or Console()
    if not console.is_terminal:
        with progress_sink(StageLines(console)):
            yield
        return
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with (
        Progress(*columns, console=console) as progress,
        logs_on(progress.console),
        progress_sink(StageBars(progress)),
    ):
        yield
