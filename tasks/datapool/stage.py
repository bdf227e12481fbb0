"""The datapool's tasks: open it before a run, build its next manifest, commit it last, then tidy it."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.config import StateConfig
from tasks.datapool.block import Datapool
from tasks.datapool.compaction import maintain
from tasks.datapool.state import (
    ModelPointers,
    NextManifest,
    PoolStart,
    commit_run,
    start_from,
    write_next_manifest,
)
from tasks.records.embeddings import EmbeddingTable
from tasks.records.plan import RunPlan
from tasks.records.samples import SampleTable
from tasks.storage.factory import open_storage
from tasks.storage.retry import RETRY_TRANSIENT


@task(name="next-manifest")
def next_manifest(
    run_plan: RunPlan,
    processed: SampleTable,
    embeddings: EmbeddingTable,
    selected: list[str],
    run_id: str,
    work_dir: Path,
) -> NextManifest:
    """Write the datapool's manifest after this run to work_dir/manifest.parquet (write_next_manifest)."""
    return write_next_manifest(
        run_plan, processed, embeddings, selected, run_id, work_dir / "manifest.parquet"
    )


@task(name="open-datapool", **RETRY_TRANSIENT)
def open_datapool(
    name: str,
    source: str,
    output: str,
    aws_credentials: str | None,
    process_all: bool,
    reuse_model: bool,
    cache_dir: Path,
) -> PoolStart:
    """Check access to the output and read what the run starts from (start_from)."""
    storage = open_storage(output, aws_credentials)
    storage.check_write_access()
    return start_from(name, source, storage, process_all, reuse_model, cache_dir / "datapool")


@task(name="maintain-datapool", **RETRY_TRANSIENT)
def maintain_datapool(
    name: str,
    output: str,
    aws_credentials: str | None,
    committed: Datapool,
    config: StateConfig,
    cache_dir: Path,
) -> Datapool:
    """Merge the datapool's segments past the threshold, and delete those no kept version needs (maintain)."""
    storage = open_storage(output, aws_credentials)
    return maintain(
        name, storage, committed, config.compact_after_segments, config.keep_versions, cache_dir / "datapool"
    )


@task(name="commit-state", **RETRY_TRANSIENT)
def commit_state(
    start: PoolStart,
    output: str,
    aws_credentials: str | None,
    manifest: NextManifest,
    model: ModelPointers,
    run_id: str,
    run_json: str,
) -> Datapool:
    """Commit the run's datapool version and point latest.json at the run (commit_run)."""
    storage = open_storage(output, aws_credentials)
    return commit_run(start, storage, manifest, model, run_id, run_json)
