"""Where samples are read and artifacts written: one small interface.

Every stage that touches the source or the output goes through `Storage`; nothing else
opens files by a key's name or talks to boto3 (tasks/s3.py implements S3). Keys are
'/'-separated and relative to the storage's root (a folder, or a bucket and prefix).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from tasks.storage.atomic import written_atomically


class StorageError(Exception):
    """A storage problem that retrying will not fix: a missing bucket, denied access, rejected credentials.

    The message names the location and the cause, never a secret.
    """


class MissingObjectError(FileNotFoundError):
    """The object is gone, or is no longer the version that was listed."""


class UnreadableObjectError(StorageError):
    """One listed object cannot be read, while others can.

    Its permissions deny it, it is in an archive storage class, it is not a file any more,
    or the store kept failing on it after every retry. The run records it and goes on.
    """


@dataclass(frozen=True)
class ObjectInfo:
    """One object in a store: its key, its size, and a version token.

    The version token changes when its content does (the ETag on S3, mtime in nanoseconds on
    a local disk).
    """

    key: str
    size: int
    version: str


class Storage(Protocol):
    """A root of '/'-separated keys (a folder, or a bucket and prefix) to read and write objects."""

    uri: str
    # Whether a read waits on a network's latency (S3), so that more reads than cores in
    # flight keep the store busy; a local disk's reads are served in microseconds.
    over_network: bool

    def check_access(self) -> None:
        """Fail early, with a StorageError naming the location, if it cannot be used."""

    def check_write_access(self) -> None:
        """Fail early, with a StorageError naming the location, if objects cannot be written there."""

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every object under the folder `prefix` (the whole root by default)."""

    def read_bytes(self, key: str) -> bytes:
        """The object's content. Raises MissingObjectError when there is none."""

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes of the object from byte `start` (a ranged GET on S3)."""

    def read_object(self, info: ObjectInfo) -> bytes:
        """The content of exactly the listed version of an object.

        Raises:
            MissingObjectError: the object was deleted or changed since it was listed.
        """

    def local_file(self, info: ObjectInfo, scratch: Path) -> AbstractContextManager[Path]:
        """The listed version of an object as a local file, for readers that need a path.

        Video decoding seeks. It is the file itself on a local disk, a download into `scratch`
        (removed afterwards) from S3. Never the whole object in memory.

        Raises:
            MissingObjectError: the object is gone or its size is not the listed one.
        """

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write (replace) an object; returns its URI."""

    def write_new(self, key: str, data: bytes) -> bool:
        """Create an object only if none exists at `key`, atomically; False if one did."""

    def delete(self, key: str) -> None:
        """Remove the object `key`; nothing happens if there is none."""

    def upload_file(self, key: str, path: Path) -> str:
        """Write (replace) the object `key` with the local file `path`; returns its URI."""

    def download_file(self, key: str, path: Path) -> None:
        """Copy the object `key` into the local file `path`."""

    def copy_from(self, source: Storage, key: str, target_key: str) -> str:
        """Copy `key` of `source` to `target_key` here; returns the copy's URI."""


def download_once(storage: Storage, key: str, path: Path) -> Path:
    """`key` as the local file `path`, downloaded unless it is there already.

    The download goes to a file of its own and is renamed into place, so `path` is never half
    written, even with two downloads racing.
    """
    if not path.exists():
        with written_atomically(path) as partial:
            storage.download_file(key, partial)
    return path


def safe_key(key: str, backslash: bool = False) -> PurePosixPath:
    """The key as a relative path, refusing anything that would leave the root.

    A backslash is refused too (a separator on Windows) unless `backslash` allows it: a name
    listed from a POSIX folder may hold one as a plain character.

    Raises:
        ValueError: the key is absolute, empty, or contains '..' (or a backslash).
    """
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or ("\\" in key and not backslash):
        raise ValueError(f"unsafe storage key {key!r}: keys must be relative and stay inside the root")
    return path


def contained_key(key: str) -> str:
    """A key that names the same object but is safe as a relative file path.

    Segments that are empty, '.' or '..' (legal in S3 keys) and backslashes are
    percent-encoded, so `a/../b.jpg` becomes `a/%2E%2E/b.jpg` instead of escaping to `b.jpg`.
    """
    escaped = key.replace("%", "%25").replace("\\", "%5C")
    segments = [
        s if s not in ("", ".", "..") else ("%2F" if s == "" else s.replace(".", "%2E"))
        for s in escaped.split("/")
    ]
    return "/".join(segments)


def read_file_or_key(storage: Storage, location: str) -> bytes:
    """A file the configuration names: an absolute local path, or a key inside `storage`.

    Raises:
        FileNotFoundError: there is no such file or object.
    """
    path = Path(location).expanduser()
    return path.read_bytes() if path.is_absolute() else storage.read_bytes(location)
