"""Publish: write the run's files (the contract in DESIGN.md) to `<output>/runs/<run-id>/`,
then `<output>/latest.json` last, so it only ever names a complete run."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from prefect import task
from pydantic import BaseModel

from tasks.embedding_table import EmbeddingTable, read_embeddings
from tasks.inspect import INTERNAL_COLUMNS, STATUS_CORRUPT, SampleTable
from tasks.retry import is_transient_failure
from tasks.select import Selection
from tasks.storage import open_storage

logger = logging.getLogger(__name__)


class RunFiles(BaseModel, frozen=True):
    """Local files the run produced, to be published under their contract names."""

    samples: SampleTable
    embeddings: EmbeddingTable
    selection: Selection
    onnx_model: str
    # The fp32 graph the embedding model was quantized from, when they differ.
    fp32_onnx_model: str | None = None
    checkpoint: str


def samples_parquet(samples: SampleTable) -> bytes:
    table = pq.read_table(samples.path)
    buffer = io.BytesIO()
    pq.write_table(table.drop_columns(list(INTERNAL_COLUMNS)), buffer)
    return buffer.getvalue()


def corrupt_json(samples: SampleTable) -> bytes:
    rows = pq.read_table(samples.path, columns=["id", "status", "reason"]).to_pylist()
    corrupt = {r["id"]: r["reason"] for r in rows if r["status"] == STATUS_CORRUPT}
    return json.dumps(corrupt, indent=2, sort_keys=True).encode()


def lightly_csv(embeddings: EmbeddingTable) -> bytes:
    """The Lightly layout: filenames, embedding_0..n-1, labels (0: winnow has no labels)."""
    ids, vectors = read_embeddings(embeddings)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["filenames", *(f"embedding_{i}" for i in range(embeddings.dim)), "labels"])
    for sample_id, vector in zip(ids, vectors, strict=True):
        writer.writerow([sample_id, *(f"{v:.8g}" for v in vector), 0])
    return text.getvalue().encode()


def selected_filenames(selection: Selection) -> bytes:
    ids = pq.read_table(selection.path, columns=["id"])["id"].to_pylist()
    return "".join(f"{i}\n" for i in ids).encode()


def publish_run_files(output: str, run_id: str, files: RunFiles, record: dict[str, Any]) -> dict[str, str]:
    """Write every file of the run, then run.json (with the artifact URIs), then latest.json.

    Returns the artifacts' URIs by name, run.json included.
    """
    storage = open_storage(output)
    prefix = f"runs/{run_id}"
    blobs = {
        "samples.parquet": samples_parquet(files.samples),
        "corrupt.json": corrupt_json(files.samples),
        "embeddings.csv": lightly_csv(files.embeddings),
        "selected_filenames.txt": selected_filenames(files.selection),
    }
    uploads = {
        "embeddings.parquet": Path(files.embeddings.path),
        "selection.parquet": Path(files.selection.path),
        "model.onnx": Path(files.onnx_model),
        "checkpoint.pt": Path(files.checkpoint),
    }
    if files.fp32_onnx_model is not None:
        uploads["model.fp32.onnx"] = Path(files.fp32_onnx_model)
    artifacts = {name: storage.write_bytes(f"{prefix}/{name}", data) for name, data in blobs.items()}
    artifacts |= {name: storage.upload_file(f"{prefix}/{name}", path) for name, path in uploads.items()}
    run_json_key = f"{prefix}/run.json"
    run_record = {**record, "artifacts": {**artifacts, "run.json": f"{storage.uri}/{run_json_key}"}}
    artifacts["run.json"] = storage.write_bytes(run_json_key, json.dumps(run_record, indent=2).encode())
    latest = {
        "run_id": run_id,
        "run": prefix,
        "run_json": artifacts["run.json"],
        "finished_at": datetime.now(UTC).isoformat(),
    }
    storage.write_bytes("latest.json", json.dumps(latest, indent=2).encode())
    logger.info("published run %s to %s/%s", run_id, storage.uri, prefix)
    return artifacts


@task(name="publish", retries=2, retry_delay_seconds=[1, 5], retry_condition_fn=is_transient_failure)
def publish(output: str, run_id: str, files: RunFiles, record: dict[str, Any]) -> dict[str, str]:
    return publish_run_files(output, run_id, files, record)
