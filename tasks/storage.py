"""Where samples are read and artifacts written: one small interface.

Every stage that touches the source or the output goes through `Storage`; nothing else
opens files by a key's name. Keys are '/'-separated paths relative to the root and may
never climb out of it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol


@dataclass(frozen=True)
class ObjectInfo:
    """One object in a store: its key, its size, and a version token that changes when
    its content does (the ETag on S3, mtime in nanoseconds on a local disk)."""

    key: str
    size: int
    version: str


class Storage(Protocol):
    uri: str

    def list_objects(self) -> Iterator[ObjectInfo]: ...

    def read_bytes(self, key: str) -> bytes: ...

    def write_bytes(self, key: str, data: bytes) -> str: ...

    def upload_file(self, key: str, path: Path) -> str: ...


def safe_key(key: str) -> PurePosixPath:
    """The key as a relative path, refusing anything that would leave the root.

    Raises:
        ValueError: the key is absolute, empty, or contains '..'.
    """
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key:
        raise ValueError(f"unsafe storage key {key!r}: keys must be relative and stay inside the root")
    return path


class LocalStorage:
    """A folder on a local (or mounted) file system."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*safe_key(key).parts)

    def list_objects(self) -> Iterator[ObjectInfo]:
        # os.walk with sorted folders gives a deterministic order without a second pass.
        for folder, dirs, files in os.walk(self.root):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                if not path.is_file():
                    continue
                stat = path.stat()
                key = path.relative_to(self.root).as_posix()
                yield ObjectInfo(key=key, size=stat.st_size, version=str(stat.st_mtime_ns))

    def read_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def _partial(self, key: str) -> tuple[Path, Path]:
        # Written beside the target and renamed over it: readers never see half a file.
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target, target.with_name(target.name + ".partial")

    def write_bytes(self, key: str, data: bytes) -> str:
        target, partial = self._partial(key)
        partial.write_bytes(data)
        partial.replace(target)
        return str(target)

    def upload_file(self, key: str, path: Path) -> str:
        target, partial = self._partial(key)
        shutil.copyfile(path, partial)
        partial.replace(target)
        return str(target)


def open_storage(uri: str) -> Storage:
    """The storage a source or output URI names.

    Raises:
        ValueError: the URI's scheme is not one this build reads.
    """
    if "://" in uri:
        raise ValueError(f"{uri!r}: only local folders are supported as source and output")
    return LocalStorage(Path(uri).expanduser())
