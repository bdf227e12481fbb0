"""The publish stage's task: write the run's files to the output."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.config import VideoConfig
from tasks.publish.files import RunFiles, publish_run_files
from tasks.records.run import RunRecord
from tasks.storage.factory import open_storage
from tasks.storage.retry import RETRY_TRANSIENT


@task(name="publish", **RETRY_TRANSIENT)
def publish(
    source: str,
    output: str,
    aws_credentials: str | None,
    run_id: str,
    files: RunFiles,
    record: RunRecord,
    copy_selected: bool,
    video: VideoConfig,
    cache_dir: Path,
) -> dict[str, str]:
    """Write the run's files to the output and return their URIs by name (publish_run_files)."""
    return publish_run_files(
        open_storage(source, aws_credentials),
        open_storage(output, aws_credentials),
        run_id,
        files,
        record,
        copy_selected,
        video,
        cache_dir / "downloads",
    )
