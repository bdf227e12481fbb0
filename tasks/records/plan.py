"""The run's plan: which shards are new, and what the datapool already holds."""

from __future__ import annotations

import pyarrow.parquet as pq
from pydantic import BaseModel

from tasks.records.samples import STATUS_OK
from tasks.records.shards import Listing, Shard


class RunPlan(BaseModel, frozen=True):
    """What this run processes (as shards) and what it keeps from the datapool."""

    listing: Listing
    shards: list[Shard]
    new: int
    kept_manifest: str  # Parquet: the previous manifest's rows that stay as they are
    kept: int
    previously_selected: list[str]


def known_content_hashes(run_plan: RunPlan) -> dict[str, str]:
    """Content hash -> id of the clean samples the datapool keeps.

    A new file with the same content is a duplicate of one of them.
    """
    kept = pq.read_table(run_plan.kept_manifest, columns=["id", "status", "content_hash"]).to_pydict()
    return {
        h: i
        for i, status, h in zip(kept["id"], kept["status"], kept["content_hash"], strict=True)
        if status == STATUS_OK and h is not None
    }
