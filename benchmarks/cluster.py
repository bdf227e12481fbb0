"""Inspect + embed throughput: engine dask on a 2-worker LocalCluster against engine local,
on the same machine and data.

    python -m benchmarks.cluster [--images 3000] [--side 256] [--shard-size 250] [--rounds 2]

Each round runs the curate flow once with each engine, interleaved, each into a fresh
output (nothing cached), with a seeded untrained network (training is no part of the
comparison and stays in the flow's process either way). Throughput is the images over the
run's inspect + embed seconds (run.json's timings); each engine's best round counts, as
the machine is shared. The cluster is the one `engine: dask` starts without an address
(two single-threaded worker processes here), started by each cluster run before its
inspect stage, so outside the timed stages; its start (the workers import the shard tasks'
modules as they start) is printed apart, as `cluster_start_s`. On a machine of n cores the
cluster cannot be faster than the local thread pool, which already uses them all; the
figure is its overhead. Prints a JSON object of figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from examples.make_images import SCENES, write_scene_crops


def images_per_second(record: dict[str, Any]) -> float:
    seconds = record["timings"]["inspect"] + record["timings"]["embed"]
    return record["counts"]["embedded"] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--side", type=int, default=256, help="JPEG side in pixels")
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from prefect.testing.utilities import prefect_test_harness

    from flows.curate import curate

    with tempfile.TemporaryDirectory() as folder, prefect_test_harness(server_startup_timeout=120):
        source = Path(folder) / "source"
        keys = write_scene_crops(source, SCENES, math.ceil(args.images / len(SCENES)), side=args.side)
        engines = {"local": {"engine": "local"}, "cluster": {"engine": "dask", "n_workers": 2}}
        speeds: dict[str, list[float]] = {name: [] for name in engines}
        starts: list[float] = []
        for round_ in range(args.rounds):
            for name, execution in engines.items():
                record = curate(
                    source=str(source),
                    output=str(Path(folder) / f"{name}-{round_}"),
                    n_samples=10,
                    training={"enabled": False},
                    inputs={"shard_size": args.shard_size},
                    report={"enabled": False},
                    execution=execution,
                )
                speeds[name].append(images_per_second(record))
                if name == "cluster":
                    starts.append(record["timings"]["cluster_start"])
                print(f"round {round_} {name}: {speeds[name][-1]:.1f} img/s ({record['timings']})")

    local, clustered = max(speeds["local"]), max(speeds["cluster"])
    print(
        json.dumps(
            {
                "local_img_per_s": round(local, 1),
                "cluster_img_per_s": round(clustered, 1),
                "overhead_ratio": round(local / clustered, 3),
                "cluster_start_s": min(starts),
                "images": len(keys),
                "side_px": args.side,
                "shards": math.ceil(len(keys) / args.shard_size),
                "cpus": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()
