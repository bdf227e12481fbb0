"""Selection strategies combined in one greedy pass, in the Lightly Worker's shape.

Each strategy scores every candidate with a normalised objective in (0, 1]; THRESHOLDs
filter first; then, one pick at a time, the candidate with the largest product of the
objectives raised to their strengths is taken (a negative strength inverts an objective).
DIVERSITY and BALANCE change after every pick; WEIGHTS are fixed. All work is O(N) a pick.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tasks.distances import squared_distance_to_set

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
    values: np.ndarray  # (N,) float
    operation: str
    value: float

    def keeps(self) -> np.ndarray:
        return np.asarray(COMPARISONS[self.operation](self.values, self.value)) & ~np.isnan(self.values)


@dataclass(frozen=True)
class Weights:
    values: np.ndarray  # (N,) float, larger is better
    strength: float


@dataclass(frozen=True)
class Balance:
    categories: np.ndarray  # (N,) str
    target: dict[str, float] | None  # None: uniform over the categories present
    strength: float


@dataclass(frozen=True)
class Diversity:
    strength: float
    min_distance: float | None


Objective = Weights | Balance | Diversity


def normalised(values: np.ndarray) -> np.ndarray:
    """Min-max to [FLOOR, 1]; NaN (a sample without the value) counts as the minimum."""
    clean = np.where(np.isnan(values), np.nanmin(values) if np.isfinite(values).any() else 0.0, values)
    low, high = float(clean.min()), float(clean.max())
    if high <= low:
        return np.ones_like(clean, dtype=np.float64)
    return np.maximum((clean - low) / (high - low), FLOOR)


def combined_greedy(
    n: int,
    thresholds: list[Threshold],
    objectives: list[Objective],
    embeddings: np.ndarray,
    chosen: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Up to `n` indices of candidates that pass every threshold, picked one at a time by
    the product of the objectives raised to their strengths.

    Shape: embeddings (N, D), chosen (M, D) earlier picks that DIVERSITY measures against
    -> indices (k,), a reason a pick.
    """
    count = len(embeddings)
    allowed = np.ones(count, dtype=bool)
    for threshold in thresholds:
        allowed &= threshold.keeps()
    fixed = np.zeros(count, dtype=np.float64)
    for objective in objectives:
        if isinstance(objective, Weights):
            fixed += objective.strength * np.log(normalised(objective.values.astype(np.float64)))
    diversity = next((o for o in objectives if isinstance(o, Diversity)), None)
    balances = [o for o in objectives if isinstance(o, Balance)]
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    squared_norms = np.einsum("ij,ij->i", x, x)
    nearest = np.full(count, np.inf, dtype=np.float32)
    if diversity is not None and chosen is not None and len(chosen):
        nearest = squared_distance_to_set(x, squared_norms, chosen)
    targets = [balance_target(b, allowed) for b in balances]
    counts = [dict.fromkeys(t, 0) for t in targets]
    picks: list[int] = []
    reasons: list[str] = []
    remaining = allowed.copy()
    while len(picks) < n and remaining.any():
        score = fixed.copy()
        if diversity is not None and np.isfinite(nearest[remaining]).any():
            distance = np.sqrt(np.maximum(nearest, 0.0))
            score += diversity.strength * np.log(np.maximum(distance / distance[remaining].max(), FLOOR))
        for balance, target, seen in zip(balances, targets, counts, strict=True):
            score += balance.strength * np.log(
                balance_objective(balance.categories, target, seen, len(picks))
            )
        score[~remaining] = -np.inf
        pick = int(np.argmax(score))
        stop_at = diversity.min_distance if diversity is not None else None
        if stop_at is not None and np.sqrt(max(float(nearest[pick]), 0.0)) < stop_at:
            break
        picks.append(pick)
        reasons.append(f"combined: score {score[pick]:.4f}")
        remaining[pick] = False
        if diversity is not None:
            np.minimum(nearest, squared_norms - 2.0 * (x @ x[pick]) + squared_norms[pick], out=nearest)
        for balance, seen in zip(balances, counts, strict=True):
            category = str(balance.categories[pick])
            if category in seen:
                seen[category] += 1
    return np.array(picks, dtype=np.int64), reasons


def balance_target(balance: Balance, allowed: np.ndarray) -> dict[str, float]:
    if balance.target is not None:
        return dict(balance.target)
    present = sorted({str(c) for c in balance.categories[allowed]})
    return {c: 1.0 / len(present) for c in present}


def balance_objective(
    categories: np.ndarray, target: dict[str, float], seen: dict[str, int], picked: int
) -> np.ndarray:
    """How much each candidate's category lags its target share after the next pick, in
    (FLOOR, 1]; categories outside the target get FLOOR."""
    deficit = {c: share * (picked + 1) - seen[c] for c, share in target.items()}
    top = max(max(deficit.values()), FLOOR)
    values = np.array([deficit.get(str(c), 0.0) for c in categories], dtype=np.float64)
    return np.maximum(values / top, FLOOR)
