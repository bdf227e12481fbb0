"""winnow's own log lines in the flow run's logs, in the Prefect UI.

The rooms log with plain `logging.getLogger(__name__)` (they do not import Prefect), so
Prefect's handlers never see them: warnings such as "training is off" reached only the
worker's terminal. While a run lasts, the flow hands those loggers Prefect's API handler,
the way PREFECT_LOGGING_EXTRA_LOGGERS would, but for deployment runs and local calls
alike, and without depending on the environment Prefect was imported in.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging.handlers import APILogHandler

# The top-level packages whose loggers are winnow's.
WINNOW_LOGGERS = ("flows", "tasks", "models")


def in_a_run(record: logging.LogRecord) -> bool:
    """Whether the record can be tied to a flow run.

    A line logged in a thread the run's context did not reach would make the API handler
    warn; it still reaches the terminal.
    """
    return bool(getattr(record, "flow_run_id", None) or FlowRunContext.get() or TaskRunContext.get())


@contextmanager
def winnow_logs_to_prefect(level: int = logging.INFO) -> Iterator[None]:
    """Send winnow's log lines at `level` and above to the flow run's logs while inside.

    A logger given a level by the user keeps it; one that already has Prefect's API
    handler (PREFECT_LOGGING_EXTRA_LOGGERS) is left alone, so no line shows twice.
    """
    handler = APILogHandler()
    handler.addFilter(in_a_run)
    changed: list[tuple[logging.Logger, int]] = []
    for name in WINNOW_LOGGERS:
        logger = logging.getLogger(name)
        if any(isinstance(h, APILogHandler) for h in logger.handlers):
            continue
        logger.addHandler(handler)
        changed.append((logger, logger.level))
        if logger.level == logging.NOTSET:
            logger.setLevel(level)
    try:
        yield
    finally:
        for logger, previous in changed:
            logger.removeHandler(handler)
            logger.setLevel(previous)
