"""Where the per-shard stages keep what they make.

That is each shard's manifest, its samples table and uint8 images (inspect), its embeddings
(embed), and the model embed runs.

Two places, one interface:
- the run's cache folder: one machine, or a cluster whose machines all mount it;
- `<output>/shards` (S3, or a folder every machine mounts): a cluster whose workers share
  no disk. A worker writes a result into a scratch folder of its own and uploads it; a
  reader fetches only what it needs. The flow's process fetches manifests, samples tables
  and embeddings, the images training reads, and, by ranged reads, the report's
  thumbnails; never a shard's whole image cache for anything else.

Keys are content-addressed (a shard's key digests its files and settings, a model's its
sha256), so a stored result never changes and a fetched copy stays valid.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel

from tasks.fingerprint import CACHE_ID_FILE, cache_instance, digest
from tasks.storage.factory import open_storage
from tasks.storage.interface import MissingObjectError, Storage, download_once
from tasks.storage.uri import is_s3_uri

SHARDS_FOLDER = "shards"

# Under the flow's cache folder: the copies it fetched from a remote store.
FETCHED_FOLDER = "fetched"

# Where a worker keeps fetched models between tasks (a model is fetched once a worker).
WORKER_SCRATCH = Path(tempfile.gettempdir()) / "winnow-worker"


class ShardStore(BaseModel, frozen=True):
    """A local folder or s3://bucket/prefix holding shard results under their keys."""

    root: str
    aws_credentials: str | None = None

    @property
    def is_local(self) -> bool:
        """Whether keys are files under a folder this process can open in place."""
        return not is_s3_uri(self.root)

    def _storage(self) -> Storage:
        return open_storage(self.root, self.aws_credentials)

    def _path(self, key: str) -> Path:
        return Path(self.root, key)

    def instance(self) -> str:
        """The store's random id, made when it is first used.

        Prefect's cached results of the shard tasks are tied to it, so deleting the store
        invalidates all of them.
        """
        if self.is_local:
            return cache_instance(Path(self.root))
        storage = self._storage()
        try:
            return storage.read_bytes(CACHE_ID_FILE).decode().strip()
        except MissingObjectError:
            storage.write_new(CACHE_ID_FILE, uuid.uuid4().hex.encode())  # the first writer wins
            return storage.read_bytes(CACHE_ID_FILE).decode().strip()

    def exists(self, key: str) -> bool:
        """Whether the store holds an object at `key`."""
        if self.is_local:
            return self._path(key).is_file()
        folder, _, _ = key.rpartition("/")
        return any(info.key == key for info in self._storage().list_objects(folder))

    def read_bytes(self, key: str) -> bytes:
        """The content of the object at `key`."""
        return self._storage().read_bytes(key)

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """`length` bytes of the object at `key` from byte `start`."""
        return self._storage().read_range(key, start, length)

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write (replace) the object at `key`."""
        self._storage().write_bytes(key, data)

    def put_file(self, key: str, path: Path) -> None:
        """Write (replace) the object at `key` with the local file `path`."""
        self._storage().upload_file(key, path)

    @contextmanager
    def writing(self, folder: str, last: str) -> Iterator[Path]:
        """A local folder to write the result `folder` into.

        When the block ends, its files are in the store with `last` written last, so that
        `last` existing means the result is complete. Where another writer completed the same
        result first, that one is kept (both hold the same content).
        """
        if self.is_local:
            target = self._path(folder)
            partial = target.with_name(f"{target.name}.{uuid.uuid4().hex}.partial")
            partial.mkdir(parents=True)
            try:
                yield partial
                if target.exists():
                    shutil.rmtree(partial)
                else:
                    partial.replace(target)
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
            return
        with tempfile.TemporaryDirectory(prefix="winnow-shard-") as scratch:
            yield Path(scratch)
            names = sorted(p.name for p in Path(scratch).iterdir() if p.is_file() and p.name != last)
            for name in [*names, last]:
                self.put_file(f"{folder}/{name}", Path(scratch, name))

    def fetch(self, key: str, scratch: Path) -> Path:
        """A local path to `key`: the file itself in a local store, otherwise a copy in `scratch`.

        The copy is downloaded into `scratch` once and kept there (a key's content never changes).
        """
        if self.is_local:
            path = self._path(key)
            if not path.is_file():
                raise MissingObjectError(f"{path} does not exist: was the shard store deleted mid-run?")
            return path
        return download_once(self._storage(), key, scratch / digest(self.root)[:16] / key)
