"""Near duplicates: samples whose embeddings are closer than a cosine distance to an earlier sample's.

One representative of each group is kept (the datapool's samples come
first, then this run's in id order); each removed sample records which one it duplicates.

Pairs are found in blocks of rows against the rows before them, never all pairs at once.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.records.embeddings import EmbeddingTable, read_embeddings, write_embedding_table
from tasks.records.manifest import manifest_vectors
from tasks.records.plan import RunPlan
from tasks.records.samples import SampleTable, count_statuses, mark_duplicates
from tasks.selection.distances import BLOCK


def earlier_neighbours(x: np.ndarray, threshold: float) -> list[list[tuple[int, float]]]:
    """For each row, the earlier rows within cosine distance `threshold`, nearest first.

    Shape: x (N, D) unit rows -> N lists of (row, distance)
    """
    found: list[list[tuple[int, float]]] = [[] for _ in range(len(x))]
    x = np.ascontiguousarray(x, dtype=np.float32)
    for start in range(0, len(x), BLOCK):
        stop = min(start + BLOCK, len(x))
        # Similarities, not distances: one pass over the (block, stop) matrix fewer.
        similar = x[start:stop] @ x[:stop].T
        rows, columns = np.nonzero(similar > 1.0 - threshold)
        for row, column in zip(rows.tolist(), columns.tolist(), strict=True):
            if column < start + row:  # only rows before it
                found[start + row].append((column, 1.0 - float(similar[row, column])))
    return [sorted(pairs, key=lambda pair: pair[1]) for pairs in found]


def find_near_duplicates(
    ids: list[str], x: np.ndarray, threshold: float, earlier_ids: list[str], earlier: np.ndarray
) -> dict[str, tuple[str, float]]:
    """{removed id: (the kept id it duplicates, cosine distance)}.

    Samples of `earlier` (the datapool's, kept already) are representatives; then, in order, a
    sample is kept unless an earlier kept sample is within `threshold`. Shape: x (N, D), earlier (M, D)
    """
    everything = np.concatenate([earlier.reshape(-1, x.shape[1]), x]) if len(earlier) else x
    names = earlier_ids + ids
    kept = [True] * len(earlier_ids) + [False] * len(ids)
    removed: dict[str, tuple[str, float]] = {}
    for index, neighbours in enumerate(earlier_neighbours(everything, threshold)):
        if index < len(earlier_ids):
            continue
        representative = next(((j, d) for j, d in neighbours if kept[j]), None)
        if representative is None:
            kept[index] = True
        else:
            removed[names[index]] = (names[representative[0]], representative[1])
    return removed


def mark_near_duplicates(
    samples: SampleTable, table: EmbeddingTable, removed: dict[str, tuple[str, float]], directory: Path
) -> tuple[SampleTable, EmbeddingTable]:
    """Samples with the removed ones marked duplicates, and embeddings without them."""
    near = {
        sample_id: (original, f"near duplicate of {original} (cosine distance {distance:.4f})")
        for sample_id, (original, distance) in removed.items()
    }
    rows = mark_duplicates(pq.read_table(samples.path), near)
    directory.mkdir(parents=True, exist_ok=True)
    samples_path = directory / "samples.parquet"
    pq.write_table(rows, samples_path)
    ids, vectors = read_embeddings(table)
    keep = np.array([i not in removed for i in ids], dtype=bool)
    kept_table = write_embedding_table(
        [i for i, k in zip(ids, keep, strict=True) if k], vectors[keep], directory / "embeddings.parquet"
    )
    return samples.model_copy(update={"path": str(samples_path), **count_statuses(rows)}), kept_table


def remove_near_duplicates_of_pool(
    samples: SampleTable, table: EmbeddingTable, threshold: float, run_plan: RunPlan, directory: Path
) -> tuple[SampleTable, EmbeddingTable]:
    """Remove this run's near duplicates of the datapool's clean samples or of each other.

    The samples come back with them marked duplicates, the embeddings without them (both
    written into `directory`).
    """
    ids, vectors = read_embeddings(table)
    kept = pq.read_table(run_plan.kept_manifest)
    # Only the datapool's clean samples have embeddings: they are the earlier representatives.
    earlier_ids, earlier = manifest_vectors(kept, set(kept["id"].to_pylist()))
    removed = find_near_duplicates(ids, vectors, threshold, earlier_ids, earlier)
    return mark_near_duplicates(samples, table, removed, directory)
