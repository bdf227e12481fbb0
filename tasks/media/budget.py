"""A budget of decoded pixels shared by the threads of one process."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

# About 1.5 GB of 8-bit RGB (a decoder's buffer and one copy): what a process's decoding
# threads may hold at once. A larger image is decoded alone.
DECODE_PIXELS = 256_000_000


class PixelBudget:
    """At most `capacity` pixels being decoded at once; an image larger than that waits to be alone."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._used = 0
        self._ready = threading.Condition()

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the budget for the block, waiting until they are free."""
        with self._ready:
            self._ready.wait_for(lambda: self._used == 0 or self._used + pixels <= self.capacity)
            self._used += pixels
        try:
            yield
        finally:
            with self._ready:
                self._used -= pixels
                self._ready.notify_all()
