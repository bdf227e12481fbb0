"""The publish stage's task: write the run's files to the output."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from tasks.config import VideoConfig
from tasks.publish.files import RunFiles, copy_selected_picks, publish_run_files, write_run_json
from tasks.publish.links import ResultLink, result_links
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
    video: VideoConfig,
    cache_dir: Path,
    layout: str = "winnow",
) -> RunRecord:
    """Write the run's files to the output; the record as published (publish_run_files)."""
    return publish_run_files(
        open_storage(source, aws_credentials),
        open_storage(output, aws_credentials),
        run_id,
        files,
        record,
        video,
        cache_dir / "downloads",
        layout,
    )


@task(name="copy-selected", **RETRY_TRANSIENT)
def copy_selected(
    source: str, output: str, aws_credentials: str | None, run_id: str, files: RunFiles
) -> dict[str, str]:
    """Copy the selected images to the output's selected/, after the commit (copy_selected_picks)."""
    return copy_selected_picks(
        open_storage(source, aws_credentials), open_storage(output, aws_credentials), run_id, files
    )


@task(name="record-run", **RETRY_TRANSIENT)
def record_run(output: str, aws_credentials: str | None, record: RunRecord) -> str:
    """Write the run's final record, committed or not, as its run.json (write_run_json)."""
    return write_run_json(open_storage(output, aws_credentials), record)


@task(name="share-results", **RETRY_TRANSIENT)
def share_results(artifacts: dict[str, str], aws_credentials: str | None, hours: float) -> list[ResultLink]:
    """Links to the run's main files for the UI: presigned URLs on S3, paths as text locally."""
    return result_links(artifacts, aws_credentials, hours)
