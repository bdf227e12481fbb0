"""The run report's data: its numbers and the seeded subsamples the plots and galleries draw.

The numbers (report.json) are taken from the run record. Pure: no Prefect, no plotting.

Every number the run record holds (counts, timings, model, datapool, selection quality)
is copied from it, never recomputed, so report.json and run.json cannot disagree. What the
record does not hold (corrupt reasons by kind, exact versus near duplicates, distances for
the plots) comes from the run's samples and embeddings tables.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.records.run import RunRecord
from tasks.records.samples import KIND_FRAME, STATUS_CORRUPT, STATUS_DUPLICATE, STATUS_OK
from tasks.selection.distances import nearest_other_distances
from tasks.selection.quality import FIGURES

# Nearest-neighbour distances within a set are quadratic in its size: the histograms use a
# seeded subsample of at most this many (25 GFLOP at 128-d, under a second on 2 cores).
MAX_NEIGHBOUR_ROWS = 10_000

# Metadata the report plots for all samples versus the selected ones.
PLOTTED_METADATA = ("luminance", "sharpness", "megapixels")


def embedded_per_second(record: RunRecord) -> float | None:
    """Images embedded per second of the embed stage.

    Where embedding overlapped inspection (`overlapped_stages`), per second of the two
    together, as decoding set the pace.
    """
    stages = record.overlapped_stages or ["embed"]
    seconds = sum(record.timings.get(stage, 0.0) for stage in stages)
    return round(record.counts.embedded / seconds, 2) if seconds else None


def headline_numbers(record: RunRecord) -> dict[str, Any]:
    """The run record's numbers as report.json holds them, and throughputs derived from them."""
    sections = record.model_dump(mode="json", include={"counts", "timings", "model", "datapool", "selection"})
    return {
        "run_id": record.run_id,
        "status": record.status,
        "source": record.source,
        "output": record.output,
        "started_at": record.started_at,
        "counts": sections["counts"],
        "timings": sections["timings"],
        "throughput": {
            "seconds_until_selected": round(sum(record.timings.values()), 3),
            "embedded_per_second": embedded_per_second(record),
        },
        "model": sections["model"],
        "datapool": sections["datapool"],
        "selection": sections["selection"],
        "telemetry": dict(record.telemetry),
    }


def reason_kind(reason: str) -> str:
    """The kind of a corrupt or duplicate reason: its text before the first ':' or ' of '.

    'truncated file: ...' -> 'truncated file', 'near duplicate of x (...)' -> 'near duplicate'.
    """
    return reason.split(":", 1)[0].split(" of ", 1)[0].strip()


def status_reasons(samples: pa.Table, status: str) -> dict[str, int]:
    """How many samples of `status` there are of each reason kind, most common first."""
    kinds = Counter(
        reason_kind(reason or "")
        for row_status, reason in zip(
            samples["status"].to_pylist(), samples["reason"].to_pylist(), strict=True
        )
        if row_status == status
    )
    return dict(kinds.most_common())


def sample_breakdown(samples: pa.Table) -> dict[str, dict[str, int]]:
    """Corrupt samples by reason kind, duplicates by kind (exact or near)."""
    return {
        "corrupt_reasons": status_reasons(samples, STATUS_CORRUPT),
        "duplicate_kinds": status_reasons(samples, STATUS_DUPLICATE),
    }


def subsample(count: int, keep: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Sorted row indices of a seeded subsample of at most `limit` of `count` rows.

    Every row of `keep` first (as many as fit), then random others. Shape: keep (k,) -> (<= limit,)
    """
    if count <= limit:
        return np.arange(count)
    rng = np.random.default_rng(seed)
    kept = np.unique(keep)
    if len(kept) >= limit:
        return np.sort(rng.choice(kept, size=limit, replace=False))
    others = np.setdiff1d(np.arange(count), kept, assume_unique=True)
    return np.sort(np.concatenate([kept, rng.choice(others, size=limit - len(kept), replace=False)]))


@dataclass(frozen=True)
class NeighbourDistances:
    """Each sample's distance to its nearest other sample within three sets, for the histograms.

    The sets: the pool (a subsample when large), the selection, and a seeded random subset of
    the selection's size. `pool_rows` are the pool subsample's row indices.
    """

    pool: np.ndarray
    pool_rows: np.ndarray
    selected: np.ndarray
    random: np.ndarray


def neighbour_distances(embeddings: np.ndarray, picks: np.ndarray, seed: int) -> NeighbourDistances:
    """Shape: embeddings (N, D), picks (k,) row indices -> distances of <= MAX_NEIGHBOUR_ROWS rows each."""
    rng = np.random.default_rng(seed)
    pool_rows = subsample(len(embeddings), np.empty(0, dtype=np.int64), MAX_NEIGHBOUR_ROWS, seed)
    chosen = (
        picks if len(picks) <= MAX_NEIGHBOUR_ROWS else rng.choice(picks, MAX_NEIGHBOUR_ROWS, replace=False)
    )
    random = rng.choice(len(embeddings), size=len(chosen), replace=False)

    def within(rows: np.ndarray) -> np.ndarray:
        return nearest_other_distances(embeddings[rows]) if len(rows) > 1 else np.empty(0, np.float32)

    return NeighbourDistances(within(pool_rows), pool_rows, within(np.sort(chosen)), within(random))


def pca_2d(x: np.ndarray) -> np.ndarray:
    """The first two principal components.

    Shape: (N, D) -> (N, 2)
    """
    centred = x.astype(np.float64) - x.mean(axis=0)
    # Eigenvectors of the D x D covariance: cheaper than an SVD of the N x D matrix.
    _, vectors = np.linalg.eigh(centred.T @ centred)
    return np.asarray(centred @ vectors[:, ::-1][:, :2], dtype=np.float32)


def embedding_map(x: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """A 2-D map of the rows: UMAP when the `umap` package is installed, PCA otherwise.

    Shape: (N, D) -> (N, 2), the method's name
    """
    if len(x) < 3 or x.shape[1] < 2:
        return np.zeros((len(x), 2), dtype=np.float32), "none"
    if importlib.util.find_spec("umap") is not None and len(x) > 15:
        import umap  # optional; not a dependency

        reducer = umap.UMAP(n_components=2, random_state=seed)
        return np.asarray(reducer.fit_transform(x), dtype=np.float32), "UMAP"
    return pca_2d(x), "PCA"


def metadata_values(samples: pa.Table) -> dict[str, np.ndarray]:
    """The plotted metadata of the clean (ok) samples, in samples order; megapixels from width x height."""
    ok = np.array([status == STATUS_OK for status in samples["status"].to_pylist()], dtype=bool)

    def column(name: str) -> np.ndarray:
        return np.array(samples[name].to_pylist(), dtype=np.float64)[ok]

    return {
        "luminance": column("luminance"),
        "sharpness": column("sharpness"),
        "megapixels": column("width") * column("height") / 1e6,
    }


def has_video_frames(samples: pa.Table) -> bool:
    """Whether any of the samples is a video frame."""
    return bool(pc.any(pc.equal(samples["kind"], KIND_FRAME)).as_py())


@dataclass(frozen=True)
class VideoTimeline:
    """One video's clean frames and selected frames, by timestamp, for the timeline plot."""

    video: str
    timestamps: np.ndarray  # every clean frame's timestamp, seconds
    selected: np.ndarray  # the selected frames' timestamps


def video_timelines(samples: pa.Table, selected_ids: set[str], limit: int) -> tuple[list[VideoTimeline], int]:
    """Per video (at most `limit`, most selected frames first), which of its clean frames were selected.

    Returns the timelines and how many videos there are in all.
    """
    frames: dict[str, list[tuple[float, bool]]] = {}
    for sample_id, kind, status, video, timestamp in zip(
        samples["id"].to_pylist(),
        samples["kind"].to_pylist(),
        samples["status"].to_pylist(),
        samples["key"].to_pylist(),  # a frame's key is its video's
        samples["timestamp_s"].to_pylist(),
        strict=True,
    ):
        if kind == KIND_FRAME and status == STATUS_OK and timestamp is not None:
            frames.setdefault(video, []).append((float(timestamp), sample_id in selected_ids))
    ordered = sorted(frames.items(), key=lambda item: (-sum(chosen for _, chosen in item[1]), item[0]))
    timelines = [
        VideoTimeline(
            video=video,
            timestamps=np.array([t for t, _ in rows], dtype=np.float64),
            selected=np.array([t for t, chosen in rows if chosen], dtype=np.float64),
        )
        for video, rows in ordered[:limit]
    ]
    return timelines, len(frames)


def quality_rows(quality: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(figure, the selection's value, the random baseline's mean, its std) for every figure.

    Only the figures both sides have.
    """
    chosen, random = quality["selected"], quality["random"]
    pairs = [(name, chosen[name], random[name]) for name in FIGURES]
    balances = chosen.get("balance", {}).items()
    pairs += [(f"balance of {key}", share, random["balance"][key]) for key, share in balances]
    return [
        (name, mine, baseline["mean"], baseline["std"])
        for name, mine, baseline in pairs
        if mine is not None and baseline is not None
    ]
