"""The inspect stage's cost an image and how it scales: threads of one process against processes.

    python -m benchmarks.inspect [--images 600] [--workers 1,2] [--rounds 2]

Writes --images 640x480 JPEGs (crops of scikit-image's photographs, as benchmarks.embed_e2e),
then inspects them with the stage's own code (draft decode, hashing, metadata, the uint8
cache at model resolution):
- threads: one shard in this process, as the local engine runs it (its thread pool holds
  the GIL for the Python part of each image);
- processes: the images split into one shard a worker, each inspected in its own process
  (spawned and warmed up before the clock starts), for each --workers count.
CPU time is the processes' user + system time (getrusage), so `cpu_ms_per_image` is what an
image costs whatever runs it. Rounds alternate the forms; the best round counts. Prints a
JSON object of figures on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.embed_e2e import write_photos
from tasks.config import ChecksConfig, VideoConfig
from tasks.ingest.listing import list_samples
from tasks.media.inspection import inspect_shard_files
from tasks.storage.interface import ObjectInfo
from tasks.storage.local import LocalStorage

INPUT_SIZE = 64


def cpu_seconds() -> float:
    """User + system CPU time of this process and the children it has waited for."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def inspect_part(root: str, objects: list[ObjectInfo], index: int, scratch: str) -> tuple[int, float]:
    """Inspect `objects` as shard `index` into a fresh folder; (clean images, CPU seconds it took)."""
    started = time.process_time()
    directory = Path(scratch) / f"shard-{index}-{time.monotonic_ns()}"
    directory.mkdir(parents=True)
    ok, _ = inspect_shard_files(
        objects, index, LocalStorage(Path(root)), INPUT_SIZE, ChecksConfig(), VideoConfig(), directory
    )
    return ok, time.process_time() - started


def warm_up(_: int) -> int:
    """Start a worker (and import the stage's modules in it) before the clock starts."""
    return os.getpid()


def timed_threads(root: Path, objects: list[ObjectInfo], scratch: Path) -> tuple[float, float]:
    """(images/s, CPU ms an image) for one shard inspected on this process's threads."""
    cpu, started = cpu_seconds(), time.perf_counter()
    ok, _ = inspect_part(str(root), objects, 0, str(scratch))
    wall = time.perf_counter() - started
    assert ok == len(objects), f"{len(objects) - ok} images failed to inspect"
    return len(objects) / wall, 1000 * (cpu_seconds() - cpu) / len(objects)


def timed_processes(
    root: Path, objects: list[ObjectInfo], scratch: Path, workers: int
) -> tuple[float, float]:
    """(images/s, CPU ms an image) for `workers` processes, one shard each."""
    parts = [objects[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(warm_up, range(workers)))
        started = time.perf_counter()
        results = list(
            pool.map(inspect_part, [str(root)] * workers, parts, range(workers), [str(scratch)] * workers)
        )
        wall = time.perf_counter() - started
    assert sum(ok for ok, _ in results) == len(objects), "images failed to inspect"
    return len(objects) / wall, 1000 * sum(cpu for _, cpu in results) / len(objects)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--workers", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    with tempfile.TemporaryDirectory(prefix="winnow-inspect-") as folder:
        root, scratch = Path(folder) / "photos", Path(folder) / "scratch"
        write_photos(root, args.images)
        objects = list(list_samples(LocalStorage(root), None))
        threads: list[tuple[float, float]] = []
        processes: dict[int, list[tuple[float, float]]] = {w: [] for w in counts}
        for _ in range(args.rounds):
            threads.append(timed_threads(root, objects, scratch))
            for workers in counts:
                processes[workers].append(timed_processes(root, objects, scratch, workers))
    best_threads = max(threads)
    best = {w: max(rounds) for w, rounds in processes.items()}
    print(f"{args.images} images of 640x480, {os.cpu_count()} cores, best of {args.rounds} rounds")
    print(f"  threads of one process: {best_threads[0]:7.1f} images/s, {best_threads[1]:.2f} CPU-ms an image")
    for workers, (rate, cpu) in best.items():
        print(f"  {workers} process(es):         {rate:7.1f} images/s, {cpu:.2f} CPU-ms an image")
    figures = {
        "images": args.images,
        "cores": os.cpu_count(),
        "cpu_ms_per_image": round(min(cpu for _, cpu in [best_threads, *best.values()]), 3),
        "cpu_ms_per_image_threads": round(best_threads[1], 3),
        "images_per_second_threads": round(best_threads[0], 1),
        "images_per_second_by_workers": {str(w): round(rate, 1) for w, (rate, _) in best.items()},
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
