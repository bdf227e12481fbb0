"""Selection strategies on data whose right answer is known."""

from collections import Counter

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.config import RunConfig, SelectionStrategy, describe_validation_error
from tasks.records.selection import SelectionInputs
from tasks.selection.choose import query_embeddings, similarity_to
from tasks.selection.distances import BLOCK, mean_knn_distance, squared_distance_to_set
from tasks.selection.kcenter import kcenter_greedy
from tasks.selection.quality import selection_quality
from tasks.selection.strategies import Balance, Diversity, Score, Threshold, Weights, combined_greedy


def unit_rows(count: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(count, 8)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_balance_hits_the_target_shares_within_one_sample() -> None:
    categories = np.array(["a"] * 100 + ["b"] * 50 + ["c"] * 20)
    target = {"a": 0.5, "b": 0.3, "c": 0.2}
    picks, _ = combined_greedy(
        30, [], [Balance(categories, target, 1.0), Diversity(1.0, None)], unit_rows(170)
    )
    counts = Counter(categories[picks].tolist())
    for category, share in target.items():
        assert abs(counts[category] - share * 30) <= 1, counts


def test_uniform_balance_without_a_target() -> None:
    categories = np.array(["x"] * 90 + ["y"] * 10)
    picks, _ = combined_greedy(10, [], [Balance(categories, None, 1.0)], unit_rows(100))
    assert Counter(categories[picks].tolist()) == {"x": 5, "y": 5}


def test_thresholds_never_admit_a_violating_sample() -> None:
    rng = np.random.default_rng(1)
    luminance, sharpness = rng.random(500), rng.random(500) * 100
    thresholds = [Threshold(luminance, ">=", 0.3), Threshold(sharpness, "<", 60.0)]
    objectives = [Diversity(1.0, None), Balance(np.array(["p", "q"] * 250), None, 1.0)]
    picks, _ = combined_greedy(500, thresholds, objectives, unit_rows(500))
    admissible = (luminance >= 0.3) & (sharpness < 60.0)
    assert set(picks.tolist()) == set(np.flatnonzero(admissible).tolist())  # all, and only, those


def test_weights_prefer_large_values_and_a_negative_strength_inverts() -> None:
    values = np.random.default_rng(2).random(200)
    largest, _ = combined_greedy(10, [], [Weights(values, 1.0)], unit_rows(200))
    smallest, _ = combined_greedy(10, [], [Weights(values, -1.0)], unit_rows(200))
    assert set(largest.tolist()) == set(np.argsort(values)[-10:].tolist())
    assert set(smallest.tolist()) == set(np.argsort(values)[:10].tolist())


def test_diversity_alone_is_greedy_kcenter_against_earlier_picks() -> None:
    x, earlier = unit_rows(300, seed=3), unit_rows(5, seed=4)
    combined, _ = combined_greedy(20, [], [Diversity(1.0, None)], x, chosen=earlier)
    reference, _ = kcenter_greedy(x, 20, seed=0, chosen=earlier)
    assert combined.tolist() == reference.tolist()


@pytest.mark.parametrize(
    ("strategy", "words"),
    [
        (
            {"input": {"type": "METADATA", "key": "colour"}, "strategy": {"type": "BALANCE"}},
            "METADATA key 'colour' does not exist",
        ),
        (
            {"input": {"type": "SCORES", "file": "scores.csv"}, "strategy": {"type": "WEIGHTS"}},
            "SCORES, and only SCORES, takes a file and a score column",
        ),
        (
            {
                "input": {"type": "SCORES", "file": "s.csv", "score": "loss"},
                "strategy": {"type": "BALANCE"},
            },
            "BALANCE works on a METADATA key",
        ),
        (
            {
                "input": {"type": "METADATA", "key": "folder"},
                "strategy": {"type": "BALANCE", "target": {"a": 0.7}},
            },
            "must be shares that sum to 1",
        ),
        (
            {
                "input": {"type": "METADATA", "key": "folder"},
                "strategy": {"type": "THRESHOLD", "operation": "<", "value": 1},
            },
            "THRESHOLD needs a numeric key, and 'folder' is a category",
        ),
        (
            {"input": {"type": "METADATA", "key": "luminance"}, "strategy": {"type": "THRESHOLD"}},
            "needs an operation",
        ),
        ({"input": {"type": "RANDOM"}, "strategy": {"type": "DIVERSITY"}}, "DIVERSITY works on EMBEDDINGS"),
        ({"strategy": {"type": "SIMILARITY"}}, "SIMILARITY, and only SIMILARITY, takes a query"),
    ],
)
def test_bad_strategies_are_configuration_errors_naming_the_field(
    strategy: dict[str, object], words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(source="s3://bucket/raw", selection={"strategies": [strategy]})
    message = describe_validation_error(caught.value)
    assert "selection.strategies.0" in message and words in message


def test_typicality_prefers_the_dense_cluster_over_outliers() -> None:
    rng = np.random.default_rng(5)
    dense = rng.normal(size=(200, 8)) * 0.05 + 1.0
    outliers = rng.normal(size=(20, 8)) * 3.0
    x = np.concatenate([dense, outliers]).astype(np.float32)
    typical = 1.0 / (1.0 + mean_knn_distance(x, 10))
    picks, _ = combined_greedy(20, [], [Score(typical, 1.0)], x)
    assert set(picks.tolist()) <= set(range(200))
    atypical, _ = combined_greedy(20, [], [Score(typical, -1.0)], x)  # inverted: the outliers
    assert set(atypical.tolist()) == set(range(200, 220))


def test_mean_knn_distance_matches_brute_force_across_blocks() -> None:
    x = unit_rows(BLOCK + 20, seed=6)
    brute = np.sort(np.linalg.norm(x[:, None] - x[None], axis=2), axis=1)[:, 1:4].mean(axis=1)
    np.testing.assert_allclose(mean_knn_distance(x, 3), brute, rtol=1e-3, atol=1e-3)


def test_the_nearest_earlier_pick_through_an_index_is_the_exact_one() -> None:
    """Past INDEXED_PAIRS the distance to earlier picks is searched through an IVF index."""
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(60, 32))
    chosen = centres[rng.integers(0, 60, 6000)] + 0.3 * rng.normal(size=(6000, 32))
    chosen = (chosen / np.linalg.norm(chosen, axis=1, keepdims=True)).astype(np.float32)
    x = chosen[rng.choice(6000, 2000, replace=False)] + 0.05 * rng.normal(size=(2000, 32)).astype(np.float32)
    norms = np.einsum("ij,ij->i", x, x)
    exact = squared_distance_to_set(x, norms, chosen)  # 12 M pairs: below the threshold
    indexed = squared_distance_to_set(x, norms, chosen, indexed_from=0)
    assert np.mean(np.abs(indexed - exact) < 1e-4) > 0.99
    assert np.all(indexed >= exact - 1e-4)  # a miss can only overstate the distance


def test_similarity_picks_the_nearest_to_the_query() -> None:
    x = unit_rows(300, seed=7)
    ids = [f"s{i}" for i in range(300)]
    rule = SelectionStrategy(strategy={"type": "SIMILARITY", "query": ("s3", "s9")})
    closeness = similarity_to(query_embeddings(rule, 0, ids, x, SelectionInputs()), x)
    picks, _ = combined_greedy(12, [], [Score(closeness, 1.0)], x)
    expected = np.argsort(-np.maximum(x @ x[3], x @ x[9]))[:12]
    assert set(picks.tolist()) == set(expected.tolist()) and {3, 9} <= set(picks.tolist())
    unknown = SelectionStrategy(strategy={"type": "SIMILARITY", "query": ("nope",)})
    with pytest.raises(ValueError, match=r"selection.strategies.0.strategy.query: \['nope'\]"):
        query_embeddings(unknown, 0, ids, x, SelectionInputs())


def test_typicality_beyond_the_exact_size_agrees_with_the_exact_answer() -> None:
    rng = np.random.default_rng(8)
    centres = rng.normal(size=(40, 16))
    sizes = rng.integers(20, 200, size=40)
    x = np.concatenate(
        [c + rng.uniform(0.2, 1.0) * rng.normal(size=(s, 16)) for c, s in zip(centres, sizes, strict=True)]
    )
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    exact = mean_knn_distance(x, 10)
    approximate = mean_knn_distance(x, 10, exact_rows=500)  # the index path on these rows
    most_typical = len(x) // 10
    overlap = set(np.argsort(exact)[:most_typical]) & set(np.argsort(approximate)[:most_typical])
    assert len(overlap) >= 0.95 * most_typical
    assert np.median(np.abs(approximate - exact) / exact) < 0.05
    assert np.array_equal(approximate, mean_knn_distance(x, 10, exact_rows=500))  # reproducible


def test_balance_quality_is_the_normalised_entropy_of_the_picks() -> None:
    categories = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    x = unit_rows(100, seed=9)
    even = np.array([0, 1, 50, 51, 80, 81])  # two of each category
    quality = selection_quality(x, even, seed=0, categories={"site": categories})
    assert quality["selected"]["balance"] == {"site": pytest.approx(1.0)}  # type: ignore[index]
    one_sided = selection_quality(x, np.arange(6), seed=0, categories={"site": categories})
    assert one_sided["selected"]["balance"] == {"site": 0.0}  # type: ignore[index]


REPRESENTATIVE = {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "REPRESENTATIVE"}}


@pytest.mark.parametrize(
    ("selection", "field", "words"),
    [
        (
            {"strategies": [REPRESENTATIVE, {"input": {"type": "RANDOM"}, "strategy": {"type": "WEIGHTS"}}]},
            "selection.strategies.0.strategy.type",
            "REPRESENTATIVE combines only with THRESHOLD, not with ['WEIGHTS']",
        ),
        (
            {
                "strategies": [
                    {"input": {"type": "EMBEDDINGS"}, "strategy": {"type": "REPRESENTATIVE", "strength": 2}}
                ]
            },
            "selection.strategies.0.strategy.strength",
            "REPRESENTATIVE has no strength to set",
        ),
        (
            {"min_distance": 0.1},
            "selection.min_distance",
            "applies to a DIVERSITY strategy, and there is none",
        ),
    ],
)
def test_what_representative_cannot_honour_fails_naming_the_field(
    selection: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        RunConfig(source="s3://bucket/raw", selection=selection)
    message = describe_validation_error(caught.value)
    assert field in message and words in message


def test_the_default_is_representative_and_diversity_keeps_min_distance() -> None:
    config = RunConfig(source="s3://bucket/raw")
    assert config.selection.representative and not config.selection.diversity_only
    diverse = RunConfig(
        source="s3://bucket/raw",
        selection={"min_distance": 0.1, "strategies": [{"strategy": {"type": "DIVERSITY"}}]},
    )
    assert diverse.selection.diversity_only and diverse.selection.min_distance == 0.1


def near_copies_and_spread(copies: int, spread: int, seed: int = 0) -> np.ndarray:
    """`copies` near-copies of one sample, then `spread` samples scattered over the sphere."""
    rng = np.random.default_rng(seed)
    centre = rng.normal(size=8)
    x = np.concatenate([centre + 0.01 * rng.normal(size=(copies, 8)), 3 * rng.normal(size=(spread, 8))])
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_weights_trade_off_against_diversity_and_strength_sets_the_rate() -> None:
    x = near_copies_and_spread(20, 180)
    favoured = np.array([1.0] * 20 + [0.0] * 180)  # a 0/1 weight on the near-copies
    balanced, _ = combined_greedy(20, [], [Weights(favoured, 1.0), Diversity(1.0, None)], x)
    assert 1 <= np.sum(balanced < 20) <= 2  # a near-copy is worth having; twenty are not
    insistent, _ = combined_greedy(20, [], [Weights(favoured, 20.0), Diversity(1.0, None)], x)
    assert np.sum(insistent < 20) == 20  # at strength 20 the weight outweighs any distance


def test_min_distance_removes_close_candidates_and_the_pass_goes_on() -> None:
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(6, 8)) * 3
    x = np.concatenate([c + 0.02 * rng.normal(size=(10, 8)) for c in centres])
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    cluster = np.repeat(np.arange(6), 10)
    prefer_first = (cluster == 0).astype(float)  # the weight wants cluster 0 again and again
    objectives = [Weights(prefer_first, 20.0), Diversity(1.0, 0.3)]
    picks, _ = combined_greedy(6, [], objectives, x)
    assert sorted(cluster[picks].tolist()) == [0, 1, 2, 3, 4, 5]  # one a cluster, not a stop at one
    distances = np.linalg.norm(x[picks][:, None] - x[picks][None], axis=2) + 10 * np.eye(6)
    assert distances.min() >= 0.3
    more, _ = combined_greedy(20, [], objectives, x)  # every cluster has its pick: nothing else is far enough
    assert sorted(more.tolist()) == sorted(picks.tolist())


def test_the_combined_first_pick_is_seeded_and_diversity_alone_is_kcenter_with_that_seed() -> None:
    x = unit_rows(300, seed=9)
    firsts = {int(combined_greedy(1, [], [Diversity(1.0, None)], x, seed=s)[0][0]) for s in range(6)}
    assert len(firsts) > 1  # not always row 0
    for seed in (0, 5):
        combined, _ = combined_greedy(15, [], [Diversity(1.0, None)], x, seed=seed)
        assert combined.tolist() == kcenter_greedy(x, 15, seed=seed)[0].tolist()
