"""Nearest-neighbour distances in blocks: memory stays O(N * block), never N x N."""

from __future__ import annotations

import numpy as np

# Rows compared at once: bounds the (N, BLOCK) distance matrix (N x 1024 x 4 bytes).
BLOCK = 1024


def squared_distance_to_set(x: np.ndarray, squared_norms: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Each row's squared Euclidean distance to its nearest row of `chosen`.
    Shape: x (N, D), squared_norms (N,), chosen (M, D) -> (N,)"""
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    for start in range(0, len(chosen), BLOCK):
        np.minimum(nearest, _squared_to_block(x, squared_norms, chosen, start).min(axis=1), out=nearest)
    return nearest


def nearest_in_set(
    x: np.ndarray, squared_norms: np.ndarray, chosen: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's squared Euclidean distance to its nearest row of `chosen`, and that row.
    Shape: x (N, D), squared_norms (N,), chosen (M, D) -> (N,) float32, (N,) int64"""
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    index = np.zeros(len(x), dtype=np.int64)
    rows = np.arange(len(x))
    for start in range(0, len(chosen), BLOCK):
        squared = _squared_to_block(x, squared_norms, chosen, start)
        block_index = squared.argmin(axis=1)
        block_nearest = squared[rows, block_index]
        closer = block_nearest < nearest
        nearest[closer], index[closer] = block_nearest[closer], block_index[closer] + start
    return nearest, index


def _squared_to_block(x: np.ndarray, squared_norms: np.ndarray, chosen: np.ndarray, start: int) -> np.ndarray:
    """Squared distances from every row to rows start..start+BLOCK of `chosen`. Shape: (N, <=BLOCK)"""
    block = np.ascontiguousarray(chosen[start : start + BLOCK], dtype=np.float32)
    block_norms = np.einsum("ij,ij->i", block, block)
    return np.asarray(squared_norms[:, None] - 2.0 * (x @ block.T) + block_norms[None, :])


def nearest_other_distances(x: np.ndarray) -> np.ndarray:
    """Each row's Euclidean distance to its nearest other row (inf for a single row).
    Shape: (N, D) -> (N,)"""
    x = np.ascontiguousarray(x, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", x, x)
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    for start in range(0, len(x), BLOCK):
        block = x[start : start + BLOCK]
        squared = squared_norms[:, None] - 2.0 * (x @ block.T) + squared_norms[start : start + BLOCK][None, :]
        rows = np.arange(start, start + len(block))
        squared[rows, rows - start] = np.inf  # a row is not its own neighbour
        np.minimum(nearest, squared.min(axis=1), out=nearest)
    return np.sqrt(np.maximum(nearest, 0.0))


def mean_knn_distance(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's mean Euclidean distance to its k nearest other rows (fewer when there
    are not k others). Shape: (N, D) -> (N,)"""
    x = np.ascontiguousarray(x, dtype=np.float32)
    k = min(k, len(x) - 1)
    if k <= 0:
        return np.zeros(len(x), dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", x, x)
    result = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), BLOCK):
        stop = min(start + BLOCK, len(x))
        squared = squared_norms[start:stop, None] - 2.0 * (x[start:stop] @ x.T) + squared_norms[None, :]
        squared[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        nearest = np.partition(squared, k - 1, axis=1)[:, :k]
        result[start:stop] = np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1)
    return result
