"""A run's listing of the source, and its shards: manifests of keys in the shard store."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel

from tasks.fingerprint import digest
from tasks.storage.atomic import written_atomically
from tasks.storage.interface import ObjectInfo
from tasks.storage.shard_store import ShardStore

MANIFESTS_FOLDER = "manifests"


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


def write_manifests(objects: list[ObjectInfo], shard_size: int, store: ShardStore) -> list[Shard]:
    """Cut `objects` into shards of at most `shard_size` and write one manifest each into `store`.

    The workers that inspect the shards read them there.
    """
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


def read_shard_manifest(shard: Shard, store: ShardStore) -> list[ObjectInfo]:
    """The objects a shard's manifest in `store` lists."""
    rows = json.loads(store.read_bytes(shard.manifest))
    return [ObjectInfo(key=key, size=size, version=version) for key, size, version in rows]


LISTING_SCHEMA = pa.schema([("key", pa.string()), ("size", pa.int64()), ("version", pa.string())])


def listing_table(objects: list[ObjectInfo]) -> pa.Table:
    """`objects` as a listing's rows (key, size, version)."""
    return pa.table(
        {
            "key": [o.key for o in objects],
            "size": [o.size for o in objects],
            "version": [o.version for o in objects],
        },
        schema=LISTING_SCHEMA,
    )


def write_listing(source: str, objects: list[ObjectInfo], directory: Path) -> Listing:
    """Write `objects` as the source's listing, a Parquet file in `directory` named by its content."""
    table = listing_table(objects)
    name = digest(source, *(f"{o.key}\0{o.size}\0{o.version}" for o in objects))
    path = directory / f"{name}.parquet"
    if not path.exists():
        with written_atomically(path) as partial:
            pq.write_table(table, partial)
    return Listing(source=source, path=str(path), count=len(objects))


def read_listing_table(listing: Listing) -> pa.Table:
    """A listing's rows (key, size, version), as Arrow: millions of keys stay out of Python."""
    return pq.read_table(listing.path).cast(LISTING_SCHEMA)


def listed_objects(rows: pa.Table) -> list[ObjectInfo]:
    """A listing's rows as objects."""
    columns = rows.to_pydict()
    return [
        ObjectInfo(key=k, size=s, version=v)
        for k, s, v in zip(columns["key"], columns["size"], columns["version"], strict=True)
    ]


def read_listing(listing: Listing) -> list[ObjectInfo]:
    """The objects a listing holds."""
    return listed_objects(read_listing_table(listing))
