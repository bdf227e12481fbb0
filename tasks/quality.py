"""How good a selection is, measured against a random subset of the same size drawn from
the same pool, in every run (run.json's selection.quality):

- diversity: mean distance from each selected sample to its nearest other selected one
  (higher: the selection repeats itself less);
- coverage: 1 / (1 + mean distance from every sample of the pool to its nearest selected
  one) (higher: every sample has a selected sample close to it);
- balance, for each BALANCE key: the entropy of the selection's categories divided by
  log(number of categories in the pool) (1: every category equally often).

Distances are Euclidean between the unit embeddings, computed in blocks.
"""

from __future__ import annotations

import numpy as np

from tasks.distances import nearest_other_distances, squared_distance_to_set


def diversity(selected: np.ndarray) -> float | None:
    """Shape: (k, D) -> mean nearest-other distance; None for fewer than two samples."""
    if len(selected) < 2:
        return None
    return float(np.mean(nearest_other_distances(selected)))


def coverage(pool: np.ndarray, selected: np.ndarray) -> float | None:
    """Shape: pool (N, D), selected (k, D) -> 1 / (1 + mean nearest-selected distance)."""
    if len(selected) == 0 or len(pool) == 0:
        return None
    x = np.ascontiguousarray(pool, dtype=np.float32)
    squared = squared_distance_to_set(x, np.einsum("ij,ij->i", x, x), selected)
    return float(1.0 / (1.0 + np.mean(np.sqrt(np.maximum(squared, 0.0)))))


def balance(categories: np.ndarray, picks: np.ndarray) -> float | None:
    """Normalised entropy of the picks' categories; None when the pool has one category
    or nothing is picked. Shape: categories (N,), picks (k,)"""
    present = len(np.unique(categories))
    if present < 2 or len(picks) == 0:
        return None
    _, counts = np.unique(categories[picks], return_counts=True)
    shares = counts / counts.sum()
    return float(-(shares * np.log(shares)).sum() / np.log(present))


def measure(pool: np.ndarray, picks: np.ndarray, categories: dict[str, np.ndarray]) -> dict[str, object]:
    chosen = pool[picks]
    figures: dict[str, object] = {"diversity": diversity(chosen), "coverage": coverage(pool, chosen)}
    if categories:
        figures["balance"] = {key: balance(values, picks) for key, values in categories.items()}
    return figures


def selection_quality(
    pool: np.ndarray, picks: np.ndarray, seed: int, categories: dict[str, np.ndarray] | None = None
) -> dict[str, object]:
    """The selection's figures beside those of a seeded random subset of the same size.
    Shape: pool (N, D), picks (k,) indices into pool, categories {BALANCE key: (N,)}."""
    categories = categories or {}
    random_picks = np.random.default_rng(seed).choice(len(pool), size=len(picks), replace=False)
    return {
        "selected": measure(pool, picks, categories),
        "random": measure(pool, random_picks, categories),
        "random_seed": seed,
    }
