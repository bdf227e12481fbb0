"""Selection quality figures: right on small sets, earlier picks and thresholds counted, a
multi-seed random baseline, and k-center beats random on clusters."""

import numpy as np
import pytest

from tasks.selection.distances import BLOCK, nearest_other_distances
from tasks.selection.kcenter import kcenter_greedy
from tasks.selection.quality import RANDOM_SEEDS, diversity, mean_distance_to_nearest_pick, selection_quality


def test_nearest_other_distances_match_brute_force_across_blocks() -> None:
    x = np.random.default_rng(0).normal(size=(BLOCK + 37, 8)).astype(np.float32)
    brute = np.linalg.norm(x[:, None] - x[None], axis=2)
    np.fill_diagonal(brute, np.inf)
    np.testing.assert_allclose(nearest_other_distances(x), brute.min(axis=1), rtol=1e-4, atol=1e-3)


def test_figures_on_points_whose_answer_is_known() -> None:
    square = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    assert diversity(square) == pytest.approx(1.0)
    assert mean_distance_to_nearest_pick(square, square) == pytest.approx(0.0)  # every point is selected
    assert mean_distance_to_nearest_pick(square, square[:1]) == pytest.approx((0 + 1 + 1 + np.sqrt(2)) / 4)
    assert diversity(square[:1]) is None
    # An earlier pick is another pick to be near: (0,0) is 1 from (0,1), which came before.
    assert diversity(square[:1], earlier=square[1:2]) == pytest.approx(1.0)


def test_earlier_picks_count_in_coverage_and_random_draws_only_from_allowed_candidates() -> None:
    square = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [5, 5], [5, 6]], dtype=np.float32)
    # This run picks (5, 5); an earlier run picked (0, 0) and (1, 1).
    quality = selection_quality(square, np.array([4]), seed=0, earlier=square[[0, 3]])
    chosen = quality["selected"]
    assert isinstance(chosen, dict)
    assert chosen["mean_distance_to_nearest_pick"] == pytest.approx((0 + 1 + 1 + 0 + 0 + 1) / 6)
    assert chosen["coverage"] == pytest.approx(1 / (1 + 3 / 6))
    # Only (5, 6) passes the thresholds: every random draw is it, so the spread is nil.
    allowed = np.array([False] * 5 + [True])
    quality = selection_quality(square, np.array([5]), seed=0, allowed=allowed, earlier=square[[0, 3]])
    random = quality["random"]
    assert isinstance(random, dict)
    assert random["mean_distance_to_nearest_pick"] == {"mean": pytest.approx(0.5), "std": 0.0}
    assert quality["random_from"] == 1 and quality["earlier_picks"] == 2
    assert quality["random_seeds"] == list(range(RANDOM_SEEDS))


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
    assert chosen["diversity"] > 1.5 * random["diversity"]["mean"]
    assert chosen["coverage"] > random["coverage"]["mean"] + random["coverage"]["std"]
    assert random["coverage"]["std"] > 0  # ten different subsets, not one draw
