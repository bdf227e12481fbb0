"""TYPICALITY's k nearest neighbours past the exact size: faiss's IVF index against the exact
blocked search (the baseline) on the same clustered rows.

    python -m benchmarks.typicality [--rows 100000] [--dim 128] [--k 10] [--top 1000]

Rows are unit vectors around 300 centres of Zipf-distributed sizes and varied spreads, so
density differs as it does in real embeddings. Reports both timings, how many of the `top`
most typical rows (smallest mean k-NN distance) the index agrees on, and the median
relative error of its mean distances. Prints a JSON object of figures last.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tasks.selection.distances import mean_knn_distance


def clustered_rows(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    """Unit rows around 300 centres with Zipf sizes and spreads from 0.3 to 1.5. Shape: (rows, dim)"""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(300, dim))
    sizes = rng.zipf(1.5, 300).clip(1, rows)
    sizes = (sizes / sizes.sum() * rows).astype(int)
    sizes[0] += rows - sizes.sum()
    x = np.concatenate(
        [c + rng.uniform(0.3, 1.5) * rng.normal(size=(s, dim)) for c, s in zip(centres, sizes, strict=True)]
    ).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--top", type=int, default=1000, help="most typical rows compared")
    args = parser.parse_args()
    x = clustered_rows(args.rows, args.dim)
    started = time.perf_counter()
    exact = mean_knn_distance(x, args.k, exact_rows=args.rows)
    exact_seconds = time.perf_counter() - started
    started = time.perf_counter()
    indexed = mean_knn_distance(x, args.k, exact_rows=0)
    index_seconds = time.perf_counter() - started
    top_exact, top_indexed = np.argsort(exact)[: args.top], np.argsort(indexed)[: args.top]
    overlap = len(np.intersect1d(top_exact, top_indexed)) / args.top
    error = float(np.median(np.abs(indexed - exact) / exact))
    print(f"{args.rows} x {args.dim}, k={args.k}")
    print(f"exact  {exact_seconds:7.1f} s")
    print(f"index  {index_seconds:7.1f} s ({exact_seconds / index_seconds:.1f}x)")
    print(f"top-{args.top} most typical in common: {overlap:.3f}; median relative error {error:.4f}")
    print(
        json.dumps(
            {
                "exact_s": round(exact_seconds, 2),
                "index_s": round(index_seconds, 2),
                "ratio": round(exact_seconds / index_seconds, 2),
                "top_overlap": round(overlap, 4),
                "median_relative_error": round(error, 5),
                "rows": args.rows,
                "dim": args.dim,
                "k": args.k,
                "top": args.top,
            }
        )
    )


if __name__ == "__main__":
    main()
