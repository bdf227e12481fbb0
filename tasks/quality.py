"""How good a selection is, measured against a random subset of the same size drawn from
the same pool, in every run (run.json's selection.quality):

- diversity: mean distance from each selected sample to its nearest other selected one
  (higher: the selection repeats itself less);
- coverage: 1 / (1 + mean distance from every sample of the pool to its nearest selected
  one) (higher: every sample has a selected sample close to it);
- balance: how evenly the pool falls to the selected samples when each sample goes to its
  nearest one, as the normalised entropy of those shares (1: every selected sample stands
  for as many samples; near 0: a few stand for almost all). Greedy k-center also picks
  outliers, which stand for few samples, so its balance is usually below random's.

Distances are Euclidean between the unit embeddings, computed in blocks.
"""

from __future__ import annotations

import numpy as np

from tasks.distances import nearest_in_set, nearest_other_distances, squared_distance_to_set


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


def balance(pool: np.ndarray, selected: np.ndarray) -> float | None:
    """Shape: pool (N, D), selected (k, D) -> normalised entropy (0-1) of the shares of the
    pool nearest to each selected sample; None for fewer than two selected samples."""
    if len(selected) < 2 or len(pool) == 0:
        return None
    x = np.ascontiguousarray(pool, dtype=np.float32)
    _, nearest = nearest_in_set(x, np.einsum("ij,ij->i", x, x), selected)
    shares = np.bincount(nearest, minlength=len(selected)) / len(pool)
    shares = shares[shares > 0]
    return float(-(shares * np.log(shares)).sum() / np.log(len(selected)))


def measure(pool: np.ndarray, picks: np.ndarray) -> dict[str, float | None]:
    chosen = pool[picks]
    return {
        "diversity": diversity(chosen),
        "coverage": coverage(pool, chosen),
        "balance": balance(pool, chosen),
    }


def selection_quality(pool: np.ndarray, picks: np.ndarray, seed: int) -> dict[str, object]:
    """The selection's figures beside those of a seeded random subset of the same size.
    Shape: pool (N, D), picks (k,) indices into pool."""
    random_picks = np.random.default_rng(seed).choice(len(pool), size=len(picks), replace=False)
    return {"selected": measure(pool, picks), "random": measure(pool, random_picks), "random_seed": seed}
