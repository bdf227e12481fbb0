"""Nearest-neighbour distances in tiles of rows and columns: memory stays bounded, never N x N."""

from __future__ import annotations

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


def squared_distance_to_set(x: np.ndarray, squared_norms: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Each row's squared Euclidean distance to its nearest row of `chosen`.

    Shape: x (N, D), squared_norms (N,), chosen (M, D) -> (N,)
    """
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    for start in range(0, len(chosen), BLOCK):
        block = np.ascontiguousarray(chosen[start : start + BLOCK], dtype=np.float32)
        block_norms = np.einsum("ij,ij->i", block, block)
        for row in range(0, len(x), ROW_TILE):
            tile = slice(row, row + ROW_TILE)
            squared = squared_norms[tile, None] - 2.0 * (x[tile] @ block.T) + block_norms[None, :]
            np.minimum(nearest[tile], squared.min(axis=1), out=nearest[tile])
    return nearest


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


def mean_knn_distance(x: np.ndarray, k: int, exact_rows: int = EXACT_KNN_ROWS, seed: int = 0) -> np.ndarray:
    """Each row's mean Euclidean distance to its k nearest other rows (fewer when there are not k others).

    Exact in blocks up to `exact_rows` rows, through an inverted-file index beyond
    (approximate_mean_knn_distance), so the cost grows as N sqrt(N), not N^2.
    Shape: (N, D) -> (N,)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    count = len(x)
    k = min(k, count - 1)
    if k <= 0:
        return np.zeros(count, dtype=np.float32)
    if count > exact_rows:
        return approximate_mean_knn_distance(x, k, seed)
    squared_norms = np.einsum("ij,ij->i", x, x)
    result = np.empty(count, dtype=np.float32)
    for start in range(0, count, BLOCK):
        stop = min(start + BLOCK, count)
        squared = squared_norms[start:stop, None] - 2.0 * (x[start:stop] @ x.T) + squared_norms[None, :]
        rows = np.arange(start, stop)
        squared[rows - start, rows] = np.inf  # a row is not its own neighbour
        nearest = np.partition(squared, k - 1, axis=1)[:, :k]
        result[start:stop] = np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1)
    return result


def approximate_mean_knn_distance(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """mean_knn_distance through faiss's IVF-Flat index.

    K-means cells (4 sqrt(N), seeded), each row's neighbours searched exactly in the IVF_PROBES
    cells nearest to it. Unlike a graph index its answer does not depend on the order of parallel
    inserts, so a run is reproducible. Shape: (N, D) float32 -> (N,)
    """
    # Imported here: only pools past EXACT_KNN_ROWS need faiss and its OpenMP runtime.
    import faiss

    count, dim = x.shape
    # faiss wants at least 39 rows a cell to train its k-means.
    cells = max(1, min(int(4 * np.sqrt(count)), count // 39))
    index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, cells)
    index.cp.seed = seed
    index.train(x)
    index.add(x)
    index.nprobe = min(IVF_PROBES, cells)
    squared, neighbours = index.search(x, k + 1)
    # Drop each row itself (and any slot the probed cells could not fill), keep k.
    mine = (neighbours == np.arange(count)[:, None]) | (neighbours < 0)
    squared = np.sort(np.where(mine, np.inf, squared), axis=1)[:, :k]
    distances = np.sqrt(np.maximum(squared, 0.0))
    found = np.isfinite(distances)
    return (np.where(found, distances, 0.0).sum(axis=1) / np.maximum(found.sum(axis=1), 1)).astype(np.float32)
