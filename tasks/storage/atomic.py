"""Local files written whole or not at all, even by two runs sharing a cache folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def written_atomically(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; renamed over `path` once the block ends.

    The temporary name is unique, so two writers of one content-addressed file (two runs on
    one cache) never write into each other's file, and a reader never sees half of one.
    The temporary file is removed if the block fails.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{uuid.uuid4().hex}.partial")
    try:
        yield partial
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
