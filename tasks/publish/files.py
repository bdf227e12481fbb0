"""Publish: write the run's files (the contract in DESIGN.md) to `<output>/runs/<run-id>/`.

run.json is written last. `<output>/latest.json` is written when the datapool commits
(tasks/datapool/state.py), so it only ever names a complete, committed run.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel

from tasks.config import VideoConfig
from tasks.publish.frames import FRAMES_FOLDER, write_selected_frames
from tasks.records.embeddings import EmbeddingTable
from tasks.records.report import ReportFiles
from tasks.records.run import RunRecord, SelectedFrames
from tasks.records.samples import (
    INTERNAL_COLUMNS,
    KIND_FRAME,
    STATUS_CORRUPT,
    STATUS_DUPLICATE,
    STATUS_MISSING,
    STATUS_UNREADABLE,
    SampleTable,
)
from tasks.records.selection import Selection
from tasks.records.shards import Listing, read_listing
from tasks.storage.interface import MissingObjectError, Storage, UnreadableObjectError, contained_key

logger = logging.getLogger(__name__)

# Where output_layout lightly puts the Lightly Worker's files inside a run's folder.
LIGHTLY_FOLDER = "lightly"

# Embedding rows written to the CSV at a time: memory stays flat whatever the run's size.
CSV_BATCH_ROWS = 16_384

SELECTED_FOLDER = "selected"
RUN_JSON = "run.json"


class RunFiles(BaseModel, frozen=True):
    """Local files the run produced, to be published under their contract names."""

    samples: SampleTable
    embeddings: EmbeddingTable
    selection: Selection
    onnx_model: str
    # The fp32 graph the embedding model was quantized from, when they differ.
    fp32_onnx_model: str | None = None
    # None when the run embedded with the datapool's model (it trained nothing).
    checkpoint: str | None
    # What the source listed: the selected frames' videos are read again from it.
    listing: Listing
    # None when the report is turned off (report.enabled: false).
    report: ReportFiles | None = None


def samples_parquet(samples: SampleTable) -> bytes:
    """samples.parquet: the samples table without its internal columns."""
    table = pq.read_table(samples.path)
    buffer = io.BytesIO()
    pq.write_table(table.drop_columns(list(INTERNAL_COLUMNS)), buffer)
    return buffer.getvalue()


def reasons_json(samples: SampleTable, statuses: tuple[str, ...]) -> bytes:
    """{sample id: reason} of the samples with one of `statuses`.

    corrupt.json holds the corrupt ones; unreadable.json the files listed but not read this
    run (missing or unreadable), which the next run tries again.
    """
    rows = pq.read_table(samples.path, columns=["id", "status", "reason"]).to_pylist()
    reasons = {r["id"]: r["reason"] for r in rows if r["status"] in statuses}
    return json.dumps(reasons, indent=2, sort_keys=True).encode()


def duplicates_json(samples: SampleTable) -> bytes:
    """duplicates.json: each duplicate sample and the kept sample it duplicates.

    {sample id: {"of": the kept sample it duplicates, "reason": exact or near, and how}}
    """
    rows = pq.read_table(samples.path, columns=["id", "status", "reason", "duplicate_of"]).to_pylist()
    duplicates = {
        r["id"]: {"of": r["duplicate_of"], "reason": r["reason"]}
        for r in rows
        if r["status"] == STATUS_DUPLICATE
    }
    return json.dumps(duplicates, indent=2, sort_keys=True).encode()


def write_lightly_csv(embeddings: EmbeddingTable, path: Path) -> Path:
    """Write the Lightly layout to `path`: filenames, embedding_0..n-1, labels (0: winnow has no labels).

    A record batch at a time: millions of rows (1.6 kB each at 128 dimensions) are streamed to
    disk, never held in memory, and the file is uploaded in parts.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as text:
        writer = csv.writer(text, lineterminator="\n")
        # The csv module quotes a field holding "\n" but not one holding a lone "\r", which a
        # reader then takes for the row's end: such a row is written quoted throughout.
        quoting = csv.writer(text, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(["filenames", *(f"embedding_{i}" for i in range(embeddings.dim)), "labels"])
        for batch in pq.ParquetFile(embeddings.path).iter_batches(batch_size=CSV_BATCH_ROWS):
            ids = batch.column("id").to_pylist()
            vectors = batch.column("embedding").flatten().to_numpy(zero_copy_only=False).reshape(len(ids), -1)
            for sample_id, vector in zip(ids, vectors, strict=True):
                row = [sample_id, *(f"{v:.8g}" for v in vector), 0]
                (quoting if "\r" in sample_id else writer).writerow(row)
    return path


def lightly_layout(files: RunFiles, record: RunRecord, selected: bytes) -> dict[str, bytes]:
    """The Lightly Worker's output files, under `lightly/` (output_layout: lightly).

    Named and laid out as the worker wrote them into its output directory, for the scripts
    a Lightly user already has (`data/embeddings.csv`, this run's clean samples, is uploaded
    beside them by publish_run_files),
    `filenames/corrupt_filenames.txt`, `filenames/duplicate_filenames.txt` (exact and near
    duplicates), `sampled_filenames_excluding_datapool.txt` (this
    run's picks) and `report.json` with the worker's keys where winnow has the figure.
    """
    rows = pq.read_table(files.samples.path, columns=["id", "status"])

    def listed(status: str) -> bytes:
        ids = rows.filter(pc.equal(rows["status"], status))["id"].to_pylist()
        return "".join(f"{one_line(sample_id)}\n" for sample_id in ids).encode()

    return {
        f"{LIGHTLY_FOLDER}/filenames/corrupt_filenames.txt": listed(STATUS_CORRUPT),
        f"{LIGHTLY_FOLDER}/filenames/duplicate_filenames.txt": listed(STATUS_DUPLICATE),
        f"{LIGHTLY_FOLDER}/sampled_filenames_excluding_datapool.txt": selected,
        f"{LIGHTLY_FOLDER}/report.json": json.dumps(lightly_report(record), indent=2).encode(),
    }


def lightly_report(record: RunRecord) -> dict[str, object]:
    """report.json in the Lightly layout: the worker's names for the figures winnow has."""
    counts = record.counts
    return {
        "n_samples_total": counts.discovered,
        "n_samples_new": counts.new,
        "n_corrupt_samples": counts.corrupt,
        "n_duplicate_samples": counts.duplicates,
        "n_samples_embedded": counts.embedded,
        "n_samples_selected": counts.selected,
        "n_samples_in_datapool_before": record.datapool.samples_before,
        "n_samples_selected_in_datapool_before": record.datapool.selected_before,
        "selection_config": record.config["selection"],
        "run_id": record.run_id,
    }


def selected_filenames(selection: Selection) -> bytes:
    r"""selected_filenames.txt: the selected samples' ids, one a line.

    An id that holds a line break, or starts with a double quote, is written as a JSON
    string ("two\nlines.jpg"), so that every line is one id; every other id is written as
    it is. selection.parquet holds the ids exactly.
    """
    ids = pq.read_table(selection.path, columns=["id"])["id"].to_pylist()
    return "".join(f"{one_line(i)}\n" for i in ids).encode()


def one_line(sample_id: str) -> str:
    """The id as one line of selected_filenames.txt (JSON-quoted when it must be)."""
    if "\n" in sample_id or "\r" in sample_id or sample_id.startswith('"'):
        return json.dumps(sample_id, ensure_ascii=False)
    return sample_id


def selected_rows(files: RunFiles) -> list[dict[str, Any]]:
    """The samples rows (id, key, kind, frame_index, timestamp_s) of the picks, in id order."""
    chosen = set(pq.read_table(files.selection.path, columns=["id"])["id"].to_pylist())
    columns = ["id", "key", "kind", "frame_index", "timestamp_s"]
    return [r for r in pq.read_table(files.samples.path, columns=columns).to_pylist() if r["id"] in chosen]


def copy_selected_images(source: Storage, output: Storage, keys: list[str]) -> dict[str, str]:
    """Copy each selected image to `selected/<key>` in the output (keys made safe as paths).

    Returns {key: reason} of the images that could not be copied: deleted or made unreadable
    since they were inspected. One of them never fails the run after all its work.
    """
    not_copied = {}
    for key in keys:
        try:
            output.copy_from(source, key, f"{SELECTED_FOLDER}/{contained_key(key)}")
        except (MissingObjectError, UnreadableObjectError) as error:
            logger.warning("selected image not copied: %s", error)
            not_copied[key] = str(error)
    return not_copied


def publish_run_files(
    source: Storage,
    output: Storage,
    run_id: str,
    files: RunFiles,
    record: RunRecord,
    video: VideoConfig,
    scratch: Path,
    layout: str = "winnow",
) -> RunRecord:
    """Write every file of the run and the selected frames as images, then run.json.

    With `layout` lightly, the Lightly Worker's files too (lightly_layout).

    run.json (with the artifact URIs) comes last, saying `published`: the datapool is not
    committed yet. Copies of the selected images wait for the commit (copy_selected_picks).

    Returns the record as published: with the artifacts' URIs by name (run.json included)
    and, when frames were selected, how many of them were written.
    """
    prefix = f"runs/{run_id}"
    blobs = {
        "samples.parquet": samples_parquet(files.samples),
        "corrupt.json": reasons_json(files.samples, (STATUS_CORRUPT,)),
        "unreadable.json": reasons_json(files.samples, (STATUS_MISSING, STATUS_UNREADABLE)),
        "duplicates.json": duplicates_json(files.samples),
        "selected_filenames.txt": selected_filenames(files.selection),
    }
    if layout == "lightly":
        blobs |= lightly_layout(files, record, blobs["selected_filenames.txt"])
    csv_file = write_lightly_csv(files.embeddings, scratch / run_id / "embeddings.csv")
    uploads = {
        "embeddings.csv": csv_file,
        "embeddings.parquet": Path(files.embeddings.path),
        "selection.parquet": Path(files.selection.path),
        "model.onnx": Path(files.onnx_model),
    }
    if files.checkpoint is not None:
        uploads["checkpoint.pt"] = Path(files.checkpoint)
    if files.fp32_onnx_model is not None:
        uploads["model.fp32.onnx"] = Path(files.fp32_onnx_model)
    if files.report is not None:
        uploads["report.html"] = Path(files.report.html)
        uploads["report.json"] = Path(files.report.json_path)
        if files.report.pdf is not None:
            uploads["report.pdf"] = Path(files.report.pdf)
    if layout == "lightly":
        uploads[f"{LIGHTLY_FOLDER}/data/embeddings.csv"] = csv_file
    artifacts = {name: output.write_bytes(f"{prefix}/{name}", data) for name, data in blobs.items()}
    artifacts |= {name: output.upload_file(f"{prefix}/{name}", path) for name, path in uploads.items()}
    csv_file.unlink()  # a copy of the embeddings: the cache keeps the Parquet table only
    frames = [(r["key"], r["frame_index"]) for r in selected_rows(files) if r["kind"] == KIND_FRAME]
    written = None
    if frames:
        videos = {info.key: info for info in read_listing(files.listing)}
        written = write_selected_frames(source, output, prefix, frames, videos, video, scratch)
        artifacts[FRAMES_FOLDER] = f"{output.uri}/{prefix}/{FRAMES_FOLDER}"
        logger.info("wrote %d selected frames to %s", written, artifacts[FRAMES_FOLDER])
    artifacts["run.json"] = f"{output.uri}/{prefix}/{RUN_JSON}"
    frames_record = None if written is None else SelectedFrames(selected=len(frames), written=written)
    published = record.model_copy(update={"artifacts": artifacts, "selected_frames": frames_record})
    write_run_json(output, published)
    logger.info("published run %s to %s/%s", run_id, output.uri, prefix)
    return published


def write_run_json(output: Storage, record: RunRecord) -> str:
    """Write the record as its run's run.json; returns its URI."""
    return output.write_bytes(f"runs/{record.run_id}/{RUN_JSON}", record.to_json().encode())


def copy_selected_picks(source: Storage, output: Storage, run_id: str, files: RunFiles) -> dict[str, str]:
    """Copy the selected images to `selected/` once the datapool holds them.

    Frames are not objects of the source: they are in selected_frames/. Images that could
    not be copied are listed with their reasons in the run's not_copied.json.

    Returns the artifacts' URIs by name: `selected`, and `not_copied.json` when there is one.
    """
    images = [r["key"] for r in selected_rows(files) if r["kind"] != KIND_FRAME]
    not_copied = copy_selected_images(source, output, images)
    artifacts = {SELECTED_FOLDER: f"{output.uri}/{SELECTED_FOLDER}"}
    if not_copied:
        listed = json.dumps(not_copied, indent=2, sort_keys=True).encode()
        artifacts["not_copied.json"] = output.write_bytes(f"runs/{run_id}/not_copied.json", listed)
    logger.info("copied %d selected images to %s", len(images) - len(not_copied), artifacts[SELECTED_FOLDER])
    return artifacts
