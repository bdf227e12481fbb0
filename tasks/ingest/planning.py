"""Plan: which listed samples are new or changed since the datapool's version, cut into shards."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.fingerprint import digest
from tasks.records.manifest import MANIFEST_SCHEMA
from tasks.records.plan import RunPlan
from tasks.records.segments import read_live, tombstones
from tasks.records.shards import Listing, listed_objects, read_listing_table, write_manifests
from tasks.storage.atomic import written_atomically
from tasks.storage.interface import ObjectInfo
from tasks.storage.shard_store import ShardStore

logger = logging.getLogger(__name__)


def plan_run(
    listed: pa.Table, previous: pa.Table, reprocess_all: bool
) -> tuple[list[ObjectInfo], pa.Table, set[str]]:
    """Split the listed objects (a listing's rows) by what the previous manifest knows.

    Decided per object key: new or changed keys are processed (a changed video samples
    all its frames again); unchanged keys keep their manifest rows (every frame of an
    unchanged video); keys no longer listed leave the pool. With `reprocess_all` every
    listed key is processed again, and the earlier selection of unchanged keys still stands.
    Joined in Arrow: only the objects to process become Python objects.

    `previous` has at least the columns id, key, version and selected. Returns (objects to
    process, manifest rows kept as they are, ids selected earlier whose object is unchanged).
    """
    known = previous.select(["key", "version"]).group_by(["key", "version"]).aggregate([])
    unchanged = listed.select(["key", "version"]).join(known, keys=["key", "version"], join_type="left semi")
    keeps = pc.is_in(previous["key"], unchanged["key"])
    previously_selected = set(
        previous.filter(pc.and_(keeps, pc.fill_null(previous["selected"], False)))["id"].to_pylist()
    )
    if reprocess_all:
        return listed_objects(listed), previous.slice(0, 0), previously_selected
    to_process = listed.filter(pc.invert(pc.is_in(listed["key"], unchanged["key"])))
    return listed_objects(to_process), previous.filter(keeps), previously_selected


def vanished_keys(listed: pa.Table, previous: pa.Table) -> pa.Array:
    """The previous manifest's keys that are no longer listed: deleted, or moved."""
    keys = pc.unique(previous["key"])
    return keys.filter(pc.invert(pc.is_in(keys, listed["key"])))


def plan_shards(
    listing: Listing,
    pool: list[str],
    pool_indexes: list[str | None],
    reprocess_all: bool,
    shard_size: int,
    shards: ShardStore,
    directory: Path,
) -> RunPlan:
    """Plan the run over the datapool's segments `pool` (local copies, oldest first, with their indexes).

    Writes the new or changed samples' shard manifests, and into `directory` the tombstones
    of the keys the pool drops (processed again, or gone) and the rows of the gone ones.
    """
    previous = read_live(pool, ["id", "key", "version", "selected"])
    listed = read_listing_table(listing)
    to_process, kept, previously_selected = plan_run(listed, previous, reprocess_all)
    planned = write_manifests(to_process, shard_size, shards)
    name = digest(listing.path, *pool, str(reprocess_all))
    dropped = pc.unique(previous["key"].filter(pc.invert(pc.is_in(previous["key"], kept["key"]))))
    dropped_path = directory / "dropped" / f"{name}.parquet"
    with written_atomically(dropped_path) as partial:  # two runs on one cache compute one name
        pq.write_table(tombstones(dropped), partial)
    vanished_path = None
    if not reprocess_all:
        vanished_path = directory / "vanished" / f"{name}.parquet"
        with written_atomically(vanished_path) as partial:
            gone = read_live(pool, MANIFEST_SCHEMA.names, keys=vanished_keys(listed, previous))
            pq.write_table(gone, partial)
    logger.info(
        "%d new or changed of %d listed; %d kept from the datapool",
        len(to_process),
        listing.count,
        kept.num_rows,
    )
    return RunPlan(
        listing=listing,
        shards=planned,
        new=len(to_process),
        pool=pool,
        pool_indexes=pool_indexes,
        dropped=str(dropped_path),
        kept=kept.num_rows,
        previously_selected=sorted(previously_selected),
        vanished_manifest=None if vanished_path is None else str(vanished_path),
    )
