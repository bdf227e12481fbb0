"""Selection quality figures: right on small sets, and k-center beats random on clusters."""

import numpy as np
import pytest

from tasks.distances import BLOCK, nearest_in_set, nearest_other_distances
from tasks.quality import balance, coverage, diversity, selection_quality
from tasks.select import kcenter_greedy


def test_nearest_other_distances_match_brute_force_across_blocks() -> None:
    x = np.random.default_rng(0).normal(size=(BLOCK + 37, 8)).astype(np.float32)
    brute = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(brute, np.inf)
    np.testing.assert_allclose(nearest_other_distances(x), brute.min(axis=1), rtol=1e-4, atol=1e-3)


def test_figures_on_points_whose_answer_is_known() -> None:
    square = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    assert diversity(square) == pytest.approx(1.0)
    assert coverage(square, square) == pytest.approx(1.0)  # every point is selected
    assert coverage(square, square[:1]) == pytest.approx(1 / (1 + (0 + 1 + 1 + np.sqrt(2)) / 4))
    assert diversity(square[:1]) is None
    assert balance(square, square) == pytest.approx(1.0)  # each point stands for itself
    # Two picks at x=0: both bottom points go to the one at y=0, both top ones to y=1.
    assert balance(square, square[:2]) == pytest.approx(1.0)
    # Three far points and one near pick: every sample goes to the near one.
    lopsided = np.array([[0, 0], [0, 0.1], [0, 0.2], [5, 5]], dtype=np.float32)
    assert balance(lopsided, lopsided[[0, 3]]) == pytest.approx(
        -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)) / np.log(2)
    )
    assert balance(square, square[:1]) is None


def test_nearest_in_set_matches_brute_force_across_blocks() -> None:
    rng = np.random.default_rng(1)
    x, chosen = (
        rng.normal(size=(300, 8)).astype(np.float32),
        rng.normal(size=(BLOCK + 59, 8)).astype(np.float32),
    )
    brute = ((x[:, None] - chosen[None]) ** 2).sum(axis=2)
    squared, index = nearest_in_set(x, np.einsum("ij,ij->i", x, x), chosen)
    np.testing.assert_array_equal(index, brute.argmin(axis=1))
    np.testing.assert_allclose(squared, brute.min(axis=1), rtol=1e-4, atol=1e-3)


def clusters(count: int, centers: int, seed: int = 0) -> np.ndarray:
    """Tight clusters of very different sizes: random picks crowd into the big ones."""
    rng = np.random.default_rng(seed)
    sizes = rng.zipf(1.6, size=centers).clip(1, count)
    sizes = np.maximum(1, (sizes / sizes.sum() * count).astype(int))
    middles = rng.normal(size=(centers, 16)) * 4
    x = np.concatenate([m + 0.05 * rng.normal(size=(s, 16)) for m, s in zip(middles, sizes, strict=True)])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kcenter_beats_random_on_diversity_and_coverage(seed: int) -> None:
    pool = clusters(3000, centers=40, seed=seed)
    picks, _ = kcenter_greedy(pool, 40, seed=seed)
    quality = selection_quality(pool, picks, seed=seed)
    chosen, random = quality["selected"], quality["random"]
    assert isinstance(chosen, dict) and isinstance(random, dict)
    assert chosen["diversity"] > 1.5 * random["diversity"]
    assert chosen["coverage"] > random["coverage"]
