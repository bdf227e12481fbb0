"""The run's plan: which shards are new, and what the datapool already holds."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from tasks.records.samples import STATUS_OK
from tasks.records.segments import live_batches
from tasks.records.shards import Listing, Shard


class RunPlan(BaseModel, frozen=True):
    """What this run processes (as shards) and what it keeps from the datapool."""

    listing: Listing
    shards: list[Shard]
    new: int
    # Local copies of the datapool's manifest segments, oldest first (tasks/records/segments.py).
    pool: list[str]
    # Local copies of the segments' indexes, aligned with `pool` (None: the segment has none).
    pool_indexes: list[str | None] = []
    # A segment of tombstones for the pool's keys this run drops: processed again, or gone.
    dropped: str
    kept: int
    previously_selected: list[str]
    # Parquet: the previous manifest's rows whose key is no longer listed (deleted, or moved:
    # their content may come back under a new key). None when the run starts over.
    vanished_manifest: str | None = None

    @property
    def kept_segments(self) -> list[str]:
        """The segments that fold into the rows kept as they are: the pool less the dropped keys."""
        return [*self.pool, self.dropped]


def known_content_hashes(run_plan: RunPlan, among: pa.ChunkedArray) -> dict[str, str]:
    """Content hash -> id of the clean samples the datapool keeps, of the hashes `among` (this run's).

    A new file with the same content is a duplicate of one of them. The pool is streamed a
    record batch at a time, so the dict holds this run's matches, never the pool's every hash.
    """
    wanted = pc.unique(among.drop_null())
    found: dict[str, str] = {}
    for batch in live_batches(run_plan.kept_segments, ["id", "status", "content_hash"]):
        match = pc.and_(
            pc.equal(batch.column("status"), STATUS_OK), pc.is_in(batch.column("content_hash"), wanted)
        )
        rows = batch.filter(pc.fill_null(match, False))
        found |= dict(
            zip(rows.column("content_hash").to_pylist(), rows.column("id").to_pylist(), strict=True)
        )
    return found


def vanished_content(run_plan: RunPlan) -> dict[str, tuple[str, str]]:
    """Content hash -> (id, key) of the datapool's clean samples whose key is no longer listed.

    A new file with the same content is that sample, moved or renamed.
    """
    if run_plan.vanished_manifest is None:
        return {}
    rows = pq.read_table(
        run_plan.vanished_manifest, columns=["id", "key", "status", "content_hash"]
    ).to_pydict()
    return {
        h: (i, k)
        for i, k, status, h in zip(rows["id"], rows["key"], rows["status"], rows["content_hash"], strict=True)
        if status == STATUS_OK and h is not None
    }
