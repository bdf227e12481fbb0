"""The inspect stage's cost an image and how it scales: threads alone against decoding processes.

    python -m benchmarks.inspect [--images 600] [--workers 1,2] [--rounds 2]
                                 [--jpeg-decoder pillow|nvimgcodec]

Writes --images 640x480 JPEGs (crops of scikit-image's photographs, as benchmarks.embed_e2e),
then inspects them as one shard with the stage's own code (draft decode, hashing, metadata,
the uint8 cache at model resolution):
- threads: this process's threads alone, as a Dask worker inspects (and as the local engine
  did before it decoded in processes): the Python part of each image holds the GIL;
- processes: the local engine's way, the threads handing batches of images to --workers
  decoding processes (tasks/media/processes.py), started and warmed up before the clock.
CPU time is user + system time of this process and of the decoding workers (psutil), so
`cpu_ms_per_image` is what an image costs whatever runs it. Rounds alternate the forms; the
best round counts. Prints a JSON object of figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psutil

from benchmarks.embed_e2e import write_photos
from tasks.config import ChecksConfig, VideoConfig
from tasks.ingest.listing import list_samples
from tasks.media.examine import bytes_hash
from tasks.media.inspection import inspect_shard_files
from tasks.media.processes import decoding_executor, decoding_in_processes
from tasks.storage.interface import ObjectInfo
from tasks.storage.local import LocalStorage

INPUT_SIZE = 64


def cpu_seconds() -> float:
    """User + system CPU time of this process and its live children (the decoding workers)."""
    processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def warm_up(workers: int) -> None:
    """Start the decoding workers (and import the stage's modules in them) before the clock starts."""
    # Each call names a function of the stage's module, so the worker that runs it imports it.
    list(decoding_executor(workers).map(bytes_hash, [b""] * (4 * workers)))


def timed(
    root: Path, objects: list[ObjectInfo], scratch: Path, workers: int, checks: ChecksConfig
) -> tuple[float, float]:
    """(images/s, CPU ms an image) for one shard: threads alone (0 workers) or with `workers` processes."""
    if workers:
        warm_up(workers)
    directory = scratch / f"shard-{workers}-{time.monotonic_ns()}"
    directory.mkdir(parents=True)
    cpu, started = cpu_seconds(), time.perf_counter()
    with decoding_in_processes(workers):
        ok, _ = inspect_shard_files(
            objects, 0, LocalStorage(root), INPUT_SIZE, checks, VideoConfig(), directory
        )
    wall = time.perf_counter() - started
    assert ok == len(objects), f"{len(objects) - ok} images failed to inspect"
    return len(objects) / wall, 1000 * (cpu_seconds() - cpu) / len(objects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--workers", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--jpeg-decoder", default="pillow", choices=["pillow", "nvimgcodec"], help="checks.jpeg_decoder"
    )
    args = parser.parse_args()
    checks = ChecksConfig(jpeg_decoder=args.jpeg_decoder)
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="winnow-inspect-") as folder:
        root, scratch = Path(folder) / "photos", Path(folder) / "scratch"
        write_photos(root, args.images)
        objects = list(list_samples(LocalStorage(root), None))
        threads: list[tuple[float, float]] = []
        processes: dict[int, list[tuple[float, float]]] = {w: [] for w in counts}
        for _ in range(args.rounds):
            threads.append(timed(root, objects, scratch, 0, checks))
            for workers in counts:
                processes[workers].append(timed(root, objects, scratch, workers, checks))
    best_threads = max(threads)
    best = {w: max(rounds) for w, rounds in processes.items()}
    print(
        f"{args.images} images of 640x480, {os.cpu_count()} cores, JPEGs decoded by {args.jpeg_decoder}, "
        f"best of {args.rounds} rounds"
    )
    print(f"  threads alone:          {best_threads[0]:7.1f} images/s, {best_threads[1]:.2f} CPU-ms an image")
    for workers, (rate, cpu) in best.items():
        print(f"  {workers} decoding process(es): {rate:7.1f} images/s, {cpu:.2f} CPU-ms an image")
    figures = {
        "images": args.images,
        "cores": os.cpu_count(),
        "jpeg_decoder": args.jpeg_decoder,
        "cpu_ms_per_image": round(min(cpu for _, cpu in [best_threads, *best.values()]), 3),
        "cpu_ms_per_image_threads": round(best_threads[1], 3),
        "images_per_second_threads": round(best_threads[0], 1),
        "images_per_second_by_workers": {str(w): round(rate, 1) for w, (rate, _) in best.items()},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
