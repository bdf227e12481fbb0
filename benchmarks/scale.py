"""Ten million samples: the selection side of an incremental run against a large datapool.

    python -m benchmarks.scale [--pool 10000000] [--new 100000] [--dim 128] [--planted 1000]
        [--picks 1000] [--baseline-pool 200000] [--work DIR]

The benchmark makes a datapool of `--pool` clustered unit embeddings (1% of them picked by
earlier runs) as one manifest segment, and `--new` new embeddings, `--planted` of which are
near copies of pool samples. Then, in a fresh process (so that its peak memory is its own),
it runs with winnow's own functions what an incremental run does after embedding:

- plan: which listed keys are new, against the pool's keys and versions;
- near duplicates: each new row's nearest pool sample and the run's own, cosine 0.01;
- selection: REPRESENTATIVE picks `--picks`, the earlier picks as centres;
- quality: the picks against random subsets of the same size;
- commit: the run's manifest segment (and its index), written and uploaded to a local output;
- report: the run report over the run's `--new` samples (report.html and report.json, no
  PDF), on benchmarks/report.py's synthetic run of that size: a report reads the run, never
  the pool.

The baseline is today's whole-pool way, at `--baseline-pool` rows: every pool embedding in
memory for the near-duplicate search, and the whole manifest rewritten and uploaded by every
run. winnow's way runs at the same size too, then at `--pool`. A table, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks.memory import peak_rss_mb
from benchmarks.report import synthetic_run
from tasks.config import ReportConfig, SelectionConfig
from tasks.datapool.state import run_segment
from tasks.ingest.planning import plan_shards
from tasks.records.manifest import MANIFEST_SCHEMA
from tasks.records.segments import live_vectors, write_folded
from tasks.records.shards import Listing, write_listing
from tasks.report.build import write_report
from tasks.selection.choose import alone_picks
from tasks.selection.near_duplicates import find_near_duplicates, near_duplicates_given, pool_match
from tasks.selection.pool_index import build_segment_index
from tasks.selection.quality import selection_quality
from tasks.storage.interface import ObjectInfo
from tasks.storage.local import LocalStorage
from tasks.storage.shard_store import ShardStore

THRESHOLD = 0.01  # cosine distance of a near duplicate: re-encoded copies are within it
CENTRES = 2_000
CHUNK = 1_000_000  # pool rows made at a time
PICKED_EVERY = 100  # 1% of the pool was selected by earlier runs


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1, float32."""
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(rng: np.random.Generator, centres: np.ndarray, rows: int) -> np.ndarray:
    """`rows` unit vectors around `centres` (Zipf-sized clusters). Shape: (rows, D)"""
    weights = 1.0 / np.arange(1, len(centres) + 1) ** 0.8
    which = rng.choice(len(centres), size=rows, p=weights / weights.sum())
    return unit(centres[which] + 0.35 * rng.standard_normal((rows, centres.shape[1]), dtype=np.float32))


def pool_rows(start: int, vectors: np.ndarray) -> pa.Table:
    """Manifest rows of pool samples start.. with `vectors`: clean images, every 100th selected."""
    count = len(vectors)
    ids = [f"pool/{i:09d}.jpg" for i in range(start, start + count)]
    flat = pa.array(vectors.reshape(-1), pa.float32())
    offsets = pa.array(np.arange(0, (count + 1) * vectors.shape[1], vectors.shape[1], dtype=np.int32))
    return pa.table(
        {
            "id": ids,
            "key": ids,
            "version": pa.array(["1"] * count, pa.string()),
            "size": pa.array(np.ones(count, dtype=np.int64)),
            "status": pa.array(["ok"] * count, pa.string()),
            "reason": pa.nulls(count, pa.string()),
            "content_hash": ids,
            "embedding": pa.ListArray.from_arrays(offsets, flat),
            "selected": pa.array((np.arange(start, start + count) % PICKED_EVERY) == 0),
            "run_id": pa.array(["earlier"] * count, pa.string()),
        },
        schema=MANIFEST_SCHEMA,
    )


def make_data(work: Path, pool: int, new: int, dim: int, planted: int, seed: int) -> None:
    """The pool's segment, the new rows (planted copies first) and the listing, under `work`."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CENTRES, dim), dtype=np.float32)
    copied = np.sort(rng.choice(pool, size=planted, replace=False))
    originals = np.empty((planted, dim), dtype=np.float32)
    with pq.ParquetWriter(work / "pool.parquet", MANIFEST_SCHEMA) as writer:
        for start in range(0, pool, CHUNK):
            vectors = clustered(rng, centres, min(CHUNK, pool - start))
            inside = (copied >= start) & (copied < start + len(vectors))
            originals[inside] = vectors[copied[inside] - start]
            writer.write_table(pool_rows(start, vectors))
    # A planted copy is its original nudged by a cosine distance of about 1e-4.
    copies = unit(originals + 0.014 * rng.standard_normal(originals.shape, dtype=np.float32) / np.sqrt(dim))
    np.save(work / "new.npy", np.concatenate([copies, clustered(rng, centres, new - planted)]))
    (work / "planted.txt").write_text("".join(f"pool/{i:09d}.jpg\n" for i in copied))
    keys = [f"pool/{i:09d}.jpg" for i in range(pool)] + [f"new/{i:07d}.jpg" for i in range(new)]
    listing = write_listing("synthetic", [ObjectInfo(key, 1, "1") for key in keys], work / "listing")
    (work / "listing.json").write_text(listing.model_dump_json())


@contextmanager
def stage(seconds: dict[str, float], name: str) -> Iterator[None]:
    """Time the block as stage `name`, and note the process's peak memory once it is over."""
    started = time.perf_counter()
    yield
    seconds[name] = round(time.perf_counter() - started, 2)
    PEAK_AFTER[name] = peak_rss_gb()


# The process's peak memory (GB) as each stage ended: which stage set the peak.
PEAK_AFTER: dict[str, float] = {}


def peak_rss_gb() -> float:
    """This process's peak resident memory so far, in GB."""
    return round(peak_rss_mb() / 2**10, 2)


def incremental_run(work: Path, picks: int, whole: bool) -> dict[str, Any]:
    """An incremental run's selection side over the data in `work` (whole: today's whole-pool way)."""
    seconds: dict[str, float] = {}
    listing = Listing.model_validate_json((work / "listing.json").read_text())
    output = LocalStorage(work / "output")
    with stage(seconds, "plan"):
        index = work / "pool.faiss"
        plan = plan_shards(
            listing,
            [str(work / "pool.parquet")],
            [str(index) if index.exists() else None],
            False,
            10_000,
            ShardStore(root=str(work / "shards")),
            work / "plan",
        )
    new = np.load(work / "new.npy")
    ids = [f"new/{i:07d}.jpg" for i in range(len(new))]
    with stage(seconds, "near_duplicates"):
        if whole:
            earlier_ids, earlier = live_vectors(plan.kept_segments)
            removed = find_near_duplicates(ids, new, THRESHOLD, earlier_ids, earlier)
            del earlier
        else:
            removed = near_duplicates_given(
                ids, new, THRESHOLD, pool_match(new, plan.kept_segments, plan.pool_indexes)
            )
    clean = np.array([i not in removed for i in ids], dtype=bool)
    candidates = new[clean]
    with stage(seconds, "selection"):
        _, chosen = live_vectors(plan.kept_segments, selected_only=True)
        picked, _, _ = alone_picks(candidates, picks, SelectionConfig(), chosen)
    with stage(seconds, "quality"):
        selection_quality(candidates, picked, 0, earlier=chosen)
    with stage(seconds, "commit"):
        clean_ids = [i for i, c in zip(ids, clean, strict=True) if c]
        processed = pa.table(
            {
                "id": ids,
                "key": ids,
                "status": ["ok" if c else "duplicate" for c in clean],
                "reason": pa.nulls(len(ids), pa.string()),
                "content_hash": ids,
                "duplicate_of": pa.nulls(len(ids), pa.string()),
            }
        )
        embeddings = dict(zip(clean_ids, candidates, strict=True))
        segment = run_segment(plan, processed, embeddings, {clean_ids[i] for i in picked}, "bench")
        path = work / "segment.parquet"
        pq.write_table(segment, path)
        if whole:  # today's way: the whole manifest, kept rows and this run's, every run
            write_folded([*plan.kept_segments, str(path)], work / "manifest.parquet")
            path = work / "manifest.parquet"
        files = [path]
        if not whole and build_segment_index(str(path), path.with_suffix(".faiss")):
            files.append(path.with_suffix(".faiss"))
        written = sum(file.stat().st_size for file in files)
        for file in files:
            output.upload_file(f"datapool/bench/manifests/00000002-bench{file.suffix}", file)
    (work / "report").mkdir(exist_ok=True)
    record, samples, table, selection, images = synthetic_run(
        work / "report", len(ids), new.shape[1], picks, 0
    )
    with stage(seconds, "report"):
        write_report(record, samples, table, selection, images, ReportConfig(pdf=False), work / "report")
    originals = (work / "planted.txt").read_text().splitlines()
    found = sum(removed.get(i, ("",))[0] == original for i, original in zip(ids, originals, strict=False))
    return {
        "seconds": seconds,
        "selection_side_seconds": round(sum(seconds.values()), 1),
        "peak_rss_gb": peak_rss_gb(),
        "peak_rss_gb_after": PEAK_AFTER,
        "bytes_written_per_run": written,
        "near_duplicates_planted": len(originals),
        "near_duplicates_found": found,
        "near_duplicates_removed": len(removed),
        "picks": len(picked),
    }


def in_fresh_process(arguments: list[str]) -> dict[str, Any]:
    """The JSON line that this benchmark, run with `arguments` in a process of its own, prints."""
    command = [sys.executable, "-m", "benchmarks.scale", *arguments]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def build_pool_index(work: Path) -> dict[str, Any]:
    """Build the pool segment's index as a compaction does: its seconds and the process's peak memory."""
    started = time.perf_counter()
    build_segment_index(str(work / "pool.parquet"), work / "pool.faiss")
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "peak_rss_gb": peak_rss_gb(),
        "bytes": (work / "pool.faiss").stat().st_size,
    }


def measure(pool: int, args: argparse.Namespace, whole_too: bool) -> dict[str, Any]:
    """Make the data at `pool` rows and run winnow's way (and today's, if asked), each in a fresh process."""
    work = Path(tempfile.mkdtemp(prefix=f"scale-{pool}-", dir=args.work))
    try:
        started = time.perf_counter()
        make_data(work, pool, args.new, args.dim, args.planted, args.seed)
        made = round(time.perf_counter() - started, 1)
        # Once a compaction, never in a run: the pool segment's index, in a process of its own.
        figures = {
            "pool_rows": pool,
            "made_in_s": made,
            "pool_index": in_fresh_process(["--build-index", str(work)]),
        }
        for way in ["whole", "segments"] if whole_too else ["segments"]:
            whole = ["--whole"] if way == "whole" else []
            figures[way] = in_fresh_process(["--run", str(work), "--picks", str(args.picks), *whole])
            shutil.rmtree(work / "output", ignore_errors=True)
            shutil.rmtree(work / "plan", ignore_errors=True)
        return figures
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=10_000_000)
    parser.add_argument("--new", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--planted", type=int, default=1_000)
    parser.add_argument("--picks", type=int, default=1_000)
    parser.add_argument("--baseline-pool", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for the data (default: a temporary one)"
    )
    parser.add_argument("--run", type=Path, help=argparse.SUPPRESS)  # the fresh process's own phase
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--build-index", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build_index is not None:
        print(json.dumps(build_pool_index(args.build_index)))
        return
    if args.run is not None:
        print(json.dumps(incremental_run(args.run, args.picks, args.whole)))
        return
    baseline = measure(args.baseline_pool, args, whole_too=True)
    large = measure(args.pool, args, whole_too=False)
    rows = [
        (f"today's way, {baseline['pool_rows']:,}", baseline["whole"]),
        (f"winnow, {baseline['pool_rows']:,}", baseline["segments"]),
        (f"winnow, {large['pool_rows']:,}", large["segments"]),
    ]
    stages = list(baseline["whole"]["seconds"])
    print(
        f"{'pool':<28}"
        + "".join(f"{s:>16}" for s in stages)
        + f"{'total s':>10}{'RSS GB':>8}{'MB written':>12}{'dups':>10}"
    )
    for label, run in rows:
        print(
            f"{label:<28}"
            + "".join(f"{run['seconds'][s]:>16.1f}" for s in stages)
            + f"{run['selection_side_seconds']:>10.1f}{run['peak_rss_gb']:>8.2f}"
            + f"{run['bytes_written_per_run'] / 2**20:>12.1f}"
            + f"{run['near_duplicates_found']:>5}/{run['near_duplicates_planted']:<4}"
        )
    print(
        f"pool index (built once a compaction): {large['pool_index']['seconds']:.1f} s, "
        f"{large['pool_index']['peak_rss_gb']:.2f} GB peak, {large['pool_index']['bytes'] / 2**20:.0f} MB"
    )
    head = {"pool_rows": large["pool_rows"], "new_rows": args.new}
    print(json.dumps(head | large["segments"] | {"pool_index": large["pool_index"], "baseline": baseline}))


if __name__ == "__main__":
    main()
