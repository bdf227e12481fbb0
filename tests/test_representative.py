"""REPRESENTATIVE (k-medoids) on data whose right answer is known: one pick a blob, never
an outlier, earlier picks count as coverage, and the split form for large pools agrees."""

import itertools

import kmedoids
import numpy as np
import pytest

from tasks.selection.kcenter import kcenter_greedy
from tasks.selection.quality import mean_distance_to_nearest_pick
from tasks.selection.representative import representative_picks, share_budget


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def blobs_and_outliers(
    blobs: int, per_blob: int, outliers: int, seed: int = 0, dim: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Tight blobs of `per_blob` samples near one another, then lone outliers far from
    them and from each other. Returns (unit vectors, the blob of each row; -1 outlier)."""
    rng = np.random.default_rng(seed)
    axes = np.eye(dim)
    centres = [axes[0] * 3 + axes[1 + b] for b in range(blobs)]  # 1.4 apart before scaling
    centres += [axes[1 + blobs + o] * 3 for o in range(outliers)]  # orthogonal to the blobs' axis
    rows = [c + 0.1 * rng.normal(size=(per_blob, dim)) for c in centres[:blobs]]
    rows += [c[None] + 0.1 * rng.normal(size=(1, dim)) for c in centres[blobs:]]
    labels = np.concatenate([np.repeat(np.arange(blobs), per_blob), np.full(outliers, -1)])
    return unit(np.concatenate(rows)), labels


def test_one_pick_a_blob_where_k_center_spends_its_picks_on_outliers() -> None:
    x, labels = blobs_and_outliers(blobs=5, per_blob=40, outliers=5)
    result = representative_picks(x, 5, seed=0)
    assert sorted(labels[result.picks].tolist()) == [0, 1, 2, 3, 4]
    # Each pick stands for its blob; the outliers go to whichever is nearest.
    assert result.represented.sum() == 205 and result.represented.min() >= 40
    diverse, _ = kcenter_greedy(x, 5, seed=0)
    assert (labels[diverse] == -1).sum() >= 4  # the Lightly Worker's DIVERSITY: outliers first
    assert mean_distance_to_nearest_pick(x, x[result.picks]) < mean_distance_to_nearest_pick(x, x[diverse])


def test_picks_are_k_medoids_on_squared_distances_most_representative_first() -> None:
    rng = np.random.default_rng(3)
    x = unit(rng.normal(size=(300, 8)))
    result = representative_picks(x, 12, seed=4)
    distance = np.linalg.norm(x[:, None] - x[None], axis=2)
    cost = float((distance[:, result.picks] ** 2).min(axis=1).sum())
    # The lowest cost of the starts, the first of which is FasterPAM from the seed itself.
    single = kmedoids.fasterpam(distance**2, 12, init="random", random_state=4, n_cpu=1)
    assert cost <= float(single.loss) + 1e-4
    assert result.represented.sum() == 300
    assert list(result.represented) == sorted(result.represented, reverse=True)
    nearest = distance[:, result.picks].min(axis=1)
    assert np.average(result.mean_distance, weights=result.represented) == pytest.approx(
        nearest.mean(), rel=1e-4
    )


def test_restarts_reach_the_exact_optimum_where_one_start_stalls() -> None:
    """On 20 small sets (16 points, 4 medoids), the best medoids are known by trying all
    1,820 subsets. One FasterPAM start from random medoids stalls in a local optimum in
    about a quarter of the seeds; the picks, the best of three starts, reach the optimum."""
    reached = single_reached = trials = 0
    for data_seed in range(20):
        x = unit(np.random.default_rng(data_seed).normal(size=(16, 3)))
        squared = ((x[:, None] - x[None]) ** 2).sum(axis=2)
        optimum = min(squared[:, list(c)].min(axis=1).sum() for c in itertools.combinations(range(16), 4))
        for seed in range(5):
            trials += 1
            picks = representative_picks(x, 4, seed).picks
            reached += bool(squared[:, picks].min(axis=1).sum() <= optimum + 1e-5)
            single = kmedoids.fasterpam(squared, 4, init="random", random_state=seed, n_cpu=1)
            single_reached += bool(single.loss <= optimum + 1e-5)
    assert reached / trials >= 0.9 and (reached - single_reached) / trials >= 0.15


def test_earlier_picks_cover_their_blobs_so_new_picks_go_elsewhere() -> None:
    x, labels = blobs_and_outliers(blobs=6, per_blob=30, outliers=0)
    earlier = x[labels < 3][::30]  # one sample of each of blobs 0, 1, 2
    new = representative_picks(x, 3, seed=0, chosen=earlier)
    assert sorted(labels[new.picks].tolist()) == [3, 4, 5]
    one = representative_picks(x, 1, seed=0, chosen=earlier)  # a single medoid: the direct path
    assert labels[one.picks[0]] in (3, 4, 5)
    covered = representative_picks(x, 3, seed=0, chosen=x[::30])  # every blob has an earlier pick
    assert covered.represented.sum() < 180  # the earlier picks still stand for most samples


def test_the_split_form_for_large_pools_still_finds_every_blob_and_honours_earlier_picks() -> None:
    x, labels = blobs_and_outliers(blobs=8, per_blob=100, outliers=0)
    split = representative_picks(x, 8, seed=0, exact_rows=128)  # 800 rows in parts of <= 128
    assert sorted(labels[split.picks].tolist()) == list(range(8))
    earlier = x[labels < 4][::100]
    rest = representative_picks(x, 4, seed=0, chosen=earlier, exact_rows=128)
    assert sorted(labels[rest.picks].tolist()) == [4, 5, 6, 7]


def test_budget_follows_uncovered_mass_never_exceeds_a_part_and_sums_to_n() -> None:
    parts = [np.arange(0, 10), np.arange(10, 40), np.arange(40, 42)]
    uncovered = np.full(42, np.inf, dtype=np.float32)
    assert share_budget(21, parts, uncovered) == [5, 15, 1]
    assert share_budget(41, parts, uncovered) == [10, 29, 2]
    covered = uncovered.copy()
    covered[10:40] = 0.0  # the big part is covered by earlier picks
    assert share_budget(5, parts, covered) == [4, 0, 1]


def test_small_and_empty_budgets() -> None:
    x, _ = blobs_and_outliers(blobs=2, per_blob=3, outliers=0)
    assert representative_picks(x, 0, seed=0).picks.size == 0
    assert sorted(representative_picks(x, 50, seed=0).picks.tolist()) == list(range(6))
