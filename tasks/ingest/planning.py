"""Plan: which listed samples are new or changed since the datapool's version, cut into shards."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
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
) -> tuple[list[ObjectInfo], pa.ChunkedArray, set[str]]:
    """Split the listed objects (a listing's rows) by what the previous manifest knows.

    Decided per object key: new or changed keys are processed (a changed video samples
    all its frames again); unchanged keys keep their manifest rows (every frame of an
    unchanged video); keys no longer listed leave the pool. With `reprocess_all` every
    listed key is processed again, and the earlier selection of unchanged keys still stands.
    Joined in Arrow: only the objects to process become Python objects, and no copy of the
    pool's rows is made (a mask says which stay).

    `previous` has at least the columns id, key, version and selected. Returns (objects to
    process, a mask of the previous rows kept as they are, ids selected earlier whose object
    is unchanged).
    """
    pairs = ["key", "version"]
    unchanged = listed.select(pairs).join(previous.select(pairs), keys=pairs, join_type="left semi")["key"]
    keeps = pc.is_in(previous["key"], unchanged)
    previously_selected = set(
        previous.filter(pc.and_(keeps, pc.fill_null(previous["selected"], False)))["id"].to_pylist()
    )
    if reprocess_all:
        return (
            listed_objects(listed),
            pa.chunked_array([np.zeros(previous.num_rows, bool)]),
            previously_selected,
        )
    to_process = listed.filter(pc.invert(pc.is_in(listed["key"], unchanged)))
    return listed_objects(to_process), keeps, previously_selected


def vanished_keys(listed: pa.Table, dropped: pa.Array) -> pa.Array:
    """Of the keys the pool drops, those no longer listed: deleted, or moved (the others changed)."""
    changed = listed["key"].filter(pc.is_in(listed["key"], dropped))
    return dropped.filter(pc.invert(pc.is_in(dropped, changed)))


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
    to_process, keeps, previously_selected = plan_run(listed, previous, reprocess_all)
    kept = int(pc.sum(keeps).as_py() or 0)
    planned = write_manifests(to_process, shard_size, shards)
    name = digest(listing.path, *pool, str(reprocess_all))
    dropped = pc.unique(previous["key"].filter(pc.invert(keeps)))
    dropped_path = directory / "dropped" / f"{name}.parquet"
    with written_atomically(dropped_path) as partial:  # two runs on one cache compute one name
        pq.write_table(tombstones(dropped), partial)
    vanished_path = None
    if not reprocess_all:
        vanished_path = directory / "vanished" / f"{name}.parquet"
        with written_atomically(vanished_path) as partial:
            gone = read_live(pool, MANIFEST_SCHEMA.names, keys=vanished_keys(listed, dropped))
            pq.write_table(gone, partial)
    logger.info(
        "%d new or changed of %d listed; %d kept from the datapool",
        len(to_process),
        listing.count,
        kept,
    )
    return RunPlan(
        listing=listing,
        shards=planned,
        new=len(to_process),
        pool=pool,
        pool_indexes=pool_indexes,
        dropped=str(dropped_path),
        kept=kept,
        previously_selected=sorted(previously_selected),
        vanished_manifest=None if vanished_path is None else str(vanished_path),
    )
