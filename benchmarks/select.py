"""Greedy k-center: winnow's matrix-vector form against the naive broadcast form.

    python -m benchmarks.select [--rows 100000] [--dim 128] [--picks 1000]

The naive baseline recomputes each row's distance to the new center by broadcasting
(x - c)**2 over the whole matrix, as a first implementation usually does; both pick the
same samples (checked). Prints a JSON object of figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tasks.select import kcenter_greedy


def naive_kcenter(x: np.ndarray, n: int, first: int) -> np.ndarray:
    nearest = np.full(len(x), np.inf, dtype=np.float32)
    picks = [first]
    for _ in range(n - 1):
        squared = ((x - x[picks[-1]]) ** 2).sum(axis=1)
        np.minimum(nearest, squared, out=nearest)
        nearest[picks] = -1
        picks.append(int(np.argmax(nearest)))
    return np.array(picks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--picks", type=int, default=1000)
    parser.add_argument("--baseline-picks", type=int, default=200, help="the naive form is slow")
    args = parser.parse_args()
    x = np.random.default_rng(0).normal(size=(args.rows, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    started = time.perf_counter()
    picks, _ = kcenter_greedy(x, args.picks, seed=0)
    ms_per_pick = 1000 * (time.perf_counter() - started) / args.picks
    started = time.perf_counter()
    baseline = naive_kcenter(x, args.baseline_picks, int(picks[0]))
    naive_ms_per_pick = 1000 * (time.perf_counter() - started) / args.baseline_picks
    same = bool(np.array_equal(baseline, picks[: args.baseline_picks]))
    print(f"{args.rows} x {args.dim} float32, {args.picks} picks")
    print(f"winnow  {ms_per_pick:7.2f} ms a pick")
    print(f"naive   {naive_ms_per_pick:7.2f} ms a pick (same picks: {same})")
    print(
        json.dumps(
            {
                "ms_per_pick": round(ms_per_pick, 2),
                "naive_ms_per_pick": round(naive_ms_per_pick, 2),
                "ratio": round(naive_ms_per_pick / ms_per_pick, 2),
                "same_picks": same,
                "rows": args.rows,
                "dim": args.dim,
                "picks": args.picks,
            }
        )
    )


if __name__ == "__main__":
    main()
