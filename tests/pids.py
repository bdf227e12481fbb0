"""Whether a process still runs, for tests that kill one and check what it leaves behind."""

from pathlib import Path


def alive(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie may never be reaped here)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
