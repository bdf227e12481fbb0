"""The inspect stage's tasks: inspect a shard, collect the run's samples table."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.config import ChecksConfig, VideoConfig
from tasks.fingerprint import code_version, digest, stage_cache_key
from tasks.media.inspection import collect_sample_rows, inspect_shard_into
from tasks.records.plan import RunPlan
from tasks.records.samples import INSPECT_FOLDER, SampleTable, ShardInspection
from tasks.records.shards import Shard
from tasks.storage.factory import open_storage
from tasks.storage.retry import RETRY_TRANSIENT
from tasks.storage.shard_store import FETCHED_FOLDER, ShardStore


@task(
    name="inspect-shard",
    cache_key_fn=stage_cache_key("inspect"),
    persist_result=True,
    **RETRY_TRANSIENT,
)
def inspect_shard(
    shard: Shard,
    source: str,
    aws_credentials: str | None,
    input_size: int,
    checks: ChecksConfig,
    video: VideoConfig,
    shards: ShardStore,
) -> ShardInspection:
    """Inspect one shard into the shard store, in a folder keyed on its content, settings and code."""
    settings = (checks.model_dump_json(), video.model_dump_json())
    key = digest(shard.fingerprint, str(input_size), *settings, code_version())
    storage = open_storage(source, aws_credentials)
    return inspect_shard_into(shard, storage, input_size, checks, video, shards, f"{INSPECT_FOLDER}/{key}")


@task(name="collect-samples")
def collect_samples(
    inspections: list[ShardInspection],
    checks: ChecksConfig,
    run_plan: RunPlan,
    cache_dir: Path,
) -> SampleTable:
    """The run's samples table: every shard's rows, moved and duplicates marked, under cache_dir/samples.

    Duplicates of the datapool's samples are looked up in the plan's segments, never passed
    in: at 10 M samples a dict of every hash was GBs, and a task's inputs are hashed.
    """
    return collect_sample_rows(
        inspections, checks, run_plan, cache_dir / "samples", cache_dir / FETCHED_FOLDER
    )
