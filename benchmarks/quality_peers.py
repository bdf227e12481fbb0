"""Peer selectors and label metrics for the selection-quality benchmark.

winnow's selection is only as good as it is against what else a user could run, so the
benchmark puts it next to published selectors, each taken from its own package or paper:

- facility location (apricot-select): greedy maximisation of how well the picks cover
  every row, the classic submodular summary;
- FasterPAM (kmedoids): k-medoids, the picks minimise the summed distance to them;
- TypiClust (Hacohen, Dekel, Weinshall, ICML 2022): the most typical row of each k-means
  cluster, the cold-start selector of "Active Learning on a Budget";
- random picks, the floor.

Each takes L2-normalised embeddings (N, D) float32, a count n and a seed, and returns n
distinct row indices (int64). The metrics read the labels the benchmark's sets carry:
`one_nn_accuracy` asks how well the picks, once labelled, label the rest; `knn_accuracy`
asks how well an embedding keeps labels together at all, a ceiling for the picks.
"""

from __future__ import annotations

import numpy as np
from apricot import FacilityLocationSelection
from kmedoids import fasterpam as kmedoids_fasterpam
from sklearn.cluster import KMeans
from sklearn.metrics import euclidean_distances, pairwise_distances_argmin
from sklearn.neighbors import NearestNeighbors

# TypiClust's neighbourhood: typicality is read from each row's 20 nearest in its cluster.
TYPICALITY_NEIGHBOURS = 20
# Rows whose distances to all rows are held at once in knn_accuracy (N x BLOCK float32).
BLOCK = 1024


def facility_location(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """apricot's facility location on Euclidean distance (its similarity is the largest
    squared distance minus each squared distance), lazy greedy. The greedy is deterministic:
    `seed` is taken for a common signature and not used."""
    selector = FacilityLocationSelection(n, metric="euclidean", optimizer="lazy").fit(x)
    return np.asarray(selector.ranking, dtype=np.int64)


def fasterpam(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """FasterPAM k-medoids on the Euclidean distance matrix, from random medoids. One thread:
    by default the package switches to its parallel variant from 1,000 rows, with as many
    threads as cores, so the medoids could depend on the machine and not only on the seed."""
    result = kmedoids_fasterpam(euclidean_distances(x), n, init="random", random_state=seed, n_cpu=1)
    return np.asarray(result.medoids, dtype=np.int64)


def most_typical(points: np.ndarray) -> int:
    """The row of highest typicality, 1 / mean Euclidean distance to its min(20, rows - 1)
    nearest other rows; that is, of lowest mean distance (row 0 of a single row)."""
    k = min(TYPICALITY_NEIGHBOURS, len(points) - 1)
    if k == 0:
        return 0
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points)
    return int(distances[:, 1:].mean(axis=1).argmin())  # column 0: the row itself, at 0


def typiclust(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """TypiClust with no labels yet: k-means into n clusters, the most typical row of each."""
    clusters = KMeans(n_clusters=n, random_state=seed).fit_predict(x)
    picks = []
    for cluster in range(n):
        rows = np.flatnonzero(clusters == cluster)
        picks.append(rows[most_typical(x[rows])])
    return np.asarray(picks, dtype=np.int64)


def random_picks(count: int, n: int, seed: int) -> np.ndarray:
    """n distinct rows of `count`, uniformly at random."""
    return np.random.default_rng(seed).choice(count, size=n, replace=False).astype(np.int64)


def one_nn_accuracy(x: np.ndarray, labels: np.ndarray, picks: np.ndarray) -> float:
    """The share of unselected rows whose nearest pick (Euclidean) carries their label: how
    well the picks, once labelled, would label the rest."""
    unselected = np.setdiff1d(np.arange(len(x)), picks)
    nearest = pairwise_distances_argmin(x[unselected], x[picks])
    return float(np.mean(labels[picks][nearest] == labels[unselected]))


def knn_accuracy(x: np.ndarray, labels: np.ndarray, k: int = 5, block: int = BLOCK) -> float:
    """Leave-one-out k-nearest-neighbour accuracy: each row takes the label most of its k
    nearest other rows (Euclidean) carry, the nearest of the tied labels on a tie. Brute
    force, `block` rows at a time. Shape: x (N, D), labels (N,) str."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    _, codes = np.unique(labels, return_inverse=True)
    squared_norms = np.einsum("ij,ij->i", x, x)
    right = 0
    for start in range(0, len(x), block):
        stop = min(start + block, len(x))
        squared = squared_norms[start:stop, None] - 2.0 * (x[start:stop] @ x.T) + squared_norms[None, :]
        squared[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        nearest = np.argpartition(squared, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(squared, nearest, axis=1).argsort(axis=1, kind="stable")
        neighbour_codes = codes[np.take_along_axis(nearest, order, axis=1)]
        right += int(np.sum(majority(neighbour_codes) == codes[start:stop]))
    return right / len(x)


def majority(neighbour_codes: np.ndarray) -> np.ndarray:
    """Each row's most frequent code, the earliest (nearest) of the tied ones on a tie.
    Shape: (B, k) codes, nearest first -> (B,)"""
    votes = (neighbour_codes[:, :, None] == neighbour_codes[:, None, :]).sum(axis=2)
    return neighbour_codes[np.arange(len(neighbour_codes)), votes.argmax(axis=1)]
