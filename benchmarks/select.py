"""Greedy k-center: winnow's matrix-vector form against the naive broadcast form.

    python -m benchmarks.select [--rows 100000] [--dim 128] [--picks 1000]
    python -m benchmarks.select --rows 1000000 --picks 10000 --baseline-picks 20

The naive baseline recomputes each row's distance to the new center by broadcasting
(x - c)**2 over the whole matrix, as a first implementation usually does; both pick the
same samples (checked). Then times the near-duplicate search (cosine distance 0.01) over
the same rows with planted, slightly perturbed copies, and checks it finds them; the
combined DIVERSITY + TYPICALITY + BALANCE pass (TYPICALITY's k-NN exact up to 20,000 rows,
through faiss's IVF index beyond); REPRESENTATIVE (k-medoids, split into parts of at most
8,192 rows beyond that); and the torch form of k-center (the GPU path; on the CPU without a GPU)
against the numpy form. The two round their matrix-vector products differently, so on
near-ties they may pick differently: the benchmark prints the share of common picks and
both covering radii (the last pick's distance), which must agree closely. Prints a JSON
object of figures last.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tasks.selection.distances import mean_knn_distance
from tasks.selection.kcenter import kcenter_greedy, kcenter_greedy_torch
from tasks.selection.near_duplicates import find_near_duplicates
from tasks.selection.representative import representative_picks
from tasks.selection.strategies import Balance, Diversity, Score, combined_greedy


def naive_kcenter(x: np.ndarray, n: int, first: int) -> np.ndarray:
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    picks = [first]
    for _ in range(n - 1):
        squared = ((x - x[picks[-1]]) ** 2).sum(axis=1)
        np.minimum(nearest, squared, out=nearest)
        nearest[picks] = -1
        picks.append(int(np.argmax(nearest)))
    return np.array(picks)


def near_duplicate_search(x: np.ndarray, copies: int) -> tuple[float, int]:
    """Time winnow's near-duplicate search over `x` with `copies` rows replaced by slightly
    perturbed copies of others. Returns (seconds, planted copies found)."""
    rng = np.random.default_rng(1)
    planted = x.copy()
    targets = rng.choice(len(x), size=copies, replace=False)
    originals = rng.choice(np.setdiff1d(np.arange(len(x)), targets), size=copies, replace=False)
    noisy = x[originals] + 0.01 * rng.normal(size=(copies, x.shape[1])).astype(np.float32) / np.sqrt(
        x.shape[1]
    )
    planted[targets] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
    ids = [f"{i:07d}" for i in range(len(x))]
    started = time.perf_counter()
    removed = find_near_duplicates(ids, planted, 0.01, [], np.empty((0, x.shape[1]), np.float32))
    seconds = time.perf_counter() - started
    pairs = {(ids[t], ids[o]) for t, o in zip(targets, originals, strict=True)}
    found = sum((a, b) in pairs or (b, a) in pairs for a, b in ((k, v[0]) for k, v in removed.items()))
    return seconds, found


def combined_selection(x: np.ndarray, picks: int) -> tuple[float, float, float]:
    """Time DIVERSITY + TYPICALITY + BALANCE (ten categories) through winnow's combined
    greedy pass. Returns (typicality seconds, ms a pick, total seconds)."""
    categories = np.random.default_rng(2).integers(0, 10, size=len(x)).astype(str)
    started = time.perf_counter()
    typical = 1.0 / (1.0 + mean_knn_distance(x, 10))
    typicality_seconds = time.perf_counter() - started
    objectives = [Diversity(1.0, None), Score(typical, 1.0), Balance(categories, None, 1.0)]
    started = time.perf_counter()
    combined_greedy(picks, [], objectives, x)
    greedy_seconds = time.perf_counter() - started
    return typicality_seconds, 1000 * greedy_seconds / picks, typicality_seconds + greedy_seconds


def representative_selection(x: np.ndarray, picks: int) -> float:
    """Seconds for REPRESENTATIVE's `picks` from `x`."""
    started = time.perf_counter()
    representative_picks(x, picks, seed=0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--picks", type=int, default=1000)
    parser.add_argument("--baseline-picks", type=int, default=200, help="the naive form is slow")
    parser.add_argument("--planted-copies", type=int, default=1000, help="near duplicates hidden in the rows")
    parser.add_argument("--combined-rows", type=int, default=None, help="rows for the combined strategies")
    parser.add_argument(
        "--near-duplicate-rows", type=int, default=100_000, help="rows searched for near duplicates"
    )
    args = parser.parse_args()
    x = np.random.default_rng(0).normal(size=(args.rows, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    started = time.perf_counter()
    picks, radii = kcenter_greedy(x, args.picks, seed=0)
    ms_per_pick = 1000 * (time.perf_counter() - started) / args.picks
    device = "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    torch_picks, torch_radii = kcenter_greedy_torch(x, args.picks, seed=0, device=device)
    torch_ms_per_pick = 1000 * (time.perf_counter() - started) / args.picks
    common = len(np.intersect1d(torch_picks, picks)) / args.picks
    started = time.perf_counter()
    baseline = naive_kcenter(x, args.baseline_picks, int(picks[0]))
    naive_ms_per_pick = 1000 * (time.perf_counter() - started) / args.baseline_picks
    same = bool(np.array_equal(baseline, picks[: args.baseline_picks]))
    near_seconds, found = near_duplicate_search(x[: args.near_duplicate_rows], args.planted_copies)
    combined_rows = min(args.rows, args.combined_rows or args.rows)
    typicality_seconds, combined_ms, combined_seconds = combined_selection(x[:combined_rows], args.picks)
    representative_seconds = representative_selection(x[:combined_rows], args.picks)
    print(f"{args.rows} x {args.dim} float32, {args.picks} picks")
    print(f"winnow  {ms_per_pick:7.2f} ms a pick")
    print(f"naive   {naive_ms_per_pick:7.2f} ms a pick (same picks: {same})")
    print(
        f"torch   {torch_ms_per_pick:7.2f} ms a pick on {device} ({common:.1%} common picks; covering "
        f"radius {torch_radii[-1]:.4f}, numpy's {radii[-1]:.4f})"
    )
    print(f"near duplicates: {near_seconds:.1f} s, {found} of {args.planted_copies} planted copies found")
    print(
        f"DIVERSITY + TYPICALITY + BALANCE over {combined_rows} rows: k-NN {typicality_seconds:.1f} s, "
        f"{combined_ms:.2f} ms a pick, {combined_seconds:.1f} s in all"
    )
    print(f"REPRESENTATIVE over {combined_rows} rows: {representative_seconds:.1f} s")
    print(
        json.dumps(
            {
                "ms_per_pick": round(ms_per_pick, 2),
                "naive_ms_per_pick": round(naive_ms_per_pick, 2),
                "ratio": round(naive_ms_per_pick / ms_per_pick, 2),
                "same_picks": same,
                "torch_device": device,
                "torch_ms_per_pick": round(torch_ms_per_pick, 2),
                "torch_common_picks": round(common, 4),
                "torch_radius": round(float(torch_radii[-1]), 4),
                "numpy_radius": round(float(radii[-1]), 4),
                "near_duplicates_s": round(near_seconds, 2),
                "near_duplicates_found": found,
                "near_duplicates_planted": args.planted_copies,
                "near_duplicate_rows": min(args.rows, args.near_duplicate_rows),
                "combined_rows": combined_rows,
                "combined_knn_s": round(typicality_seconds, 2),
                "combined_ms_per_pick": round(combined_ms, 2),
                "combined_total_s": round(combined_seconds, 2),
                "representative_s": round(representative_seconds, 2),
                "rows": args.rows,
                "dim": args.dim,
                "picks": args.picks,
            }
        )
    )


if __name__ == "__main__":
    main()
