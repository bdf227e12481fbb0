"""How good a selection is, measured against random subsets of the same size.

The subsets are drawn from the same candidates (those that passed the thresholds), in every
run (run.json's selection.quality):

- diversity: mean distance from each pick to its nearest other pick, earlier runs' picks
  included (higher: the selection repeats itself less);
- mean_distance_to_nearest_pick: mean distance from every sample of the pool to its nearest
  pick, this run's or an earlier run's (lower: every sample has a pick that stands for it;
  the label-free face of representativeness);
- coverage: 1 / (1 + mean_distance_to_nearest_pick) (higher is better);
- balance, for each BALANCE key: the entropy of the selection's categories divided by
  log(number of categories in the pool) (1: every category equally often).

The random baseline is the mean and standard deviation over RANDOM_SEEDS seeded subsets:
one draw is too noisy to compare with. Pool-wide figures are measured on a seeded sample of
at most EVALUATION_ROWS samples (an unbiased estimate of the mean), so the cost stays
O(EVALUATION_ROWS x picks) a subset however large the pool. Distances are Euclidean between
the unit embeddings, computed in blocks.
"""

from __future__ import annotations

import numpy as np

from tasks.selection.distances import nearest_other_distances, squared_distance_to_set

RANDOM_SEEDS = 10

EVALUATION_ROWS = 20_000

FIGURES = ("diversity", "mean_distance_to_nearest_pick", "coverage")


def nearest_distances(x: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Each row's distance to its nearest row of `chosen`.

    Shape: (N, D), (M, D) -> (N,)
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    return np.sqrt(np.maximum(squared_distance_to_set(x, np.einsum("ij,ij->i", x, x), chosen), 0.0))


def diversity(selected: np.ndarray, earlier: np.ndarray | None = None) -> float | None:
    """Mean distance from each selected row to its nearest other selected or earlier row.

    Shape: selected (k, D), earlier (M, D) -> that mean; None without two rows to compare.
    """
    earlier_count = 0 if earlier is None else len(earlier)
    if len(selected) == 0 or len(selected) + earlier_count < 2:
        return None
    nearest = nearest_other_distances(selected)
    if earlier is not None and earlier_count:
        nearest = np.minimum(nearest, nearest_distances(selected, earlier))
    return float(np.mean(nearest))


def mean_distance_to_nearest_pick(
    pool: np.ndarray, selected: np.ndarray, to_earlier: np.ndarray | None = None
) -> float | None:
    """Mean distance from a pool row to its nearest selected row, or nearest earlier pick.

    `to_earlier` holds each row's distance to its nearest earlier pick (inf: none), when
    there are earlier picks. Shape: pool (N, D), selected (k, D), to_earlier (N,) -> that
    mean; None without a row or a pick.
    """
    earlier = to_earlier is not None and bool(np.isfinite(to_earlier).any())
    if len(pool) == 0 or (len(selected) == 0 and not earlier):
        return None
    nearest = nearest_distances(pool, selected) if len(selected) else np.full(len(pool), np.inf, np.float32)
    return float(np.mean(nearest if to_earlier is None else np.minimum(nearest, to_earlier)))


def balance(categories: np.ndarray, picks: np.ndarray) -> float | None:
    """Normalised entropy of the picks' categories.

    None when the pool has one category or nothing is picked. Shape: categories (N,), picks (k,)
    """
    present = len(np.unique(categories))
    if present < 2 or len(picks) == 0:
        return None
    _, counts = np.unique(categories[picks], return_counts=True)
    shares = counts / counts.sum()
    return float(-(shares * np.log(shares)).sum() / np.log(present))


def measure(
    pool: np.ndarray,
    evaluated: np.ndarray,
    picks: np.ndarray,
    earlier: np.ndarray,
    categories: dict[str, np.ndarray],
    to_earlier: np.ndarray,
) -> dict[str, object]:
    """The figures of one subset.

    Shape: pool (N, D), evaluated (E,) rows the pool-wide figures average over, picks (k,),
    earlier (M, D), to_earlier (E,) each evaluated row's distance to its nearest earlier pick
    (inf: none), measured once for every subset.
    """
    chosen = pool[picks]
    mean = mean_distance_to_nearest_pick(pool[evaluated], chosen, to_earlier)
    figures: dict[str, object] = {
        "diversity": diversity(chosen, earlier),
        "mean_distance_to_nearest_pick": mean,
        "coverage": None if mean is None else 1.0 / (1.0 + mean),
    }
    if categories:
        figures["balance"] = {key: balance(values, picks) for key, values in categories.items()}
    return figures


def spread(values: list[object]) -> dict[str, float] | None:
    """Mean and standard deviation of the figures that exist."""
    present = [float(v) for v in values if isinstance(v, int | float)]
    if not present:
        return None
    return {"mean": float(np.mean(present)), "std": float(np.std(present))}


def summarise(draws: list[dict[str, object]], categories: dict[str, np.ndarray]) -> dict[str, object]:
    """Mean and standard deviation of each figure (and each BALANCE key's balance) over the draws."""
    summary: dict[str, object] = {name: spread([d[name] for d in draws]) for name in FIGURES}
    if categories:
        balances = [d["balance"] for d in draws]
        summary["balance"] = {
            key: spread([b[key] for b in balances if isinstance(b, dict)]) for key in categories
        }
    return summary


def selection_quality(
    pool: np.ndarray,
    picks: np.ndarray,
    seed: int,
    categories: dict[str, np.ndarray] | None = None,
    allowed: np.ndarray | None = None,
    earlier: np.ndarray | None = None,
) -> dict[str, object]:
    """The selection's figures beside the mean and std of RANDOM_SEEDS random subsets of the same size.

    The subsets are drawn from the `allowed` candidates; both are measured with the `earlier` picks.
    Shape: pool (N, D), picks (k,) indices into pool, categories {BALANCE key: (N,)},
    allowed (N,) bool (default all), earlier (M, D).
    """
    categories = categories or {}
    earlier = np.empty((0, pool.shape[1]), np.float32) if earlier is None else earlier
    candidates = np.flatnonzero(np.ones(len(pool), bool) if allowed is None else allowed)
    rng = np.random.default_rng(seed)
    evaluated = np.arange(len(pool))
    if len(pool) > EVALUATION_ROWS:
        evaluated = np.sort(rng.choice(len(pool), EVALUATION_ROWS, replace=False))
    to_earlier = np.full(len(evaluated), np.inf, dtype=np.float32)
    if len(earlier):  # the same for every subset: measured once (100,000 earlier picks cost seconds)
        to_earlier = nearest_distances(pool[evaluated], earlier)
    seeds = [seed + offset for offset in range(RANDOM_SEEDS)]
    size = min(len(picks), len(candidates))
    draws = [
        measure(
            pool,
            evaluated,
            np.random.default_rng(s).choice(candidates, size=size, replace=False),
            earlier,
            categories,
            to_earlier,
        )
        for s in seeds
    ]
    return {
        "selected": measure(pool, evaluated, picks, earlier, categories, to_earlier),
        "random": summarise(draws, categories),
        "random_seeds": seeds,
        "random_from": len(candidates),
        "evaluated_samples": len(evaluated),
        "earlier_picks": len(earlier),
    }
