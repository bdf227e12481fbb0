"""Plan: which listed samples are new or changed since the datapool's version, cut into shards."""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tasks.fingerprint import digest
from tasks.records.manifest import MANIFEST_SCHEMA, read_manifest_table
from tasks.records.plan import RunPlan
from tasks.records.shards import Listing, read_listing, write_manifests
from tasks.storage.atomic import written_atomically
from tasks.storage.interface import ObjectInfo
from tasks.storage.shard_store import ShardStore

logger = logging.getLogger(__name__)


def plan_run(
    listed: list[ObjectInfo], previous: pa.Table, reprocess_all: bool
) -> tuple[list[ObjectInfo], pa.Table, set[str]]:
    """Split the listed objects by what the previous manifest knows.

    Decided per object key: new or changed keys are processed (a changed video samples
    all its frames again); unchanged keys keep their manifest rows (every frame of an
    unchanged video); keys no longer listed leave the pool. With `reprocess_all` every
    listed key is processed again, and the earlier selection of unchanged keys still stands.

    Returns (objects to process, manifest rows kept as they are, ids selected earlier
    whose object is unchanged).
    """
    rows = previous.select(["id", "key", "version", "selected"]).to_pydict()
    known = dict(zip(rows["key"], rows["version"], strict=True))
    unchanged = {info.key for info in listed if known.get(info.key) == info.version}
    previously_selected = {
        i
        for i, key, chosen in zip(rows["id"], rows["key"], rows["selected"], strict=True)
        if chosen and key in unchanged
    }
    if reprocess_all:
        return list(listed), MANIFEST_SCHEMA.empty_table(), previously_selected
    keep = pa.array([key in unchanged for key in rows["key"]], pa.bool_())
    to_process = [info for info in listed if info.key not in unchanged]
    return to_process, previous.filter(keep).cast(MANIFEST_SCHEMA), previously_selected


def vanished_rows(listed: list[ObjectInfo], previous: pa.Table) -> pa.Table:
    """The previous manifest's rows whose key is no longer listed: deleted, or moved."""
    keys = {info.key for info in listed}
    gone = pa.array([key not in keys for key in previous["key"].to_pylist()], pa.bool_())
    return previous.filter(gone).cast(MANIFEST_SCHEMA)


def plan_shards(
    listing: Listing,
    manifest: str | None,
    reprocess_all: bool,
    shard_size: int,
    shards: ShardStore,
    directory: Path,
) -> RunPlan:
    """Plan the run: write the new or changed samples' shard manifests, and the kept rows into `directory`."""
    previous = read_manifest_table(manifest) if manifest else MANIFEST_SCHEMA.empty_table()
    listed = read_listing(listing)
    to_process, kept, previously_selected = plan_run(listed, previous, reprocess_all)
    planned = write_manifests(to_process, shard_size, shards)
    name = digest(listing.path, manifest or "", str(reprocess_all))
    kept_path = directory / "kept" / f"{name}.parquet"
    with written_atomically(kept_path) as partial:  # two runs on one cache compute one name
        pq.write_table(kept, partial)
    vanished_path = None
    if not reprocess_all:
        vanished_path = directory / "vanished" / f"{name}.parquet"
        with written_atomically(vanished_path) as partial:
            pq.write_table(vanished_rows(listed, previous), partial)
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
        kept_manifest=str(kept_path),
        kept=kept.num_rows,
        previously_selected=sorted(previously_selected),
        vanished_manifest=None if vanished_path is None else str(vanished_path),
    )
