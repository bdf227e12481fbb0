"""When a failed task is worth retrying."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

# Errors that say the input is wrong, not that the infrastructure hiccupped.
PERMANENT_OS_ERRORS = (
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def is_transient_failure(_task: Any, _task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry I/O faults (timeouts, resets, throttling).

    Never a bad configuration or a missing file, which would fail the same way again.
    """
    try:
        state.result()
    except PERMANENT_OS_ERRORS:
        return False
    except (OSError, TimeoutError, ConnectionError):
        return True
    except Exception:
        return False
    return False


class RetryPolicy(TypedDict):
    """The retry keyword arguments of a Prefect `@task`."""

    retries: int
    retry_delay_seconds: list[float]
    retry_condition_fn: Callable[[Any, Any, Any], bool]


# The I/O tasks' policy (`@task(..., **RETRY_TRANSIENT)`): twice more, after 1 s then 5 s,
# and only for a transient failure.
RETRY_TRANSIENT: RetryPolicy = {
    "retries": 2,
    "retry_delay_seconds": [1, 5],
    "retry_condition_fn": is_transient_failure,
}
