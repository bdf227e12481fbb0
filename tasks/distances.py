"""Nearest-neighbour distances in blocks: memory stays O(N * block), never N x N."""

from __future__ import annotations

import numpy as np

# Rows compared at once: bounds the (N, BLOCK) distance matrix (N x 1024 x 4 bytes).
BLOCK = 1024
# Rows that density (TYPICALITY) is measured against: all of them up to this many, a
# seeded sample beyond, so the cost grows as N, not N^2.
REFERENCE_ROWS = 20_000


def squared_distance_to_set(x: np.ndarray, squared_norms: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Each row's squared Euclidean distance to its nearest row of `chosen`.
    Shape: x (N, D), squared_norms (N,), chosen (M, D) -> (N,)"""
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    for start in range(0, len(chosen), BLOCK):
        block = np.ascontiguousarray(chosen[start : start + BLOCK], dtype=np.float32)
        block_norms = np.einsum("ij,ij->i", block, block)
        squared = squared_norms[:, None] - 2.0 * (x @ block.T) + block_norms[None, :]
        np.minimum(nearest, squared.min(axis=1), out=nearest)
    return nearest


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


def mean_knn_distance(
    x: np.ndarray, k: int, max_reference: int = REFERENCE_ROWS, seed: int = 0
) -> np.ndarray:
    """Each row's mean Euclidean distance to its k nearest other rows (fewer when there
    are not k others), among all rows, or among `max_reference` seeded random rows when
    there are more: that keeps the cost O(N * max_reference) and still ranks rows by
    density (the k nearest of a 1/r sample stand for about the k*r nearest of all).
    Shape: (N, D) -> (N,)"""
    x = np.ascontiguousarray(x, dtype=np.float32)
    count = len(x)
    if count <= max_reference:
        reference_rows = np.arange(count)
    else:
        reference_rows = np.sort(np.random.default_rng(seed).choice(count, max_reference, replace=False))
    reference = x[reference_rows]
    k = min(k, len(reference) - 1)
    if k <= 0:
        return np.zeros(count, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", x, x)
    reference_norms = squared_norms[reference_rows]
    # Where each row sits in the reference (-1: not in it), so it is not its own neighbour.
    slot = np.full(count, -1, dtype=np.int64)
    slot[reference_rows] = np.arange(len(reference_rows))
    result = np.empty(count, dtype=np.float32)
    for start in range(0, count, BLOCK):
        stop = min(start + BLOCK, count)
        squared = (
            squared_norms[start:stop, None] - 2.0 * (x[start:stop] @ reference.T) + reference_norms[None, :]
        )
        own = slot[start:stop]
        inside = np.flatnonzero(own >= 0)
        squared[inside, own[inside]] = np.inf
        nearest = np.partition(squared, k - 1, axis=1)[:, :k]
        result[start:stop] = np.sqrt(np.maximum(nearest, 0.0)).mean(axis=1)
    return result
