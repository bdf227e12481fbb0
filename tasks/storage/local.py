"""Storage on a local folder: keys are relative paths, never outside it."""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tasks.storage.atomic import written_atomically
from tasks.storage.interface import (
    MissingObjectError,
    ObjectInfo,
    Storage,
    StorageError,
    UnreadableObjectError,
    safe_key,
)

logger = logging.getLogger(__name__)

# How a byte that is not UTF-8 appears in a listed key: 'caf\\xe9.jpg' for a Latin-1 name.
ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")


def listed_key(path: Path, root: Path) -> str:
    r"""The key of a file under `root`: its relative path.

    Bytes of the name that are not UTF-8 are written as \xNN, so that every key fits the
    UTF-8 tables it travels in (a name that is not UTF-8 used to stop the run at discover).
    """
    return os.fsencode(path.relative_to(root).as_posix()).decode("utf-8", "backslashreplace")


class LocalStorage:
    """A folder on a local (or mounted) file system."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uri = str(self.root)
        self.over_network = False

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*safe_key(key).parts)

    def _read_path(self, key: str) -> Path:
        """The file a key names, for reading.

        On POSIX a backslash is a plain character of a name, and a key listed from a name
        that is not UTF-8 leads back to that name.
        """
        path = self.root.joinpath(*safe_key(key, backslash=os.sep == "/").parts)
        if ESCAPED_BYTE.search(key.encode()) and not os.path.lexists(path):
            raw = ESCAPED_BYTE.sub(lambda match: bytes([int(match[1], 16)]), key.encode())
            path = self.root.joinpath(*safe_key(os.fsdecode(raw), backslash=True).parts)
        return path

    def _read(self, key: str, start: int = 0, length: int = -1) -> bytes:
        try:
            with self._read_path(key).open("rb") as handle:
                handle.seek(start)
                return handle.read(length)
        except FileNotFoundError:
            raise MissingObjectError(f"{self.uri}/{key} does not exist") from None
        except OSError as error:  # permission denied, a folder now, an I/O error
            raise UnreadableObjectError(f"{self.uri}/{key} cannot be read: {error.strerror}") from None

    def check_access(self) -> None:
        """Create the folder if need be; fail with a StorageError unless it is a writable folder."""
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"{self.uri} is not a folder")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create folder {self.uri}: {error.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StorageError(f"folder {self.uri} is not writable")

    def check_write_access(self) -> None:
        """check_access: a local folder is checked for writing already."""
        self.check_access()

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Every file under the folder `prefix` but partial writes, in sorted order; version: its mtime.

        Symbolic links are not followed, to files or to folders alike: a link can lead out of
        the folder (and its target into a copy under selected/), or round in a loop.
        """
        start = self._path(prefix) if prefix else self.root
        links = 0
        # os.walk with sorted folders gives a deterministic order without a second pass; it
        # does not descend into linked folders.
        for folder, dirs, files in os.walk(start):
            dirs.sort()
            links += sum(Path(folder, name).is_symlink() for name in dirs)
            for name in sorted(files):
                path = Path(folder, name)
                if path.is_symlink():
                    links += 1
                    continue
                if not path.is_file() or name.endswith(".partial"):
                    continue
                stat = path.stat()
                yield ObjectInfo(
                    key=listed_key(path, self.root), size=stat.st_size, version=str(stat.st_mtime_ns)
                )
        if links:
            logger.info("%s: left out %d symbolic links (links are not followed)", start, links)

    def read_bytes(self, key: str) -> bytes:
        """The file's content. Raises MissingObjectError when there is none."""
        return self._read(key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes of the file from byte `start`."""
        return self._read(key, start, length)

    def read_object(self, info: ObjectInfo) -> bytes:
        """The file's content; MissingObjectError if it is gone or its size is not the listed one."""
        data = self.read_bytes(info.key)
        if len(data) != info.size:
            raise MissingObjectError(
                f"{self.uri}/{info.key} changed after listing (listed {info.size} bytes, read {len(data)})"
            )
        return data

    @contextmanager
    def local_file(self, info: ObjectInfo, scratch: Path) -> Iterator[Path]:
        """The file itself; MissingObjectError if it is gone or its size is not the listed one."""
        path = self._read_path(info.key)
        if not path.is_file() or path.stat().st_size != info.size:
            raise MissingObjectError(f"{self.uri}/{info.key} is gone or changed after listing")
        if not os.access(path, os.R_OK):
            raise UnreadableObjectError(f"{self.uri}/{info.key} cannot be read: permission denied")
        yield path

    def write_bytes(self, key: str, data: bytes) -> str:
        """Write (replace) the file atomically; returns its path."""
        target = self._path(key)
        with written_atomically(target) as partial:
            partial.write_bytes(data)
        return str(target)

    def write_new(self, key: str, data: bytes) -> bool:
        """Create the file only if none exists at `key`, atomically; False if one did."""
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
        partial.write_bytes(data)
        try:
            os.link(partial, target)  # atomic, and fails if the target exists (unlike a rename)
        except FileExistsError:
            return False
        finally:
            partial.unlink()
        return True

    def delete(self, key: str) -> None:
        """Remove the file `key`; nothing happens if there is none."""
        self._path(key).unlink(missing_ok=True)

    def upload_file(self, key: str, path: Path) -> str:
        """Copy the local file `path` to `key`, atomically; returns the copy's path."""
        target = self._path(key)
        with written_atomically(target) as partial:
            shutil.copyfile(path, partial)
        return str(target)

    def download_file(self, key: str, path: Path) -> None:
        """Copy the file `key` to the local file `path`; MissingObjectError if there is none."""
        source = self._read_path(key)
        if not source.is_file():
            raise MissingObjectError(f"{self.uri}/{key} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, path)

    def copy_from(self, source: Storage, key: str, target_key: str) -> str:
        """Copy `key` of `source` to `target_key` here, through memory; returns the copy's path."""
        return self.write_bytes(target_key, source.read_bytes(key))
