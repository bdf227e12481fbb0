import numpy as np
import pytest

from tasks.selection.kcenter import kcenter_greedy, kcenter_greedy_torch


def brute_force_kcenter(x: np.ndarray, n: int, first: int) -> list[int]:
    """Gonzalez's algorithm written from its definition: all pairwise distances each step."""
    picks = [first]
    while len(picks) < n:
        distances = np.linalg.norm(x[:, None, :] - x[None, picks, :], axis=2).min(axis=1)
        distances[picks] = -1
        picks.append(int(np.argmax(distances)))
    return picks


@pytest.mark.parametrize(("count", "dim", "n"), [(50, 4, 10), (200, 16, 40), (31, 2, 31)])
def test_kcenter_matches_brute_force(count: int, dim: int, n: int) -> None:
    rng = np.random.default_rng(count)
    x = rng.normal(size=(count, dim)).astype(np.float32)
    picks, distances = kcenter_greedy(x, n, seed=3)
    assert picks.tolist() == brute_force_kcenter(x, n, int(picks[0]))
    assert np.isinf(distances[0])
    # Each pick's recorded distance is its true distance to the earlier picks.
    for i in range(1, n):
        expected = np.linalg.norm(x[picks[:i]] - x[picks[i]], axis=1).min()
        assert distances[i] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    # Greedy k-center's covering radius never grows.
    assert np.all(np.diff(distances[1:]) <= 1e-5)


def test_kcenter_is_seeded() -> None:
    x = np.random.default_rng(0).normal(size=(100, 8)).astype(np.float32)
    assert kcenter_greedy(x, 10, seed=1)[0].tolist() == kcenter_greedy(x, 10, seed=1)[0].tolist()
    assert kcenter_greedy(x, 10, seed=1)[0][0] != kcenter_greedy(x, 10, seed=2)[0][0]


def test_kcenter_covers_every_cluster_where_random_does_not() -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=10, size=(8, 16))
    # Unbalanced: one big cluster holds most points, as raw data usually does.
    sizes = [400, 5, 5, 5, 5, 5, 5, 5]
    labels = np.repeat(np.arange(8), sizes)
    x = (centers[labels] + rng.normal(size=(len(labels), 16))).astype(np.float32)
    picks, _ = kcenter_greedy(x, 8, seed=0)
    assert len(set(labels[picks])) == 8
    random_coverage = np.mean([len(set(labels[rng.choice(len(x), 8, replace=False)])) for _ in range(200)])
    assert random_coverage < 4


def test_kcenter_stops_at_min_distance_and_caps_at_pool_size() -> None:
    x = np.array([[0, 0], [0.01, 0], [5, 0], [5, 0.01]], dtype=np.float32)
    picks, distances = kcenter_greedy(x, 4, seed=0, min_distance=1.0)
    assert len(picks) == 2
    assert distances[1] > 4.9
    picks, _ = kcenter_greedy(x, 10, seed=0)
    assert sorted(picks.tolist()) == [0, 1, 2, 3]


def test_torch_kcenter_makes_the_numpy_picks() -> None:
    # The GPU path, run on the CPU device: the same code, the same picks as the numpy form.
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    earlier = x[:5] + 0.01
    for chosen in (None, earlier):
        reference, reference_distances = kcenter_greedy(x, 60, seed=3, chosen=chosen)
        picks, distances = kcenter_greedy_torch(x, 60, seed=3, device="cpu", chosen=chosen)
        assert picks.tolist() == reference.tolist()
        np.testing.assert_allclose(distances, reference_distances, rtol=1e-4)
    stop = float(reference_distances[30])
    early, _ = kcenter_greedy(x, 60, seed=3, min_distance=stop)
    assert kcenter_greedy_torch(x, 60, seed=3, device="cpu", min_distance=stop)[0].tolist() == early.tolist()
    assert 0 < len(early) < 60
