"""Nearest-neighbour distances in tiles of rows and columns: memory stays bounded, never N x N."""

from __future__ import annotations

from typing import Any

import numpy as np

# Columns compared at once.
BLOCK = 1024

# Rows compared at once with a block of columns: a distance tile is at most 64 MB, however
# many rows there are (an N x BLOCK block was 2.7 GB at 250,000 rows).
ROW_TILE = 16_384

# Rows up to which density (TYPICALITY) is exact: 20,000^2 distances take seconds.
EXACT_KNN_ROWS = 20_000

# Cells of the inverted-file index each row's neighbours are searched in beyond that: on
# 100,000 clustered 128-d rows (benchmarks/typicality.py) 16 cells gave the exact search's
# 1,000 most typical rows, at a median error of 2.4% in the mean distance, 30x faster.
IVF_PROBES = 16

# faiss wants at least 39 rows a cell to train its k-means.
FAISS_ROWS_PER_CELL = 39

# Row x chosen pairs from which squared_distance_to_set searches through an index: exactly,
# 100,000 new rows against 100,000 earlier picks (a 10 M pool's 1%) take 22 s on 2 cores.
INDEXED_PAIRS = 2_000_000_000

# Cells of that index searched a row. At 64 of the 1,264 cells over 100,000 earlier picks,
# every one of 99,000 rows found its exact nearest pick (16: 98.7%), in 9 s with the build
# (benchmarks/scale.py's data); a miss would only overstate a distance.
SET_PROBES = 64


def squared_distance_to_set(
    x: np.ndarray, squared_norms: np.ndarray, chosen: np.ndarray, indexed_from: int = INDEXED_PAIRS
) -> np.ndarray:
    """Each row's squared Euclidean distance to its nearest row of `chosen`.

    Exact in tiles below `indexed_from` row x chosen pairs, through an IVF index over `chosen`
    from there (indexed_squared_distance_to_set).
    Shape: x (N, D), squared_norms (N,), chosen (M, D) -> (N,)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) * len(chosen) >= indexed_from and len(chosen) >= 2 * FAISS_ROWS_PER_CELL:
        return indexed_squared_distance_to_set(x, squared_norms, np.ascontiguousarray(chosen, np.float32))
    # min_j |x - c_j|^2 = |x|^2 + min_j (|c_j|^2 - 2 x.c_j): the row's own norm is added once,
    # after the minimum, and each tile is computed in one buffer. Half the time of building
    # the full expression (23 s against 47 s for 100,000 x 100,000 at 128-d, 2 cores), which
    # is memory traffic, not arithmetic.
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    buffer = np.empty((min(len(x), ROW_TILE), BLOCK), dtype=np.float32)
    for start in range(0, len(chosen), BLOCK):
        block = np.ascontiguousarray(chosen[start : start + BLOCK], dtype=np.float32)
        block_norms = np.einsum("ij,ij->i", block, block)
        for row in range(0, len(x), ROW_TILE):
            tile = slice(row, row + ROW_TILE)
            partial = buffer[: len(x[tile]), : len(block)]
            np.matmul(x[tile], block.T, out=partial)
            partial *= -2.0
            partial += block_norms[None, :]
            np.minimum(nearest[tile], partial.min(axis=1), out=nearest[tile])
    return nearest + squared_norms.astype(np.float32)


def indexed_squared_distance_to_set(
    x: np.ndarray, squared_norms: np.ndarray, chosen: np.ndarray
) -> np.ndarray:
    """squared_distance_to_set through faiss's IVF-Flat index over `chosen` (seeded, 4 sqrt(M) cells).

    A row whose probed cells hold no row of `chosen` is measured exactly.
    Shape: x (N, D) float32, squared_norms (N,), chosen (M, D) float32 -> (N,)
    """
    index = ivf_index(chosen, seed=0)
    index.nprobe = min(SET_PROBES, index.nlist)
    squared, nearest = index.search(x, 1)
    result = np.maximum(squared[:, 0], 0.0).astype(np.float32)
    unmatched = np.flatnonzero(nearest[:, 0] < 0)
    if len(unmatched):
        exactly = len(x) * len(chosen) + 1
        result[unmatched] = squared_distance_to_set(x[unmatched], squared_norms[unmatched], chosen, exactly)
    return result


def ivf_index(rows: np.ndarray, seed: int) -> Any:
    """Faiss's IVF-Flat index (L2) over `rows`, trained and filled: 4 sqrt(N) k-means cells, seeded.

    Unlike a graph index its answers do not depend on the order of parallel inserts, so a run
    is reproducible. Shape: rows (N, D) float32
    """
    # Imported here: only large sets need faiss and its OpenMP runtime.
    import faiss

    count, dim = rows.shape
    cells = max(1, min(int(4 * np.sqrt(count)), count // FAISS_ROWS_PER_CELL))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, cells)
    index.cp.seed = seed
    index.train(rows)
    index.add(rows)
    return index


def nearest_other_distances(x: np.ndarray) -> np.ndarray:
    """Each row's Euclidean distance to its nearest other row (inf for a single row).

    Shape: (N, D) -> (N,)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", x, x)
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    for start in range(0, len(x), BLOCK):
        block = x[start : start + BLOCK]
        block_norms = squared_norms[start : start + BLOCK]
        for row in range(0, len(x), ROW_TILE):
            tile = slice(row, row + ROW_TILE)
            squared = squared_norms[tile, None] - 2.0 * (x[tile] @ block.T) + block_norms[None, :]
            # A row is not its own neighbour: the rows both in this tile and in the block.
            both = np.arange(max(start, row), min(start + len(block), row + ROW_TILE))
            squared[both - row, both - start] = np.inf
            np.minimum(nearest[tile], squared.min(axis=1), out=nearest[tile])
    return np.sqrt(np.maximum(nearest, 0.0))


def mean_knn_distance(
    x: np.ndarray,
    k: int,
    exact_rows: int = EXACT_KNN_ROWS,
    seed: int = 0,
    outside: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's mean Euclidean distance to its k nearest other rows (fewer when there are not k others).

    `outside` adds squared distances to neighbours beyond `x` (the datapool's samples): each
    row's k nearest are then taken among both. Shape: x (N, D), outside (N, m) -> (N,)
    """
    squared = knn_squared_distances(x, k, exact_rows, seed)
    if outside is not None:
        squared = np.sort(np.concatenate([squared, outside.astype(np.float32)], axis=1), axis=1)[:, :k]
    distances = np.sqrt(np.maximum(squared, 0.0))
    found = np.isfinite(distances)
    total = np.where(found, distances, 0.0).sum(axis=1)
    return (total / np.maximum(found.sum(axis=1), 1)).astype(np.float32)


def knn_squared_distances(
    x: np.ndarray, k: int, exact_rows: int = EXACT_KNN_ROWS, seed: int = 0
) -> np.ndarray:
    """Each row's squared Euclidean distances to its k nearest other rows, ascending (inf: none).

    Exact in blocks up to `exact_rows` rows, through an inverted-file index beyond
    (approximate_knn_squared_distances), so the cost grows as N sqrt(N), not N^2.
    Shape: (N, D) -> (N, k)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    count = len(x)
    result = np.full((count, k), np.inf, dtype=np.float32)
    found = min(k, count - 1)
    if found <= 0:
        return result
    if count > exact_rows:
        result[:, :found] = approximate_knn_squared_distances(x, found, seed)
        return result
    squared_norms = np.einsum("ij,ij->i", x, x)
    for start in range(0, count, BLOCK):
        stop = min(start + BLOCK, count)
        squared = squared_norms[start:stop, None] - 2.0 * (x[start:stop] @ x.T) + squared_norms[None, :]
        rows = np.arange(start, stop)
        squared[rows - start, rows] = np.inf  # a row is not its own neighbour
        nearest = np.partition(squared, found - 1, axis=1)[:, :found]
        result[start:stop, :found] = np.sort(np.maximum(nearest, 0.0), axis=1)
    return result


def approximate_knn_squared_distances(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """knn_squared_distances through faiss's IVF-Flat index.

    Each row's neighbours are searched exactly in the IVF_PROBES cells (ivf_index) nearest to
    it. Shape: (N, D) float32 -> (N, k), inf where the probed cells held fewer than k others
    """
    count = len(x)
    index = ivf_index(x, seed)
    index.nprobe = min(IVF_PROBES, index.nlist)
    squared, neighbours = index.search(x, k + 1)
    # Drop each row itself (and any slot the probed cells could not fill), keep k.
    mine = (neighbours == np.arange(count)[:, None]) | (neighbours < 0)
    return np.sort(np.where(mine, np.inf, np.maximum(squared, 0.0)), axis=1)[:, :k].astype(np.float32)
