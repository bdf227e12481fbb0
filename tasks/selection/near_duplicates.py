"""Near duplicates: samples whose embeddings are closer than a cosine distance to an earlier sample's.

One representative of each group is kept (the datapool's samples come first, then this
run's in id order); each removed sample records which one it duplicates.

This run's rows are compared with the pool segment by segment (tasks/selection/pool_neighbours.py:
through a segment's index where it has one, exactly where it has not) and with each other
in tiles, keeping one best match a row: never all pairs at once, never the pool with
itself, and never every pool embedding in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow.parquet as pq

from tasks.records.embeddings import EmbeddingTable, read_embeddings, write_embedding_table
from tasks.records.plan import RunPlan
from tasks.records.samples import SampleTable, count_statuses, mark_duplicates
from tasks.selection.distances import BLOCK
from tasks.selection.pool_neighbours import PoolNeighbours, exact_neighbours, pool_neighbours


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


class PoolMatch(NamedTuple):
    """Each of this run's rows' most similar datapool sample: its id (None: no pool) and similarity."""

    names: list[str | None]
    similarity: np.ndarray  # (N,) float32, -inf where there is no pool sample


def as_match(nearest: PoolNeighbours) -> PoolMatch:
    """The first (most similar) of each row's pool neighbours."""
    return PoolMatch(nearest.names[:, 0].tolist(), nearest.similarity[:, 0])


def nearest_pool_match(x: np.ndarray, earlier_ids: list[str], earlier: np.ndarray) -> PoolMatch:
    """Each row's most similar row of `earlier` (the first on a tie), exactly.

    Shape: x (N, D), earlier (M, D)
    """
    vectors = np.ascontiguousarray(earlier.reshape(-1, x.shape[1]), np.float32)
    names = np.array(earlier_ids, dtype=object)
    return as_match(exact_neighbours(np.ascontiguousarray(x, np.float32), names, vectors, 1))


def find_near_duplicates(
    ids: list[str], x: np.ndarray, threshold: float, earlier_ids: list[str], earlier: np.ndarray
) -> dict[str, tuple[str, float]]:
    """{removed id: (the kept id it duplicates, cosine distance)}, the pool given as rows in memory.

    See near_duplicates_given. Shape: x (N, D), earlier (M, D)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    return near_duplicates_given(ids, x, threshold, nearest_pool_match(x, earlier_ids, earlier))


def near_duplicates_given(
    ids: list[str], x: np.ndarray, threshold: float, pool: PoolMatch
) -> dict[str, tuple[str, float]]:
    """{removed id: (the kept id it duplicates, cosine distance)}, given each row's best pool match.

    The datapool's samples (kept already) are representatives; then, in order, a sample is
    kept unless a representative is within `threshold`, and is removed as a duplicate of the
    nearest one (the datapool's on a tie). This run's rows are compared with each other in
    tiles, keeping one best match a row, so memory grows with the rows, never with the close
    pairs. Shape: x (N, D) unit
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    best = np.full(len(x), -1, dtype=np.int64)  # this run's row it matches best (-1: the pool's)
    best_similarity = pool.similarity.astype(np.float32, copy=True)
    kept = np.zeros(len(x), dtype=bool)
    for start in range(0, len(x), BLOCK):
        rows = x[start : start + BLOCK]
        # Rows before this block: whether each was kept is already decided.
        if start:
            column, similarity = nearest_rows(rows, x[:start], kept[:start])
            better = similarity > best_similarity[start : start + len(rows)]
            best[start : start + len(rows)][better] = column[better]
            best_similarity[start : start + len(rows)][better] = similarity[better]
        # Within the block, in order: a row counts once it is kept.
        similar = rows @ rows.T
        for row in range(len(rows)):
            index = start + row
            prior = np.where(kept[start:index], similar[row, :row], -np.inf)
            if row and prior.max() > best_similarity[index]:
                best[index], best_similarity[index] = start + int(prior.argmax()), prior.max()
            kept[index] = not best_similarity[index] > 1.0 - threshold
    return {
        ids[i]: (ids[int(best[i])] if best[i] >= 0 else str(pool.names[i]), 1.0 - float(best_similarity[i]))
        for i in np.flatnonzero(~kept).tolist()
    }


def pool_match(x: np.ndarray, segments: list[str], indexes: list[str | None] | None = None) -> PoolMatch:
    """Each row's most similar clean sample of the pool that `segments` fold into (pool_neighbours).

    A segment with an index (`indexes`, aligned with the segments; None: none) is searched
    through it, the others exactly.
    """
    return as_match(pool_neighbours(x, segments, indexes, 1))


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
    match = pool_match(vectors, run_plan.kept_segments, run_plan.pool_indexes)
    removed = near_duplicates_given(ids, vectors, threshold, match)
    return mark_near_duplicates(samples, table, removed, directory)
