"""The run report: report.html, report.pdf and report.json, written for publish to upload.

report.html (self-contained), report.pdf (the same page, printed) and report.json (its
numbers), written into the run's work folder for publish to upload.

It reads what the run already has: the run record, the samples, embeddings and selection
tables, and the uint8 image cache at model resolution (thumbnails, never a re-decode).
Plots draw a seeded subsample, so a million samples render as fast as a few thousand.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.config import ReportConfig
from tasks.records.embeddings import EmbeddingTable, read_embeddings
from tasks.records.report import ReportFiles
from tasks.records.run import RunRecord
from tasks.records.samples import STATUS_DUPLICATE, STATUS_OK, SampleTable
from tasks.records.selection import Selection
from tasks.report.data import (
    embedding_map,
    has_video_frames,
    headline_numbers,
    metadata_values,
    neighbour_distances,
    sample_breakdown,
    subsample,
    video_timelines,
)
from tasks.report.html import DuplicatePair, ReportContent, Thumbnail, jpeg, render_html
from tasks.report.pdf import print_pdf
from tasks.report.plots import (
    embedding_scatter,
    metadata_histograms,
    neighbour_histogram,
    video_timeline_plot,
)

logger = logging.getLogger(__name__)

# More rows than this make the timeline plot unreadable; the rest are counted in a note.
MAX_TIMELINES = 40

# The outliers worth a look; past a couple of rows they are no longer outliers.
MAX_ATYPICAL = 16

# A shard's cached image by its row. Shape: row -> (S, S, 3) uint8
ImageReader = Callable[[int], np.ndarray]


def cached_pixels(
    samples: pa.Table, ids: list[str], images: Mapping[int, ImageReader]
) -> dict[str, np.ndarray]:
    """The cached images (model resolution) of those of `ids` this run decoded."""
    wanted = samples.filter(pc.is_in(samples["id"], pa.array(ids, pa.string())))
    return {
        row["id"]: images[row["shard"]](row["cache_row"])
        for row in wanted.select(["id", "shard", "cache_row"]).to_pylist()
        if row["cache_row"] is not None and row["cache_row"] >= 0 and row["shard"] in images
    }


def thumbnails(
    samples: pa.Table, captions: dict[str, str], images: Mapping[int, ImageReader]
) -> dict[str, Thumbnail]:
    """{id: its thumbnail}, in the order of `captions` ({id: caption})."""
    pixels = cached_pixels(samples, list(captions), images)
    return {
        sample_id: Thumbnail(sample_id, jpeg(pixels[sample_id]) if sample_id in pixels else None, caption)
        for sample_id, caption in captions.items()
    }


def duplicate_pairs(samples: pa.Table, limit: int, images: Mapping[int, ImageReader]) -> list[DuplicatePair]:
    """Up to `limit` removed duplicates, each beside the sample it duplicates."""
    rows = samples.filter(pc.equal(samples["status"], STATUS_DUPLICATE)).slice(0, limit)
    pairs = rows.select(["id", "duplicate_of", "reason"]).to_pylist()
    removed = thumbnails(samples, {r["id"]: r["reason"] or "" for r in pairs}, images)
    kept = thumbnails(samples, {r["duplicate_of"]: "kept" for r in pairs}, images)
    return [DuplicatePair(removed[r["id"]], kept[r["duplicate_of"]]) for r in pairs]


def build_content(
    record: RunRecord,
    samples: SampleTable,
    table: EmbeddingTable,
    selection: Selection,
    images: Mapping[int, ImageReader],
    config: ReportConfig,
) -> ReportContent:
    """Everything the report shows: its numbers, plots, galleries and notes on what was left out."""
    rows = pq.read_table(samples.path)
    numbers = headline_numbers(record) | sample_breakdown(rows)
    ids, embeddings = read_embeddings(table)
    picked_ids = pq.read_table(selection.path, columns=["id"])["id"].to_pylist()
    row_of = {sample_id: row for row, sample_id in enumerate(ids)}
    picks = np.array([row_of[i] for i in picked_ids], dtype=np.int64)
    plots: dict[str, bytes] = {}
    notes: dict[str, str] = {}
    atypical: dict[str, str] = {}
    if len(embeddings) >= 2:
        distances = neighbour_distances(embeddings, picks, config.seed)
        plots["neighbours"] = neighbour_histogram(distances)
        if len(distances.pool_rows) < len(embeddings):
            notes["quality"] = (
                f"Histograms: nearest neighbours within seeded subsamples of at most "
                f"{len(distances.pool_rows):,} samples (of {len(embeddings):,})."
            )
        most_atypical = np.argsort(-distances.pool)[: min(config.thumbnails, MAX_ATYPICAL)]
        atypical = {ids[distances.pool_rows[i]]: f"distance {distances.pool[i]:.3f}" for i in most_atypical}
        notes["atypical"] = "The samples farthest from their nearest neighbour" + (
            " within the histograms' subsample." if len(distances.pool_rows) < len(embeddings) else "."
        )
        plotted = subsample(len(embeddings), picks, config.max_points, config.seed)
        coordinates, method = embedding_map(embeddings[plotted], config.seed)
        plots["map"] = embedding_scatter(coordinates, np.isin(plotted, picks), method)
        notes["map"] = f"{method} of {len(plotted):,} of {len(embeddings):,} embeddings" + (
            ", every selected sample included as far as they fit (seeded subsample)."
            if len(plotted) < len(embeddings)
            else "."
        )
    chosen = set(picked_ids)
    if len(embeddings):
        everything = metadata_values(rows)
        ok_ids = rows.filter(pc.equal(rows["status"], STATUS_OK))["id"].to_pylist()
        selected_mask = np.array([i in chosen for i in ok_ids], dtype=bool)
        plots["metadata"] = metadata_histograms(
            everything, {name: values[selected_mask] for name, values in everything.items()}
        )
    if has_video_frames(rows):
        timelines, videos = video_timelines(rows, chosen, MAX_TIMELINES)
        if timelines:
            plots["videos"] = video_timeline_plot(timelines)
            if videos > len(timelines):
                notes["videos"] = f"The {len(timelines)} videos with the most selected frames, of {videos}."
    shown = picked_ids[: config.thumbnails]
    if len(picked_ids) > len(shown):
        notes["selected"] = f"The first {len(shown):,} picks of {len(picked_ids):,}, in pick order."
    duplicates = duplicate_pairs(rows, config.thumbnails, images)
    if numbers["counts"]["duplicates"] > len(duplicates):
        notes["duplicates"] = f"{len(duplicates):,} of {numbers['counts']['duplicates']:,} duplicates."
    return ReportContent(
        numbers=numbers,
        plots=plots,
        selected=list(thumbnails(rows, {i: f"pick {n}" for n, i in enumerate(shown)}, images).values()),
        duplicates=duplicates,
        atypical=list(thumbnails(rows, atypical, images).values()),
        notes=notes,
    )


def write_report(
    record: RunRecord,
    samples: SampleTable,
    table: EmbeddingTable,
    selection: Selection,
    images: Mapping[int, ImageReader],
    config: ReportConfig,
    directory: Path,
) -> ReportFiles:
    """Write report.html, report.json and (when asked and Chromium is there) report.pdf."""
    content = build_content(record, samples, table, selection, images, config)
    directory.mkdir(parents=True, exist_ok=True)
    html, numbers, pdf = (directory / name for name in ("report.html", "report.json", "report.pdf"))
    html.write_text(render_html(content), encoding="utf-8")
    numbers.write_text(json.dumps(content.numbers, indent=2))
    pdf_note = print_pdf(html, pdf) if config.pdf else "report.pdf not asked for (report.pdf: false)"
    if pdf_note is not None and config.pdf:
        logger.warning("no report.pdf: %s", pdf_note)
    return ReportFiles(
        html=str(html), json_path=str(numbers), pdf=None if pdf_note else str(pdf), pdf_note=pdf_note
    )
