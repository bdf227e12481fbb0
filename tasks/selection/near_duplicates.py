"""Near duplicates: samples whose embeddings are closer than a cosine distance to an earlier sample's.

One representative of each group is kept (the datapool's samples come first, then this
run's in id order); each removed sample records which one it duplicates.

This run's rows are compared with the pool and with each other in tiles, keeping one best
match a row: never all pairs at once, and never the pool with itself.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tasks.records.embeddings import EmbeddingTable, read_embeddings, write_embedding_table
from tasks.records.plan import RunPlan
from tasks.records.samples import SampleTable, count_statuses, mark_duplicates
from tasks.records.segments import live_vectors
from tasks.selection.distances import BLOCK


def nearest_rows(
    rows: np.ndarray, columns: np.ndarray, allowed: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's most similar column (among the `allowed` ones), in tiles of BLOCK columns.

    The first column wins a tie. Shape: rows (R, D), columns (C, D) unit -> index (R,), similarity (R,)
    """
    best = np.full(len(rows), -1, dtype=np.int64)
    best_similarity = np.full(len(rows), -np.inf, dtype=np.float32)
    for start in range(0, len(columns), BLOCK):
        similar = rows @ columns[start : start + BLOCK].T
        if allowed is not None:
            similar[:, ~allowed[start : start + BLOCK]] = -np.inf
        column = similar.argmax(axis=1)
        value = similar[np.arange(len(rows)), column]
        better = value > best_similarity
        best[better], best_similarity[better] = start + column[better], value[better]
    return best, best_similarity


def find_near_duplicates(
    ids: list[str], x: np.ndarray, threshold: float, earlier_ids: list[str], earlier: np.ndarray
) -> dict[str, tuple[str, float]]:
    """{removed id: (the kept id it duplicates, cosine distance)}.

    Samples of `earlier` (the datapool's, kept already) are representatives; then, in order, a
    sample is kept unless a representative is within `threshold`, and is removed as a
    duplicate of the nearest one (the datapool's first on a tie). Only this run's rows are
    compared: with the pool, and with each other, in tiles, keeping one best match a row,
    so memory grows with the rows, never with the close pairs, and the pool is never
    compared with itself. Shape: x (N, D), earlier (M, D)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    pool = np.ascontiguousarray(earlier.reshape(-1, x.shape[1]), dtype=np.float32)
    best = np.full(len(x), -1, dtype=np.int64)  # a pool row (< M) or this run's row (M + i)
    best_similarity = np.full(len(x), -np.inf, dtype=np.float32)
    kept = np.zeros(len(x), dtype=bool)
    for start in range(0, len(x), BLOCK):
        rows = x[start : start + BLOCK]
        # Rows before this block: whether each was kept is already decided.
        candidates = [(pool, None, 0), (x[:start], kept[:start], len(pool))]
        for columns, allowed, offset in candidates:
            if len(columns):
                column, similarity = nearest_rows(rows, columns, allowed)
                better = similarity > best_similarity[start : start + len(rows)]
                best[start : start + len(rows)][better] = offset + column[better]
                best_similarity[start : start + len(rows)][better] = similarity[better]
        # Within the block, in order: a row counts once it is kept.
        similar = rows @ rows.T
        for row in range(len(rows)):
            index = start + row
            prior = np.where(kept[start:index], similar[row, :row], -np.inf)
            if row and prior.max() > best_similarity[index]:
                best[index], best_similarity[index] = len(pool) + start + int(prior.argmax()), prior.max()
            kept[index] = not best_similarity[index] > 1.0 - threshold
    names = earlier_ids + ids
    return {
        ids[i]: (names[int(best[i])], 1.0 - float(best_similarity[i])) for i in np.flatnonzero(~kept).tolist()
    }


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
    # Only the datapool's clean samples have embeddings: they are the earlier representatives.
    earlier_ids, earlier = live_vectors(run_plan.kept_segments)
    removed = find_near_duplicates(ids, vectors, threshold, earlier_ids, earlier)
    return mark_near_duplicates(samples, table, removed, directory)
