"""Selection quality on labelled real images: winnow's strategies against random and peers.

    python -m benchmarks.quality [--sets digits photo_crops] [--budgets 0.01 0.03 0.1]
                                 [--seeds 20] [--method-seeds 5] [--epochs 30] [--width 32]
                                 [--input-size 32] [--budget-minutes M]
                                 [--keep DIR]

For each set (benchmarks/quality_sets.py: scikit-learn's digits, random crops of ~20
photographs shipped with scikit-image and scikit-learn) the benchmark runs the `curate`
flow on the images, as a user would, and takes the run's own embeddings (embeddings.parquet).
Labels never reach the run. It then picks each budget's share of the samples with:

- winnow's REPRESENTATIVE (the default), DIVERSITY (greedy k-center, the Lightly Worker's),
  and TYPICALITY x DIVERSITY (the combined greedy pass);
- peers (benchmarks/quality_peers.py): apricot's facility location, FasterPAM k-medoids,
  TypiClust;
- random subsets, mean ± std over `--seeds` seeds; every other method's mean ± std over
  `--method-seeds` seeds (its start, first pick or k-means seed; 0 for a deterministic one),

and scores each by 1-NN labelling accuracy: every unselected sample gets the label of its
nearest pick (in the run's embedding space), as labelling only the picks would give.
It also reports how well the embeddings keep labels together (leave-one-out 5-NN) next to
raw pixels (16 x 16, centred). Prints markdown tables, then one JSON object of figures last.
`--keep DIR` writes each set's ids, embeddings, labels and raw pixels to DIR/<set>.npz.
The training flags size the run for a 2-core CPU; they are winnow's own training options.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import numpy as np
import pyarrow.parquet as pq

from benchmarks.quality_peers import (
    facility_location,
    fasterpam,
    knn_accuracy,
    one_nn_accuracy,
    random_picks,
    typiclust,
)
from benchmarks.quality_sets import SETS, raw_pixels
from tasks.selection.distances import mean_knn_distance
from tasks.selection.kcenter import kcenter_greedy
from tasks.selection.representative import representative_picks
from tasks.selection.strategies import Diversity, Score, combined_greedy

Selector = Callable[[np.ndarray, int, int], np.ndarray]
# TYPICALITY's default neighbourhood in winnow's configuration.
TYPICALITY_NEIGHBOURS = 10


def winnow_representative(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    return representative_picks(x, n, seed).picks


def winnow_diversity(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    return kcenter_greedy(x, n, seed)[0]


def winnow_typicality_diversity(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    typical = 1.0 / (1.0 + mean_knn_distance(x, TYPICALITY_NEIGHBOURS, seed=seed))
    return combined_greedy(n, [], [Score(typical, 1.0), Diversity(1.0, None)], x, seed=seed)[0]


SELECTORS: dict[str, Selector] = {
    "winnow REPRESENTATIVE (default)": winnow_representative,
    "winnow DIVERSITY": winnow_diversity,
    "winnow TYPICALITY x DIVERSITY": winnow_typicality_diversity,
    "facility location (apricot)": facility_location,
    "k-medoids (FasterPAM)": fasterpam,
    "TypiClust": typiclust,
}


def run_embeddings(folder: Path, output: Path, training: dict[str, object]) -> tuple[list[str], np.ndarray]:
    """Curate `folder` with winnow's flow and read the run's embeddings (ids, (N, D))."""
    from flows.curate import curate

    record = curate(source=str(folder), output=str(output), proportion=0.01, training=training)
    table = pq.read_table(record["artifacts"]["embeddings.parquet"])
    return table["id"].to_pylist(), np.asarray(table["embedding"].to_pylist(), dtype=np.float32)


def spread(draws: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(draws)), "std": float(np.std(draws))}


def score_budgets(
    x: np.ndarray, labels: np.ndarray, budgets: list[float], seeds: int, method_seeds: int
) -> dict[str, dict[str, dict[str, float]]]:
    """{budget: {method: {"mean", "std"}}} of 1-NN accuracy over the seeds."""
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for budget in budgets:
        n = max(1, round(budget * len(x)))
        row = {
            "random": spread([one_nn_accuracy(x, labels, random_picks(len(x), n, s)) for s in range(seeds)])
        }
        for name, selector in SELECTORS.items():
            row[name] = spread([one_nn_accuracy(x, labels, selector(x, n, s)) for s in range(method_seeds)])
        scores[f"{budget:g}"] = row
    return scores


def markdown(set_name: str, count: int, scores: dict[str, dict[str, dict[str, float]]]) -> str:
    budgets = list(scores)
    lines = [
        f"{set_name} ({count} samples): 1-NN labelling accuracy, mean ± std over seeds",
        "",
        "| method | " + " | ".join(f"{float(b):.0%} budget" for b in budgets) + " |",
        "| --- |" + " --- |" * len(budgets),
    ]
    for method in scores[budgets[0]]:
        cells = []
        for budget in budgets:
            figure = scores[budget][method]
            cells.append(f"{figure['mean']:.3f} ± {figure['std']:.3f}")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--budgets", nargs="+", type=float, default=[0.01, 0.03, 0.1])
    parser.add_argument("--seeds", type=int, default=20, help="random subsets a budget")
    parser.add_argument("--method-seeds", type=int, default=5, help="seeds of every other method")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--width", type=int, default=32, help="training.width of the run")
    parser.add_argument("--input-size", type=int, default=32, help="training.input_size of the run")
    parser.add_argument(
        "--budget-minutes", type=float, default=None, help="training.budget_minutes (default: the device's)"
    )
    parser.add_argument("--keep", type=Path, default=None, help="folder for each set's vectors and labels")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    training = {
        "epochs": args.epochs,
        "width": args.width,
        "input_size": args.input_size,
        "budget_minutes": args.budget_minutes,
    }
    figures: dict[str, object] = {
        "training": training,
        "random_seeds": args.seeds,
        "method_seeds": args.method_seeds,
    }
    with tempfile.TemporaryDirectory() as scratch, prefect_test_harness(server_startup_timeout=120):
        for set_name in args.sets:
            folder = Path(scratch) / set_name
            truth = SETS[set_name](folder)
            ids, x = run_embeddings(folder, Path(scratch) / f"{set_name}-output", training)
            labels = np.array([truth[i] for i in ids])
            pixels = raw_pixels(folder, ids)
            if args.keep is not None:
                args.keep.mkdir(parents=True, exist_ok=True)
                np.savez(args.keep / f"{set_name}.npz", ids=np.array(ids), x=x, labels=labels, pixels=pixels)
            embedding_5nn, pixels_5nn = knn_accuracy(x, labels), knn_accuracy(pixels, labels)
            scores = score_budgets(x, labels, args.budgets, args.seeds, args.method_seeds)
            print(markdown(set_name, len(ids), scores))
            print(f"\n5-NN accuracy: the run's embeddings {embedding_5nn:.3f}, raw pixels {pixels_5nn:.3f}\n")
            figures[set_name] = {
                "samples": len(ids),
                "embedding_5nn": round(embedding_5nn, 4),
                "raw_pixels_5nn": round(pixels_5nn, 4),
                "one_nn_accuracy": scores,
            }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
