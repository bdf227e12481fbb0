"""The datapool's k most similar samples to each of this run's rows, segment by segment.

A segment with an index (tasks/selection/pool_index.py) is searched through it, the others
exactly, a record batch at a time and in tiles of rows and columns; a row counts unless a
later segment names its key (tasks/records/segments.py). The pool's embeddings are never all
in memory. It serves the near-duplicate check (k = 1) and TYPICALITY's density (k neighbours
among the pool as well as this run's rows).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.records.segments import keys_named_later, segment_batches
from tasks.selection.distances import BLOCK, ROW_TILE
from tasks.selection.pool_index import live_at, search_segment_index

# Rows an index returns beyond the k asked for: the spares stand in for rows that a later
# segment replaced. With one asked for (a near duplicate), 4 in all.
SPARES = 3


class PoolNeighbours(NamedTuple):
    """Each row's k most similar pool samples, most similar first."""

    names: np.ndarray  # (N, k) object: the samples' ids, None where there is none
    similarity: np.ndarray  # (N, k) float32 cosine similarity, -inf where there is none

    def squared_distances(self) -> np.ndarray:
        """The neighbours' squared Euclidean distances (unit vectors: 2 - 2 cos), inf where none."""
        finite = np.isfinite(self.similarity)
        return np.where(finite, np.maximum(2.0 - 2.0 * self.similarity, 0.0), np.inf).astype(np.float32)


def no_neighbours(count: int, k: int) -> PoolNeighbours:
    """The neighbours of `count` rows in an empty pool."""
    return PoolNeighbours(np.full((count, k), None, dtype=object), np.full((count, k), -np.inf, np.float32))


def most_similar(names: np.ndarray, similarity: np.ndarray, k: int) -> PoolNeighbours:
    """Each row's `k` most similar of the given columns; the earlier column on a tie.

    Shape: names, similarity (N, C) -> (N, k), padded with none where C < k.
    """
    if similarity.shape[1] < k:
        padding = no_neighbours(len(similarity), k - similarity.shape[1])
        names = np.concatenate([names, padding.names], axis=1)
        similarity = np.concatenate([similarity, padding.similarity], axis=1)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return PoolNeighbours(np.take_along_axis(names, order, 1), np.take_along_axis(similarity, order, 1))


def merged(current: PoolNeighbours, other: PoolNeighbours, k: int) -> PoolNeighbours:
    """The k most similar of two sets of neighbours (`current`'s on a tie: it came first)."""
    return most_similar(
        np.concatenate([current.names, other.names], axis=1),
        np.concatenate([current.similarity, other.similarity], axis=1),
        k,
    )


def block_candidates(similarity: np.ndarray, k: int) -> np.ndarray:
    """The columns holding each row's k most similar, in column order.

    Shape: (R, C) -> (R, min(k, C))
    """
    if similarity.shape[1] <= k:
        return np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape)
    if k == 1:
        return similarity.argmax(axis=1)[:, None]  # the first on a tie
    return np.sort(np.argpartition(-similarity, k - 1, axis=1)[:, :k], axis=1)


def exact_neighbours(x: np.ndarray, names: np.ndarray, vectors: np.ndarray, k: int) -> PoolNeighbours:
    """Each row's k most similar of `vectors` (named `names`), in tiles of ROW_TILE x BLOCK.

    Shape: x (N, D), names (M,), vectors (M, D) unit
    """
    found = no_neighbours(len(x), k)
    for start in range(0, len(vectors), BLOCK):
        block = vectors[start : start + BLOCK]
        for row in range(0, len(x), ROW_TILE):
            similar = x[row : row + ROW_TILE] @ block.T
            columns = block_candidates(similar, k)
            tile = PoolNeighbours(found.names[row : row + ROW_TILE], found.similarity[row : row + ROW_TILE])
            best = merged(
                tile,
                PoolNeighbours(names[start + columns], np.take_along_axis(similar, columns, 1)),
                k,
            )
            found.names[row : row + ROW_TILE], found.similarity[row : row + ROW_TILE] = best
    return found


def segment_neighbours(x: np.ndarray, segment: str, replaced: pa.Array, k: int) -> PoolNeighbours:
    """Each row's k most similar live samples of one segment, exactly, a record batch at a time."""
    found = no_neighbours(len(x), k)
    for batch in segment_batches(segment, ["id", "key", "embedding"]):
        live = pc.and_(
            batch.column("embedding").is_valid(), pc.invert(pc.is_in(batch.column("key"), replaced))
        )
        rows = batch.filter(live)
        if rows.num_rows:
            flat = rows.column("embedding").flatten().to_numpy(zero_copy_only=False)
            vectors = np.ascontiguousarray(flat.reshape(rows.num_rows, -1), dtype=np.float32)
            names = np.array(rows.column("id").to_pylist(), dtype=object)
            found = merged(found, exact_neighbours(x, names, vectors, k), k)
    return found


def indexed_neighbours(x: np.ndarray, segment: str, replaced: pa.Array, index: str, k: int) -> PoolNeighbours:
    """Each row's k most similar live samples of one segment, through the segment's index.

    The index's k + SPARES nearest are checked for whether they still count.
    """
    positions, similarities = search_segment_index(index, x, k + SPARES)
    names, live = live_at(segment, replaced, positions)
    similarity = np.where(live, similarities, -np.inf).astype(np.float32)
    return most_similar(np.array(names, dtype=object).reshape(positions.shape), similarity, k)


def pool_neighbours(
    x: np.ndarray, segments: list[str], indexes: list[str | None] | None, k: int
) -> PoolNeighbours:
    """Each row's k most similar clean samples of the pool that `segments` (oldest first) fold into.

    `indexes` is aligned with the segments (None, or missing at the end: searched exactly).
    On a tie the older segment's sample comes first. Shape: x (N, D) unit
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    indexes = [*(indexes or []), *[None] * len(segments)][: len(segments)]
    found = no_neighbours(len(x), k)
    for segment, replaced, index in zip(segments, keys_named_later(segments), indexes, strict=True):
        own = (
            segment_neighbours(x, segment, replaced, k)
            if index is None
            else indexed_neighbours(x, segment, replaced, index, k)
        )
        found = merged(found, own, k)
    return found
