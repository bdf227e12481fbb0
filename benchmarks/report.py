"""The run report at scale: render it for a synthetic run of a million samples.

    python -m benchmarks.report [--rows 1000000] [--dim 128] [--picks 10000]

Builds the tables a run leaves (samples with metadata, 1% corrupt and 0.5% duplicates;
unit embeddings in clusters; a selection of --picks) and a uint8 image cache of 4,096
distinct 64 px images that the samples' cache rows point into. The picks are a seeded random
subset: how they were chosen does not change what the report does with them (greedy
k-center over a million rows is benchmarks/select.py's job, and takes minutes). Times the
whole report (report.html, report.json, report.pdf when Chromium is installed) and the PDF
print alone, and prints the files' sizes. Prints a JSON object of figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.config import ReportConfig
from tasks.records.embeddings import EmbeddingTable, write_embedding_table
from tasks.records.run import RunRecord
from tasks.records.samples import METADATA_COLUMNS, SAMPLE_SCHEMA, SampleTable
from tasks.records.selection import Selection
from tasks.report.build import ImageReader, write_report
from tasks.report.pdf import print_pdf
from tasks.selection.quality import selection_quality

CACHED_IMAGES, SIDE = 4096, 64


def clustered_embeddings(rows: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.normal(size=(200, dim)).astype(np.float32)
    x = centres[rng.integers(200, size=rows)] + 0.4 * rng.normal(size=(rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic_samples(ids: list[str], rng: np.random.Generator) -> pa.Table:
    rows = len(ids)
    status = np.full(rows, "ok", dtype=object)
    draw = rng.random(rows)
    status[draw < 0.01] = "corrupt"
    status[(draw >= 0.01) & (draw < 0.015)] = "duplicate"
    ok = status == "ok"
    corrupt, duplicate = status == "corrupt", status == "duplicate"
    reasons = np.array(["truncated file: image file is truncated", "not an image: unrecognised file format"])
    reason = np.full(rows, None, dtype=object)
    reason[corrupt] = reasons[rng.integers(2, size=int(corrupt.sum()))]
    originals = np.flatnonzero(ok)[: int(duplicate.sum())]
    duplicate_of = np.full(rows, None, dtype=object)
    duplicate_of[duplicate] = [ids[i] for i in originals]
    reason[duplicate] = [f"exact duplicate of {ids[i]}" for i in originals]
    readable = ~corrupt
    columns: dict[str, Any] = {
        "id": ids,
        "key": ids,
        "kind": ["image"] * rows,
        "status": status.tolist(),
        "reason": reason.tolist(),
        "duplicate_of": duplicate_of.tolist(),
        "bytes": rng.integers(20_000, 400_000, size=rows),
        "width": np.where(readable, rng.integers(320, 1920, size=rows), None).tolist(),
        "height": np.where(readable, rng.integers(240, 1080, size=rows), None).tolist(),
        "shard": np.zeros(rows, dtype=np.int32),
        "cache_row": np.where(readable, np.arange(rows) % CACHED_IMAGES, -1).astype(np.int32),
        "flags": [[] for _ in range(rows)],
    }
    for name in METADATA_COLUMNS:
        values = rng.random(rows) * (800.0 if name == "sharpness" else 1.0)
        columns[name] = np.where(readable, values, np.nan)
    columns |= {name: [None] * rows for name in SAMPLE_SCHEMA.names if name not in columns}
    return pa.Table.from_pydict(columns, schema=SAMPLE_SCHEMA)


def synthetic_run(
    directory: Path, rows: int, dim: int, picks: int, seed: int
) -> tuple[RunRecord, SampleTable, EmbeddingTable, Selection, dict[int, ImageReader]]:
    rng = np.random.default_rng(seed)
    ids = [f"cam{i % 7}/{i:07d}.jpg" for i in range(rows)]
    samples = synthetic_samples(ids, rng)
    pq.write_table(samples, directory / "samples.parquet")
    status = np.array(samples["status"].to_pylist())
    ok_ids = [i for i, s in zip(ids, status, strict=True) if s == "ok"]
    vectors = clustered_embeddings(len(ok_ids), dim, rng)
    table = write_embedding_table(ok_ids, vectors, directory / "e.parquet")
    chosen = sorted(rng.choice(len(ok_ids), size=picks, replace=False).tolist())
    pq.write_table(
        pa.table(
            {
                "id": [ok_ids[i] for i in chosen],
                "rank": np.arange(picks, dtype=np.int32),
                "reason": ["x"] * picks,
            }
        ),
        directory / "selection.parquet",
    )
    # The picks' figures against random subsets, as a run measures them (camera as BALANCE's key).
    cameras = np.array([int(i[3]) for i in ok_ids])
    quality = selection_quality(vectors, np.array(chosen), seed, {"camera": cameras})
    selection = Selection(
        path=str(directory / "selection.parquet"),
        requested=picks,
        selected=picks,
        candidates=len(ok_ids),
        note=None,
        quality=quality,
        device="cpu",
    )
    counts = {
        "discovered": rows,
        "new": rows,
        "corrupt": int((status == "corrupt").sum()),
        "duplicates": int((status == "duplicate").sum()),
        "missing": 0,
        "embedded": len(ok_ids),
        "selected": picks,
    }
    record = RunRecord.model_validate(
        {
            "run_id": "benchmark",
            "status": "committed",
            "source": "s3://benchmark/raw",
            "output": "s3://benchmark/curated",
            "started_at": "2026-11-24T00:00:00+00:00",
            "counts": counts,
            "timings": {"discover": 30.0, "inspect": 900.0, "train": 1200.0, "embed": 600.0, "select": 275.0},
            "model": {
                "execution_provider": "CUDAExecutionProvider",
                "precision": "fp32",
                "source": "trained by this run",
                "embedding_dim": dim,
                "onnx_sha256": "0" * 64,
                "input_size": 64,
                "min_cosine_to_fp32": None,
                "onnx_parity_max_abs_diff": None,
            },
            "datapool": {
                "name": "benchmark",
                "base_version": 0,
                "commits_version": 1,
                "samples_before": 0,
                "selected_before": 0,
                "model_reused": False,
                "samples_after": rows,
                "selected_after": picks,
            },
            "selection": {
                "requested": picks,
                "candidates": len(ok_ids),
                "note": None,
                "quality": quality,
                "device": "cpu",
            },
            "config": {},
            "cached_tasks": {},
            "overlapped_stages": [],
            "telemetry": {},
        }
    )
    sample_table = SampleTable(
        path=str(directory / "samples.parquet"),
        processed=rows,
        ok=len(ok_ids),
        corrupt=counts["corrupt"],
        duplicates=counts["duplicates"],
        missing=0,
    )
    # Smooth random images (noise upsampled), so thumbnails compress like photographs do.
    coarse = rng.integers(0, 256, size=(CACHED_IMAGES, 8, 8, 3), dtype=np.uint8)
    pixels = np.repeat(np.repeat(coarse, SIDE // 8, axis=1), SIDE // 8, axis=2)
    return record, sample_table, table, selection, {0: pixels.__getitem__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--picks", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        directory = Path(folder)
        started = time.perf_counter()
        record, samples, table, selection, images = synthetic_run(
            directory, args.rows, args.dim, args.picks, 0
        )
        print(
            f"built a synthetic run of {args.rows:,} samples in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        started = time.perf_counter()
        files = write_report(record, samples, table, selection, images, ReportConfig(), directory / "report")
        report_seconds = time.perf_counter() - started
        html_bytes = Path(files.html).stat().st_size
        figures: dict[str, Any] = {
            "rows": args.rows,
            "picks": args.picks,
            "report_seconds": round(report_seconds, 2),
            "html_bytes": html_bytes,
            "json_bytes": Path(files.json_path).stat().st_size,
            "pdf_bytes": Path(files.pdf).stat().st_size if files.pdf else None,
            "pdf_note": files.pdf_note,
        }
        if files.pdf:
            started = time.perf_counter()
            print_pdf(Path(files.html), directory / "again.pdf")
            figures["pdf_print_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
