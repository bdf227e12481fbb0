"""Selection strategies combined in one greedy pass, in the Lightly Worker's shape.

Each strategy scores every candidate with a normalised objective in (0, 1]; THRESHOLDs
filter first; then, one pick at a time, the candidate with the largest product of the
objectives raised to their strengths is taken (a negative strength inverts an objective).
DIVERSITY and BALANCE change after every pick; WEIGHTS and scores are fixed. All work is
O(N) a pick.

How the objectives trade off:
- DIVERSITY is d / d_max, a candidate's distance to its nearest pick (earlier runs' picks
  included) over the largest such distance;
- WEIGHTS (a user's weights, SCORES, RANDOM, a METADATA key) are exp(w - 1) for w the
  min-max normalised weight: from 1/e to 1, so a weight never vetoes a candidate; at
  strength s the heaviest candidate is worth e^s times the lightest, e.g. it wins against
  a lighter one up to e^s times farther from the picks (a weight 0/1 at strength 1 takes
  a heavy near-copy only when nothing light is 2.7 times farther);
- Scores (TYPICALITY's density, SIMILARITY's closeness) are min-max normalised and floored
  at FLOOR: a strength of 1 already makes the least typical or least similar candidate
  the last choice;
- BALANCE is how far a category lags its target share, floored at FLOOR.

`min_distance` removes every candidate closer than it to a pick, and the pass goes on with
the rest. The first pick, where every candidate may score the same, is drawn with the seed
among the best (greedy k-center's seeded first pick).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tasks.selection.distances import squared_distance_to_set

# Objectives are floored here before the logarithm: an objective of 0 makes a candidate
# the last choice, not an impossible one.
FLOOR = 1e-6

COMPARISONS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


@dataclass(frozen=True)
class Threshold:
    """A THRESHOLD: keeps the candidates whose value compares with `value` by `operation`."""

    values: np.ndarray  # (N,) float
    operation: str
    value: float

    def keeps(self) -> np.ndarray:
        """Which candidates pass (a missing value, NaN, never does). Shape: -> (N,) bool."""
        return np.asarray(COMPARISONS[self.operation](self.values, self.value)) & ~np.isnan(self.values)


@dataclass(frozen=True)
class Weights:
    """A user's weights: they trade off against the other objectives (module docstring)."""

    values: np.ndarray  # (N,) float, larger is better
    strength: float


@dataclass(frozen=True)
class Score:
    """A derived score (typicality, similarity) that ranks candidates strongly."""

    values: np.ndarray  # (N,) float, larger is better
    strength: float


@dataclass(frozen=True)
class Balance:
    """A BALANCE objective: each candidate's category, the target shares, and its strength."""

    categories: np.ndarray  # (N,) str
    target: dict[str, float] | None  # None: uniform over the categories present
    strength: float


@dataclass(frozen=True)
class Diversity:
    """The DIVERSITY objective: its strength, and the smallest distance allowed to a pick."""

    strength: float
    min_distance: float | None


Objective = Weights | Score | Balance | Diversity


def passing(thresholds: list[Threshold], count: int) -> np.ndarray:
    """Which of the `count` candidates every threshold keeps.

    Shape: -> (count,) bool
    """
    allowed = np.ones(count, dtype=bool)
    for threshold in thresholds:
        allowed &= threshold.keeps()
    return allowed


def normalised(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1]; NaN (a sample without the value) counts as the minimum; all equal: 1."""
    clean = np.where(np.isnan(values), np.nanmin(values) if np.isfinite(values).any() else 0.0, values)
    low, high = float(clean.min()), float(clean.max())
    if high <= low:
        return np.ones_like(clean, dtype=np.float64)
    return (clean - low) / (high - low)


def log_objective(objective: Weights | Score) -> np.ndarray:
    """Strength * log of the fixed objective.

    Shape: -> (N,) float64
    """
    values = normalised(objective.values.astype(np.float64))
    if isinstance(objective, Weights):
        return objective.strength * (values - 1.0)  # log(exp(w - 1))
    return objective.strength * np.log(np.maximum(values, FLOOR))


def combined_greedy(
    n: int,
    thresholds: list[Threshold],
    objectives: list[Objective],
    embeddings: np.ndarray,
    chosen: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[np.ndarray, list[str]]:
    """Up to `n` indices of candidates that pass every threshold, picked one at a time.

    Picked by the product of the objectives raised to their strengths; `seed` draws the first
    pick among those that score best.

    Shape: embeddings (N, D), chosen (M, D) earlier picks that DIVERSITY measures against
    -> indices (k,), a reason a pick.
    """
    count = len(embeddings)
    allowed = passing(thresholds, count)
    fixed = np.zeros(count, dtype=np.float64)
    for objective in objectives:
        if isinstance(objective, Weights | Score):
            fixed += log_objective(objective)
    # Candidates out of the running score -inf (and sit at -1 in `nearest`), so no pass of
    # a pick needs a mask; float32 halves the memory traffic of each pass.
    fixed = np.where(allowed, fixed, -np.inf).astype(np.float32)
    diversity = next((o for o in objectives if isinstance(o, Diversity)), None)
    balancing = [BalanceState(o, allowed) for o in objectives if isinstance(o, Balance)]
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", x, x)
    nearest = np.full(count, np.inf, dtype=np.float32)
    if diversity is not None and chosen is not None and len(chosen):
        nearest = squared_distance_to_set(x, squared_norms, chosen)
    nearest[~allowed] = -1.0
    # min_distance, squared like `nearest`: a candidate that close to a pick is out for good.
    too_close = None if diversity is None or diversity.min_distance is None else diversity.min_distance**2
    score, scratch = np.empty(count, dtype=np.float32), np.empty(count, dtype=np.float32)
    picks: list[int] = []
    reasons: list[str] = []
    wanted = min(n, int(allowed.sum()))
    while len(picks) < wanted:
        if too_close is not None:
            out = (nearest >= 0) & (nearest < too_close)
            fixed[out], nearest[out] = -np.inf, -1.0
        np.copyto(score, fixed)
        farthest = float(nearest.max())
        if diversity is not None and np.isfinite(farthest):  # before any center, all are inf
            # log(d / d_max) for d = sqrt(squared distance): half the log of the squared ratio.
            np.divide(nearest, max(farthest, FLOOR), out=scratch)
            np.maximum(scratch, FLOOR**2, out=scratch)
            score += np.float32(0.5 * diversity.strength) * np.log(scratch, out=scratch)
        for state in balancing:
            score += state.log_objective(len(picks))
        pick = int(np.argmax(score))
        if not np.isfinite(score[pick]):  # nothing left: thresholds or min_distance removed the rest
            break
        if not picks:
            best = np.flatnonzero(score == score[pick])
            pick = int(best[np.random.default_rng(seed).integers(len(best))])
        picks.append(pick)
        reasons.append(f"combined: score {score[pick]:.4f}")
        fixed[pick] = -np.inf
        if diversity is not None:
            np.minimum(nearest, squared_norms - 2.0 * (x @ x[pick]) + squared_norms[pick], out=nearest)
        nearest[pick] = -1.0
        for state in balancing:
            state.add(pick)
    return np.array(picks, dtype=np.int64), reasons


def balance_target(balance: Balance, allowed: np.ndarray) -> dict[str, float]:
    """The target share of each category: the configured one, or uniform over the allowed candidates'."""
    if balance.target is not None:
        return dict(balance.target)
    present = sorted({str(c) for c in balance.categories[allowed]})
    return {c: 1.0 / len(present) for c in present}


class BalanceState:
    """A BALANCE objective during the greedy pass.

    Categories are integer codes, so each pick costs O(N) in numpy and nothing in Python.
    """

    def __init__(self, balance: Balance, allowed: np.ndarray) -> None:
        target = balance_target(balance, allowed)
        names = sorted(target)
        position = {name: code for code, name in enumerate(names)}
        # The last code stands for every category outside the target.
        self.shares = np.array([target[name] for name in names] + [0.0])
        self.codes = np.array([position.get(str(c), len(names)) for c in balance.categories], dtype=np.int64)
        self.seen = np.zeros(len(names) + 1)
        self.strength = balance.strength

    def log_objective(self, picked: int) -> np.ndarray:
        """Strength * log of how much each candidate's category lags its target share after the next pick.

        The lag is scaled to (FLOOR, 1]; categories outside the target get FLOOR.
        """
        deficit = self.shares * (picked + 1) - self.seen
        deficit[-1] = 0.0
        lag = np.maximum(deficit / max(float(deficit.max()), FLOOR), FLOOR)
        return (self.strength * np.log(lag)).astype(np.float32)[self.codes]

    def add(self, pick: int) -> None:
        """Count a pick in its category."""
        self.seen[self.codes[pick]] += 1
