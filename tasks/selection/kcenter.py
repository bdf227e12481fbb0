"""Greedy k-center (farthest-point) selection, in numpy on the CPU and in torch on a device."""

from __future__ import annotations

import numpy as np
import torch

from tasks.selection.distances import BLOCK, squared_distance_to_set


def kcenter_greedy(
    embeddings: np.ndarray,
    n: int,
    seed: int,
    min_distance: float | None = None,
    chosen: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pick up to `n` rows of `embeddings` by greedy k-center.

    Without `chosen`, the first pick is a seeded random row. With `chosen` (embeddings
    selected before, e.g. by earlier runs), they are the initial centers: every pick is
    the row farthest from them and from the picks before it. Stops early when the
    farthest remaining row is closer than `min_distance` to the selection.

    Shape: embeddings (N, D) float32, chosen (M, D) -> indices (k,), distances (k,) where
    distances[i] is pick i's Euclidean distance to the centers before it (inf for a
    seeded first pick).
    """
    count = len(embeddings)
    n = min(n, count)
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", x, x)
    picks = np.empty(n, dtype=np.int64)
    distances = np.empty(n, dtype=np.float32)
    if chosen is not None and len(chosen):
        nearest = squared_distance_to_set(x, squared_norms, chosen)  # squared distance to nearest center
        pick = int(np.argmax(nearest))
        distance = np.sqrt(max(float(nearest[pick]), 0.0))
        if min_distance is not None and distance < min_distance:
            return picks[:0], distances[:0]
    else:
        nearest = np.full(count, np.inf, dtype=np.float32)
        pick, distance = int(np.random.default_rng(seed).integers(count)), np.float32(np.inf)
    for i in range(n):
        picks[i], distances[i] = pick, distance
        squared = squared_norms - 2.0 * (x @ x[pick]) + squared_norms[pick]
        np.minimum(nearest, squared, out=nearest)
        nearest[pick] = -1.0  # never picked again
        if i + 1 == n:
            break
        pick = int(np.argmax(nearest))
        distance = np.sqrt(max(float(nearest[pick]), 0.0))
        if min_distance is not None and distance < min_distance:
            return picks[: i + 1], distances[: i + 1]
    return picks, distances


def squared_distance_to_set_torch(
    x: torch.Tensor, squared_norms: torch.Tensor, chosen: torch.Tensor
) -> torch.Tensor:
    """Each row's squared distance to its nearest row of `chosen`, in blocks of `chosen`.

    Shape: x (N, D), squared_norms (N,), chosen (M, D) -> (N,)
    """
    nearest = torch.full_like(squared_norms, float("inf"))
    for start in range(0, len(chosen), BLOCK):
        block = chosen[start : start + BLOCK]
        squared = squared_norms[:, None] - 2.0 * (x @ block.T) + (block * block).sum(dim=1)[None, :]
        torch.minimum(nearest, squared.min(dim=1).values, out=nearest)
    return nearest


def kcenter_greedy_torch(
    embeddings: np.ndarray,
    n: int,
    seed: int,
    device: str,
    min_distance: float | None = None,
    chosen: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """kcenter_greedy on `device` (e.g. 'cuda'); same arguments and results."""
    count = len(embeddings)
    n = min(n, count)
    if n <= 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    x = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32)).to(device)
    squared_norms = (x * x).sum(dim=1)
    picks = torch.empty(n, dtype=torch.int64, device=device)
    distances = torch.empty(n, dtype=torch.float32, device=device)
    if chosen is not None and len(chosen):
        centers = torch.from_numpy(np.ascontiguousarray(chosen, dtype=np.float32)).to(device)
        nearest = squared_distance_to_set_torch(x, squared_norms, centers)
        pick = torch.argmax(nearest).view(1)
        distance = nearest.index_select(0, pick).clamp_min(0.0).sqrt()
    else:
        nearest = torch.full((count,), float("inf"), device=device)
        first = int(np.random.default_rng(seed).integers(count))  # the numpy form's seeded first pick
        pick = torch.tensor([first], dtype=torch.int64, device=device)
        distance = torch.full((1,), float("inf"), device=device)
    for i in range(n):
        picks[i : i + 1] = pick
        distances[i : i + 1] = distance
        center = x.index_select(0, pick)  # (1, D)
        squared = squared_norms - 2.0 * (x @ center[0]) + squared_norms.index_select(0, pick)
        torch.minimum(nearest, squared, out=nearest)
        nearest.index_fill_(0, pick, -1.0)  # never picked again
        pick = torch.argmax(nearest).view(1)
        distance = nearest.index_select(0, pick).clamp_min(0.0).sqrt()
    picked, picked_distances = picks.cpu().numpy(), distances.cpu().numpy()
    if min_distance is not None:
        below = np.flatnonzero(picked_distances < min_distance)
        if len(below):
            return picked[: below[0]], picked_distances[: below[0]]
    return picked, picked_distances
