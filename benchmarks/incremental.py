"""A first run over a corpus, then the same command after 5% new images: the datapool
makes the second run process only what is new.

    python -m benchmarks.incremental [--images 420] [--new-share 0.05] [--epochs 5]

Both runs are the `curate` flow on a local folder (same process, one Prefect test server
started before timing). The first trains the model; the second reuses the datapool's
model, inspects and embeds only the new images, and selects against earlier picks.
Prints a JSON object of figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from examples.make_images import SCENES, write_scene_crops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=420, help="images in the first corpus")
    parser.add_argument("--new-share", type=float, default=0.05, help="new images before the second run")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from flows.curate import curate

    per_scene = math.ceil(args.images / len(SCENES))
    new_per_scene = max(1, round(per_scene * args.new_share))
    training = {"epochs": args.epochs}
    with tempfile.TemporaryDirectory() as folder, prefect_test_harness(server_startup_timeout=120):
        source, output = Path(folder) / "source", Path(folder) / "output"
        first_keys = write_scene_crops(source, SCENES, per_scene, side=96, seed=0)
        started = time.perf_counter()
        first = curate(source=str(source), output=str(output), proportion=0.1, training=training)
        first_seconds = time.perf_counter() - started

        write_scene_crops(source / "week-2", SCENES, new_per_scene, side=96, seed=1)
        started = time.perf_counter()
        second = curate(source=str(source), output=str(output), proportion=0.1, training=training)
        second_seconds = time.perf_counter() - started

    assert second["counts"]["new"] == new_per_scene * len(SCENES), second["counts"]
    for name, record, seconds in (("first", first, first_seconds), ("incremental", second, second_seconds)):
        counts = record["counts"]
        stages = ", ".join(f"{stage} {t:.1f}s" for stage, t in record["timings"].items())
        print(f"{name}: {seconds:.1f} s for {counts['new']} new of {counts['discovered']} images ({stages})")
    print(
        json.dumps(
            {
                "first_run_s": round(first_seconds, 2),
                "incremental_run_s": round(second_seconds, 2),
                "ratio": round(second_seconds / first_seconds, 3),
                "first_images": len(first_keys),
                "new_images": second["counts"]["new"],
                "epochs": args.epochs,
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
