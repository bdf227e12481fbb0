"""The selection stage's tasks: read the user's selection inputs, remove near duplicates, select."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.config import ChecksConfig, SelectionConfig
from tasks.records.embeddings import EmbeddingTable
from tasks.records.plan import RunPlan
from tasks.records.samples import SampleTable
from tasks.records.selection import SELECTION_FILE, Selection, SelectionInputs
from tasks.records.shards import Listing
from tasks.selection.choose import select_from_pool
from tasks.selection.inputs import prepare_selection_inputs
from tasks.selection.near_duplicates import remove_near_duplicates_of_pool
from tasks.storage.retry import RETRY_TRANSIENT


@task(name="selection-inputs", **RETRY_TRANSIENT)
def selection_inputs(
    config: SelectionConfig,
    source: str,
    aws_credentials: str | None,
    listing: Listing,
    input_size: int,
    checks: ChecksConfig,
    cache_dir: Path,
) -> SelectionInputs:
    """Task: read and check the user's selection inputs, cached under `cache_dir`."""
    return prepare_selection_inputs(
        config, source, aws_credentials, listing, input_size, checks, cache_dir / "selection-inputs"
    )


@task(name="remove-near-duplicates")
def remove_near_duplicates(
    samples: SampleTable, table: EmbeddingTable, threshold: float, run_plan: RunPlan, work_dir: Path
) -> tuple[SampleTable, EmbeddingTable]:
    """Task: remove this run's near duplicates (remove_near_duplicates_of_pool)."""
    return remove_near_duplicates_of_pool(samples, table, threshold, run_plan, work_dir / "near-duplicates")


@task(name="select")
def select(
    table: EmbeddingTable,
    requested: int,
    config: SelectionConfig,
    sequence_length: int | None,
    run_plan: RunPlan,
    samples: SampleTable,
    inputs: SelectionInputs,
    work_dir: Path,
) -> Selection:
    """Task: select from this run's clean samples, writing the selection into `work_dir`."""
    return select_from_pool(
        table, requested, config, sequence_length, run_plan, samples, inputs, work_dir / SELECTION_FILE
    )
