"""The report stage's task: render report.html (and .pdf, .json)."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.config import ReportConfig
from tasks.records.embeddings import EmbeddingTable
from tasks.records.report import ReportFiles
from tasks.records.run import RunRecord
from tasks.records.samples import SampleTable, ShardInspection
from tasks.records.selection import Selection
from tasks.report.build import write_report
from tasks.report.gallery import gallery_markdown


@task(name="render-report")
def render_report(
    record: RunRecord,
    samples: SampleTable,
    table: EmbeddingTable,
    selection: Selection,
    inspections: list[ShardInspection],
    config: ReportConfig,
    work_dir: Path,
) -> ReportFiles:
    """Write the run report into work_dir/report from the shards' image caches (write_report)."""
    # One image at a time: a few of each shard are shown, and a remote shard's cache is not fetched whole.
    images = {inspection.shard.index: inspection.image for inspection in inspections}
    return write_report(record, samples, table, selection, images, config, work_dir / "report")


@task(name="render-gallery")
def render_gallery(
    samples: SampleTable, selection: Selection, inspections: list[ShardInspection], limit: int
) -> str | None:
    """The picks as a markdown gallery of thumbnails from the shards' image caches (gallery_markdown)."""
    images = {inspection.shard.index: inspection.image for inspection in inspections}
    return gallery_markdown(samples, selection, images, limit)
