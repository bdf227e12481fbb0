"""Whether a process still runs, for tests that kill one and check what it leaves behind."""

import time
from pathlib import Path


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may never be reaped here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def all_end(pids: list[int], seconds: float) -> bool:
    """Whether every one of `pids` has ended (or is a zombie) within `seconds`."""
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(alive(pid) for pid in pids)
