"""Discover: list the source and keep the images and videos; cut what a run processes into shards.

A shard's manifest (keys, sizes, versions) is a small JSON file; its fingerprint is the
digest of that content, so a shard whose files did not change keeps its fingerprint and
every cached result computed from it.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path, PurePosixPath

import pathspec
import pyarrow as pa
import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel

from tasks.fingerprint import digest
from tasks.retry import RETRY_TRANSIENT
from tasks.shard_store import ShardStore
from tasks.storage import ObjectInfo, Storage, open_storage, read_file_or_key
from tasks.video import VIDEO_EXTENSIONS

logger = logging.getLogger(__name__)

MANIFESTS_FOLDER = "manifests"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})


class Shard(BaseModel, frozen=True):
    """A slice of the source: where its manifest is and what it holds."""

    index: int
    fingerprint: str
    manifest: str  # its key in the run's shard store
    count: int


class Listing(BaseModel, frozen=True):
    """Every image and video the source holds now: a Parquet file of (key, size, version), by key."""

    source: str
    path: str
    count: int


SAMPLE_EXTENSIONS = IMAGE_EXTENSIONS | VIDEO_EXTENSIONS


def is_sample_key(key: str) -> bool:
    """An image or a video, by its extension in any letter case."""
    return PurePosixPath(key).suffix.lower() in SAMPLE_EXTENSIONS


def parse_relevant_filenames(text: str) -> pathspec.PathSpec:
    """gitignore-style patterns; a key is relevant when the last pattern it matches is not
    negated ('!'). Blank lines and '#' comments are ignored."""
    return pathspec.PathSpec.from_lines("gitwildmatch", text.splitlines())


def list_samples(storage: Storage, relevant: pathspec.PathSpec | None) -> list[ObjectInfo]:
    """Every image and video object in `storage`, narrowed by `relevant`, sorted by key."""
    found = [
        info
        for info in storage.list_objects()
        if is_sample_key(info.key) and (relevant is None or relevant.match_file(info.key))
    ]
    return sorted(found, key=lambda info: info.key)


def write_manifests(objects: list[ObjectInfo], shard_size: int, store: ShardStore) -> list[Shard]:
    """Cut `objects` into shards of at most `shard_size` and write one manifest each into
    `store`, where the workers that inspect the shards read them."""
    shards = []
    for index, start in enumerate(range(0, len(objects), shard_size)):
        rows = [[o.key, o.size, o.version] for o in objects[start : start + shard_size]]
        content = json.dumps(rows, separators=(",", ":"))
        fingerprint = digest(content)
        key = f"{MANIFESTS_FOLDER}/{fingerprint}.json"
        if not store.exists(key):
            store.write_bytes(key, content.encode())
        shards.append(Shard(index=index, fingerprint=fingerprint, manifest=key, count=len(rows)))
    return shards


def read_manifest(shard: Shard, store: ShardStore) -> list[ObjectInfo]:
    rows = json.loads(store.read_bytes(shard.manifest))
    return [ObjectInfo(key=key, size=size, version=version) for key, size, version in rows]


def load_relevant_filenames(storage: Storage, location: str | None) -> pathspec.PathSpec | None:
    """Read the relevant-filenames file: an absolute path, or a key inside the source.

    Raises:
        FileNotFoundError: the file does not exist (a typo must not silently widen the run).
    """
    if location is None:
        return None
    try:
        text = read_file_or_key(storage, location).decode()
    except FileNotFoundError as error:
        raise FileNotFoundError(f"relevant_filenames file {location!r} not found in {storage.uri}") from error
    return parse_relevant_filenames(text)


LISTING_SCHEMA = pa.schema([("key", pa.string()), ("size", pa.int64()), ("version", pa.string())])


def write_listing(source: str, objects: list[ObjectInfo], directory: Path) -> Listing:
    table = pa.table(
        {
            "key": [o.key for o in objects],
            "size": [o.size for o in objects],
            "version": [o.version for o in objects],
        },
        schema=LISTING_SCHEMA,
    )
    directory.mkdir(parents=True, exist_ok=True)
    name = digest(source, *(f"{o.key}\0{o.size}\0{o.version}" for o in objects))
    path = directory / f"{name}.parquet"
    if not path.exists():
        partial = path.with_suffix(f".{uuid.uuid4().hex}.partial")
        pq.write_table(table, partial)
        partial.replace(path)
    return Listing(source=source, path=str(path), count=len(objects))


def read_listing(listing: Listing) -> list[ObjectInfo]:
    rows = pq.read_table(listing.path).to_pydict()
    return [
        ObjectInfo(key=k, size=s, version=v)
        for k, s, v in zip(rows["key"], rows["size"], rows["version"], strict=True)
    ]


def discover_source(
    source: str, aws_credentials: str | None, relevant_filenames: str | None, directory: Path
) -> Listing:
    """List the source's images and videos into a listing file in `directory`.

    Raises:
        ValueError: the source holds no images or videos (after the relevant-filenames filter).
        StorageError: the source cannot be read (missing bucket, denied access, ...).
    """
    storage = open_storage(source, aws_credentials)
    relevant = load_relevant_filenames(storage, relevant_filenames)
    objects = list_samples(storage, relevant)
    if not objects:
        narrowed = f" matching {relevant_filenames!r}" if relevant_filenames else ""
        extensions = ", ".join(sorted(SAMPLE_EXTENSIONS))
        raise ValueError(f"source {source!r} holds no images or videos{narrowed} (looked for {extensions})")
    logger.info("discovered %d images and videos under %s", len(objects), source)
    return write_listing(source, objects, directory)


# Listing is I/O: retried. Not cached: it is how changes are noticed.
@task(
    name="discover",
    **RETRY_TRANSIENT,
)
def discover(
    source: str, aws_credentials: str | None, relevant_filenames: str | None, cache_dir: Path
) -> Listing:
    return discover_source(source, aws_credentials, relevant_filenames, cache_dir / "listings")
