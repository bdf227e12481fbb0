"""Where samples are read and artifacts written: one small interface.

Every stage that touches the source or the output goes through `Storage`; nothing else
opens files by a key's name or talks to boto3 (tasks/s3.py implements S3). Keys are
'/'-separated and relative to the storage's root (a folder, or a bucket and prefix).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol


class StorageError(Exception):
    """A storage problem that retrying will not fix: a missing bucket, denied access,
    rejected credentials. The message names the location and the cause, never a secret."""


class MissingObjectError(FileNotFoundError):
    """The object is gone, or is no longer the version that was listed."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object in a store: its key, its size, and a version token that changes when
    its content does (the ETag on S3, mtime in nanoseconds on a local disk)."""

    key: str
    size: int
    version: str


class Storage(Protocol):
    uri: str

    def check_access(self) -> None:
        """Fail early, with a StorageError naming the location, if it cannot be used."""

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

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
        """The listed version of an object as a local file, for readers that need a path
        (video decoding seeks): the file itself on a local disk, a download into `scratch`
        (removed afterwards) from S3. Never the whole object in memory.

        Raises:
            MissingObjectError: the object is gone or its size is not the listed one.
        """

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write (replace) an object; returns its URI."""

    def write_new(self, key: str, data: bytes) -> bool:
        """Create an object only if none exists at `key`, atomically; False if one did."""

    def upload_file(self, key: str, path: Path) -> str: ...

    def download_file(self, key: str, path: Path) -> None: ...

    def copy_from(self, source: Storage, key: str, target_key: str) -> str:
        """Copy `key` of `source` to `target_key` here; returns the copy's URI."""


def safe_key(key: str) -> PurePosixPath:
    """The key as a relative path, refusing anything that would leave the root.

    Raises:
        ValueError: the key is absolute, empty, or contains '..'.
    """
    path = PurePosixPath(key)
    if not key or path.is_absolute() or ".." in path.parts or "\\" in key:
        raise ValueError(f"unsafe storage key {key!r}: keys must be relative and stay inside the root")
    return path


def contained_key(key: str) -> str:
    """A key that names the same object but is safe as a relative file path: segments that
    are empty, '.' or '..' (legal in S3 keys) and backslashes are percent-encoded, so
    `a/../b.jpg` becomes `a/%2E%2E/b.jpg` instead of escaping to `b.jpg`."""
    escaped = key.replace("%", "%25").replace("\\", "%5C")
    segments = [
        s if s not in ("", ".", "..") else ("%2F" if s == "" else s.replace(".", "%2E"))
        for s in escaped.split("/")
    ]
    return "/".join(segments)


class LocalStorage:
    """A folder on a local (or mounted) file system."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*safe_key(key).parts)

    def check_access(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"{self.uri} is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create folder {self.uri}: {error.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"folder {self.uri} is not writable")

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        start = self._path(prefix) if prefix else self.root
        # os.walk with sorted folders gives a deterministic order without a second pass.
        for folder, dirs, files in os.walk(start):
            dirs.sort()
            for name in sorted(files):
                path = Path(folder, name)
                if not path.is_file() or name.endswith(".partial"):
                    continue
                stat = path.stat()
                key = path.relative_to(self.root).as_posix()
                yield ObjectInfo(key=key, size=stat.st_size, version=str(stat.st_mtime_ns))

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise MissingObjectError(f"{self.uri}/{key} does not exist") from None

    def read_range(self, key: str, start: int, length: int) -> bytes:
        try:
            with self._path(key).open("rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError:
            raise MissingObjectError(f"{self.uri}/{key} does not exist") from None

    def read_object(self, info: ObjectInfo) -> bytes:
        data = self.read_bytes(info.key)
        if len(data) != info.size:
            raise MissingObjectError(
                f"{self.uri}/{info.key} changed after listing (listed {info.size} bytes, read {len(data)})"
            )
        return data

    @contextmanager
    def local_file(self, info: ObjectInfo, scratch: Path) -> Iterator[Path]:
        path = self._path(info.key)
        if not path.is_file() or path.stat().st_size != info.size:
            raise MissingObjectError(f"{self.uri}/{info.key} is gone or changed after listing")
        yield path

    def _partial(self, key: str) -> tuple[Path, Path]:
        # Written beside the target and renamed over it: readers never see half a file.
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target, target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")

    def write_bytes(self, key: str, data: bytes) -> str:
        target, partial = self._partial(key)
        partial.write_bytes(data)
        partial.replace(target)
        return str(target)

    def write_new(self, key: str, data: bytes) -> bool:
        target, partial = self._partial(key)
        partial.write_bytes(data)
        try:
            os.link(partial, target)  # atomic, and fails if the target exists
        except FileExistsError:
            return False
        finally:
            partial.unlink()
        return True

    def upload_file(self, key: str, path: Path) -> str:
        target, partial = self._partial(key)
        shutil.copyfile(path, partial)
        partial.replace(target)
        return str(target)

    def download_file(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.is_file():
            raise MissingObjectError(f"{self.uri}/{key} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)

    def copy_from(self, source: Storage, key: str, target_key: str) -> str:
        return self.write_bytes(target_key, source.read_bytes(key))


def read_file_or_key(storage: Storage, location: str) -> bytes:
    """A file the configuration names: an absolute local path, or a key inside `storage`.

    Raises:
        FileNotFoundError: there is no such file or object.
    """
    path = Path(location).expanduser()
    return path.read_bytes() if path.is_absolute() else storage.read_bytes(location)


def is_s3_uri(uri: str) -> bool:
    return uri.startswith("s3://")


def split_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b/' -> ('bucket', 'a/b')

    Raises:
        ValueError: no bucket is named.
    """
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError(f"{uri!r} names no bucket: write s3://bucket or s3://bucket/prefix")
    return bucket, prefix.strip("/")


def open_storage(uri: str, aws_credentials: str | None = None) -> Storage:
    """The storage a source or output URI names: a local folder or `s3://bucket/prefix`.

    `aws_credentials` names a prefect-aws AwsCredentials block; without one, boto3's
    default chain is used.

    Raises:
        ValueError: the URI has a scheme other than s3://.
    """
    if is_s3_uri(uri):
        from tasks.s3 import S3Storage  # boto3 is only imported when S3 is used

        return S3Storage.from_uri(uri, aws_credentials)
    if "://" in uri:
        raise ValueError(f"{uri!r}: a source or output is a local folder or s3://bucket/prefix")
    return LocalStorage(Path(uri).expanduser())
