"""A first run's cost, stage by stage: winnow's defaults against training to the last epoch.

    python -m benchmarks.first_run [--images 1000] [--budget-minutes M] [--skip-baseline]

Writes --images 640x480 JPEGs (crops of scikit-image's photographs, as benchmarks.embed_e2e)
and runs the `curate` flow on them as a user would, with the default configuration (the
report off: its PDF is a fixed few seconds), then the baseline: the same flow with no
training budget and int8 always, as winnow ran before both were tied to the run's size.
`--budget-minutes` sets the training budget of the first (default: the device's, 10
minutes on the CPU), so the budget's effect shows on a small corpus too. Each run has its
own output (a first run each). Prints each run's stage times, then one JSON object of
figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from benchmarks.embed_e2e import write_photos
from tasks.config import EmbeddingConfig, ReportConfig, TrainingConfig

# The baseline trains every epoch whatever it takes.
UNBOUNDED_MINUTES = 100_000


def first_run(
    source: Path, output: Path, training: TrainingConfig, embedding: EmbeddingConfig
) -> dict[str, Any]:
    """One first run of the flow: its wall time, stage times, precision and training figures."""
    from flows.curate import curate

    started = time.perf_counter()
    record = curate(
        source=str(source),
        output=str(output),
        proportion=0.05,
        training=training,
        embedding=embedding,
        report=ReportConfig(enabled=False),
    )
    wall = time.perf_counter() - started
    model = record["model"]
    return {
        "seconds": round(wall, 1),
        "stages": record["timings"],
        "precision": model["precision"],
        "epochs": model["training_epochs"],
        "budget_reached": model["training_budget_reached"],
        "training_images_per_second": model["training_images_per_second"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--budget-minutes", type=float, default=None)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as folder, prefect_test_harness(server_startup_timeout=120):
        source = Path(folder) / "photos"
        write_photos(source, args.images)
        runs["winnow"] = first_run(
            source,
            Path(folder) / "now",
            TrainingConfig(budget_minutes=args.budget_minutes),
            EmbeddingConfig(),
        )
        if not args.skip_baseline:
            runs["baseline"] = first_run(
                source,
                Path(folder) / "before",
                TrainingConfig(budget_minutes=UNBOUNDED_MINUTES),
                EmbeddingConfig(precision="int8"),
            )
    print(f"first run over {args.images} JPEGs of 640x480, {os.cpu_count()} cores")
    for name, run in runs.items():
        stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in run["stages"].items())
        budget = " (stopped at the budget)" if run["budget_reached"] else ""
        print(
            f"  {name}: {run['seconds']:.1f} s, {run['epochs']} epochs{budget}, {run['precision']}; {stages}"
        )
    print(json.dumps({"images": args.images, "cores": os.cpu_count(), **runs}))


if __name__ == "__main__":
    main()
