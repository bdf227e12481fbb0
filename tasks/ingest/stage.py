"""The ingest stage's tasks: discover the source, plan the run's shards."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.ingest.listing import discover_source
from tasks.ingest.planning import plan_shards
from tasks.records.plan import RunPlan
from tasks.records.shards import Listing
from tasks.storage.retry import RETRY_TRANSIENT
from tasks.storage.shard_store import ShardStore


# Listing is I/O: retried. Not cached: it is how changes are noticed.
@task(name="discover", **RETRY_TRANSIENT)
def discover(
    source: str,
    aws_credentials: str | None,
    relevant_filenames: str | None,
    excluded: tuple[str, ...],
    cache_dir: Path,
) -> Listing:
    """List the source's images and videos into a listing file under the cache folder."""
    return discover_source(source, aws_credentials, relevant_filenames, excluded, cache_dir / "listings")


@task(name="plan")
def plan(
    listing: Listing,
    pool: list[str],
    pool_indexes: list[str | None],
    reprocess_all: bool,
    shard_size: int,
    shards: ShardStore,
    cache_dir: Path,
) -> RunPlan:
    """Plan the run: cut the new or changed samples into shards; keep the datapool's unchanged rows."""
    return plan_shards(listing, pool, pool_indexes, reprocess_all, shard_size, shards, cache_dir)
