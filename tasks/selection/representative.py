"""Representative selection: k-medoids (FasterPAM) on the unit embeddings.

The picks minimise the mean squared distance from every candidate to its nearest pick,
where samples earlier runs selected count as picks already made: k-means' objective with
the centres restricted to real samples. That is what labelling by the nearest labelled
sample rewards: each pick stands at the centre of a neighbourhood it represents, so dense
regions get picks in proportion to their mass and a lone outlier gets one only when
nothing else would cover more (greedy k-center, DIVERSITY, spends its first picks on
outliers). Squaring the distance weighs a sample far from every pick more than the plain
distance (k-median) does, so the fringes of a region are covered too; on the labelled
benchmark sets it labelled the rest better than k-median at every budget (README,
"Selection quality").

Earlier picks enter through the dissimilarity itself: with e(i) the squared distance from
candidate i to its nearest earlier pick, FasterPAM runs on D'(i, j) = min(d²(i, j), e(i)),
whose k-medoids cost, sum_i min_j D'(i, j), is exactly sum_i min(e(i), min_j d²(i, j)).
For two or more medoids FasterPAM reads the matrix as D'(point, medoid) and needs no
symmetry; a single medoid is found directly (both checked in the tests).

The matrix is N x N, so up to EXACT_ROWS candidates are solved at once; beyond, the
candidates are split by recursive median cuts along each part's principal direction into
parts of at most EXACT_ROWS, the budget is shared by each part's uncovered mass, and each
part is solved exactly: memory O(EXACT_ROWS^2), time linear in N.
"""

from __future__ import annotations

from dataclasses import dataclass

import kmedoids
import numpy as np

from tasks.selection.distances import squared_distance_to_set

# Candidates solved as one k-medoids problem: an 8,192^2 float32 matrix is 256 MB (two
# while the earlier picks' cap is applied), and FasterPAM on it takes seconds.
EXACT_ROWS = 8192

# The largest distance between unit vectors: caps an uncovered candidate's cost.
UNIT_DIAMETER = 2.0

# FasterPAM starts on a part of at most RESTART_ROWS rows, the lowest-cost medoids kept.
# One start from random medoids often ends in a local optimum on a small part (a quarter
# of the seeds on sets of 16 points and 4 medoids; on the 300 photo crops of the quality
# benchmark, 3% budget, 1-NN accuracy 0.372 ± 0.008 over 5 seeds for one start, 0.378 ±
# 0.000 for three). On large parts the local optima hardly differ (100,000 rows, 1,000
# picks: the same mean distance to 5 digits) and three starts cost 2.3x the time, so
# larger parts get one.
RESTARTS = 3
RESTART_ROWS = 2048

# Power-iteration steps for a part's principal direction: a split needs its sign, not
# digits of precision.
POWER_STEPS = 12


@dataclass(frozen=True)
class RepresentativePicks:
    """The k-medoids picks, with how many candidates each represents and at what mean distance."""

    picks: np.ndarray  # (k,) int64 candidate rows, the pick representing the most first
    represented: np.ndarray  # (k,) int64: candidates whose nearest pick (earlier ones too) it is
    mean_distance: np.ndarray  # (k,) float32: their mean distance to it


def representative_picks(
    embeddings: np.ndarray, n: int, seed: int, chosen: np.ndarray | None = None, exact_rows: int = EXACT_ROWS
) -> RepresentativePicks:
    """Pick up to `n` rows of `embeddings` (unit vectors) by k-medoids.

    `chosen` (earlier picks) are counted as medoids already in place.

    Shape: embeddings (N, D) float32, chosen (M, D) -> RepresentativePicks of k = min(n, N).
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    n = min(n, len(x))
    if n <= 0:
        empty = np.empty(0, dtype=np.int64)
        return RepresentativePicks(empty, empty, np.empty(0, dtype=np.float32))
    earlier = np.full(len(x), np.inf, dtype=np.float32)
    if chosen is not None and len(chosen):
        squared = squared_distance_to_set(x, np.einsum("ij,ij->i", x, x), chosen)
        earlier = np.sqrt(np.maximum(squared, 0.0))
    parts = split(x, np.arange(len(x)), exact_rows, np.random.default_rng(seed))
    budgets = share_budget(n, parts, earlier)
    results = [
        solve_part(x, rows, budget, earlier, seed) for rows, budget in zip(parts, budgets, strict=True)
    ]
    picks = np.concatenate([r.picks for r in results])
    represented = np.concatenate([r.represented for r in results])
    mean_distance = np.concatenate([r.mean_distance for r in results])
    order = np.lexsort((picks, -represented))  # most represented first; ties by row, so stable
    return RepresentativePicks(picks[order], represented[order], mean_distance[order])


def split(x: np.ndarray, rows: np.ndarray, limit: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Cut `rows` in two, again and again, until every part has at most `limit` rows.

    Each cut is at the median of their projection on their principal direction.
    Shape: rows (R,) -> parts.
    """
    if len(rows) <= limit:
        return [rows]
    part = x[rows]
    centred = part - part.mean(axis=0)
    direction = np.asarray(rng.normal(size=x.shape[1]), dtype=np.float32)
    for _ in range(POWER_STEPS):
        direction = centred.T @ (centred @ direction)
        direction /= max(float(np.linalg.norm(direction)), 1e-12)
    order = np.argsort(centred @ direction, kind="stable")
    half = len(rows) // 2
    return split(x, rows[order[:half]], limit, rng) + split(x, rows[order[half:]], limit, rng)


def share_budget(n: int, parts: list[np.ndarray], earlier: np.ndarray) -> list[int]:
    """Split `n` picks over the parts in proportion to their uncovered mass, by largest remainder.

    The uncovered mass is the sum of their rows' squared distances to the nearest earlier pick,
    capped at the unit diameter (the row count when there are no earlier picks); no part gets
    more than its size.
    """
    sizes = np.array([len(p) for p in parts])
    capped = np.minimum(earlier, UNIT_DIAMETER) ** 2
    mass = np.array([float(capped[p].sum()) for p in parts], dtype=np.float64)
    if mass.sum() <= 0:
        mass = sizes.astype(np.float64)
    budgets = np.zeros(len(parts), dtype=np.int64)
    while (left := n - int(budgets.sum())) > 0:
        room = sizes - budgets
        share = np.where(room > 0, mass, 0.0)
        if share.sum() <= 0:
            share = (room > 0).astype(np.float64)
        quota = left * share / share.sum()
        step = np.minimum(np.floor(quota), room).astype(np.int64)
        # The picks the floors leave go to the largest remainders; a part capped at its
        # size passes its excess to the next round.
        remainder = np.where(step < room, quota - np.floor(quota), -1.0)
        extra = left - int(step.sum())
        for part in np.argsort(-remainder, kind="stable")[:extra]:
            step[part] += int(step[part] < room[part])
        budgets += step
    return [int(b) for b in budgets]


def solve_part(
    x: np.ndarray, rows: np.ndarray, budget: int, earlier: np.ndarray, seed: int
) -> RepresentativePicks:
    """FasterPAM over one part's rows. Shape: rows (R,) -> picks as rows of `x`."""
    empty = np.empty(0, dtype=np.int64)
    if budget <= 0:
        return RepresentativePicks(empty, empty, np.empty(0, dtype=np.float32))
    part = x[rows]
    norms = np.einsum("ij,ij->i", part, part)
    squared = np.maximum(norms[:, None] - 2.0 * (part @ part.T) + norms[None, :], 0.0)
    np.fill_diagonal(squared, 0.0)
    if budget >= len(rows):
        medoids = np.arange(len(rows))
    else:
        # D'(i, j) = min(d²(i, j), e(i)): point i costs no more than its earlier pick does.
        covered = np.minimum(squared, (earlier[rows] ** 2)[:, None])
        if budget == 1:  # exact, and kmedoids reads the matrix transposed for k = 1
            medoids = np.array([int(np.argmin(covered.sum(axis=0)))])
        else:
            starts = RESTARTS if len(rows) <= RESTART_ROWS else 1
            medoids = np.sort(lowest_cost_medoids(covered, budget, seed, starts))
        del covered
    to_medoid = np.sqrt(squared[:, medoids])  # (R, k)
    nearest = np.argmin(to_medoid, axis=1)
    nearest_distance = to_medoid[np.arange(len(rows)), nearest]
    mine = nearest_distance <= earlier[rows]  # rows an earlier pick does not cover better
    represented = np.bincount(nearest[mine], minlength=len(medoids))
    total = np.bincount(nearest[mine], weights=nearest_distance[mine], minlength=len(medoids))
    mean_distance = (total / np.maximum(represented, 1)).astype(np.float32)
    return RepresentativePicks(rows[medoids].astype(np.int64), represented.astype(np.int64), mean_distance)


def lowest_cost_medoids(dissimilarity: np.ndarray, k: int, seed: int, starts: int) -> np.ndarray:
    """The medoids of the lowest-cost of `starts` FasterPAM runs from random medoids.

    The first run starts from `seed` itself, the others from seeds derived from it.
    Shape: dissimilarity (R, R), k >= 2 -> (k,) int rows.
    """
    seeds = [seed, *(int(s) for s in np.random.SeedSequence(seed).generate_state(starts - 1))]
    # One thread: from 1,000 rows the package's default switches to a parallel variant
    # sized by the core count, and the picks must not depend on the machine.
    results = [
        kmedoids.fasterpam(dissimilarity, k, init="random", random_state=start, n_cpu=1) for start in seeds
    ]
    return np.asarray(min(results, key=lambda result: result.loss).medoids)
