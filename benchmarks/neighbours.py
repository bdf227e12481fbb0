"""Nearest-neighbour libraries for the datapool's near-duplicate index: build rate, memory, save/load
(and memory-mapped view where a library has one), query rate and near-duplicate accuracy.

    python -m benchmarks.neighbours [--pool 100000] [--queries 10000] [--threads 2]
    python -m benchmarks.neighbours --pool 1000000 --queries 100000 --threads 2 --libraries usearch-f16

usearch and hnswlib come with `pip install -e ".[neighbours]"`; a library that is not installed
gets its error in its row, and the others are measured.

The datapool checks NEW rows (queries) against a large POOL of L2-normalised embeddings: a
query is a near duplicate when some pool row lies within cosine distance `--threshold`. The
target is a 10M-row pool and 100k queries on a 2-core box under 8 GB peak RSS, with one index
per appended segment (merged at compaction), so per-row memory, build rate and load/view time
count as much as query speed.

The pool is unit vectors around a few thousand centres (log-normal cluster weights, varied
spreads, so some clusters are dense enough to hold natural near duplicates). A fraction of the
queries are planted near duplicates (a random pool row plus tiny noise, cosine distance ~0.001);
the rest are fresh draws from the same clusters. Exact answers come from faiss's IndexFlatIP.

Each candidate runs in a fresh subprocess, so one library's memory does not hide another's; it
reads the pool from a raw file in chunks, so its RSS growth is its index (plus one chunk). Per
candidate: build seconds, saved bytes, RSS growth after the build and peak RSS growth, load
seconds, view seconds (and the query seconds through the view), query seconds for all queries at
k=1, planted recall (planted queries reported within the threshold), false positives (fresh
queries reported within the threshold whose exact nearest is not) and misses (fresh queries whose
exact nearest is within it but the reported one is not), and top-1 agreement with the exact
search. The search knob (ef for the graphs, nprobe for IVF) is also swept on the built index, no
rebuild, in a second table. Prints the tables, then a JSON object of figures last.

Synthetic centres in 128-d are nearly orthogonal, so clusters are far apart with no gradient
between them: a hard case for graph indexes (HNSW), an easy one for IVF's exhaustive coarse step.
Check a graph index's recall on real embeddings before ruling it out.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.memory import peak_rss_mb

DIM = 128
CHUNK = 100_000
LIBRARIES = ("faiss-hnsw", "faiss-hnsw-sq16", "faiss-ivf", "usearch-f32", "usearch-f16", "hnswlib")
EXTRA = ("faiss-ivf-sq16", "faiss-hnsw-sq8", "usearch-i8")


# ---- data -------------------------------------------------------------------------------------


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@dataclass
class Clusters:
    centres: np.ndarray  # (clusters, dim), unit
    weights: np.ndarray  # (clusters,), sums to 1
    spreads: np.ndarray  # (clusters,), noise norm around the centre

    def draw(self, rows: int, rng: np.random.Generator) -> np.ndarray:
        labels = rng.choice(len(self.centres), size=rows, p=self.weights)
        noise = rng.standard_normal((rows, self.centres.shape[1]), dtype=np.float32)
        noise *= (self.spreads[labels] / np.sqrt(self.centres.shape[1]))[:, None]
        return unit(self.centres[labels] + noise)


def make_clusters(count: int, dim: int, rng: np.random.Generator) -> Clusters:
    weights = rng.lognormal(0.0, 1.0, count)
    return Clusters(
        centres=unit(rng.standard_normal((count, dim))),
        weights=weights / weights.sum(),
        spreads=rng.uniform(0.15, 0.6, count).astype(np.float32),
    )


def write_pool(path: Path, clusters: Clusters, rows: int, rng: np.random.Generator) -> None:
    """Raw float32 rows, drawn and written a chunk at a time; rows come in random cluster order."""
    with path.open("wb") as out:
        for start in range(0, rows, CHUNK):
            clusters.draw(min(CHUNK, rows - start), rng).tofile(out)


def read_rows(path: Path, start: int, stop: int) -> np.ndarray:
    count = (stop - start) * DIM
    return np.fromfile(path, dtype=np.float32, count=count, offset=start * DIM * 4).reshape(-1, DIM)


def pool_rows(path: Path) -> int:
    return path.stat().st_size // (DIM * 4)


def make_queries(
    pool: Path, clusters: Clusters, count: int, planted_share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Queries, the first `planted` of them near copies of random pool rows (noise norm 0.05, so
    cosine distance ~0.00125), the rest fresh. Returns (queries, planted mask), shuffled together."""
    planted = round(count * planted_share)
    sources = np.sort(rng.choice(pool_rows(pool), size=planted, replace=False))
    copies = np.concatenate([read_rows(pool, int(i), int(i) + 1) for i in sources]) if planted else None
    noise = 0.05 * rng.standard_normal((planted, DIM), dtype=np.float32) / np.sqrt(DIM)
    near = unit(copies + noise) if copies is not None else np.empty((0, DIM), np.float32)
    queries = np.concatenate([near, clusters.draw(count - planted, rng)])
    mask = np.arange(count) < planted
    order = rng.permutation(count)
    return np.ascontiguousarray(queries[order]), mask[order]


def exact_nearest(pool: Path, queries: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact nearest pool row and its cosine distance per query (faiss IndexFlatIP, pool in chunks)."""
    import faiss

    faiss.omp_set_num_threads(threads)
    best = np.full(len(queries), -np.inf, dtype=np.float32)
    ids = np.full(len(queries), -1, dtype=np.int64)
    rows = pool_rows(pool)
    for start in range(0, rows, 10 * CHUNK):
        flat = faiss.IndexFlatIP(DIM)
        flat.add(read_rows(pool, start, min(rows, start + 10 * CHUNK)))
        similarity, found = flat.search(queries, 1)
        better = similarity[:, 0] > best
        best[better], ids[better] = similarity[better, 0], found[better, 0] + start
    return ids, 1.0 - best


# ---- candidates (run in the worker subprocess) ----------------------------------------------------


@dataclass
class Settings:
    threads: int
    m: int
    ef_construction: int
    ef_search: int
    nprobe: int
    ef_sweep: tuple[int, ...]
    nprobe_sweep: tuple[int, ...]


class Candidate:
    """One library and setting: build from the pool file, search, save, load and (maybe) view.
    `effort` is the search knob: ef for the graphs, nprobe for IVF."""

    view_supported = False
    knob = "ef"

    def efforts(self) -> list[int]:
        """The chosen effort first, then the sweep's others."""
        s = self.settings
        chosen, sweep = (s.nprobe, s.nprobe_sweep) if self.knob == "nprobe" else (s.ef_search, s.ef_sweep)
        return [chosen, *(effort for effort in sweep if effort != chosen)]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def build(self, pool: Path) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray, effort: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest pool row and the library's cosine distance to it, per query."""
        raise NotImplementedError

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def load(self, path: Path, view: bool) -> None:
        raise NotImplementedError

    def drop(self) -> None:
        self.index: Any = None
        gc.collect()


class FaissCandidate(Candidate):
    """faiss with the inner product on unit vectors (cosine distance = 1 - inner product)."""

    factory: Callable[[Settings, int], Any]
    view_supported = True
    parameter = "efSearch"

    def build(self, pool: Path) -> None:
        import faiss

        faiss.omp_set_num_threads(self.settings.threads)
        rows = pool_rows(pool)
        self.index = type(self).factory(self.settings, rows)
        if not self.index.is_trained:
            self.train(read_rows(pool, 0, min(rows, self.training_rows(rows))))
        for start in range(0, rows, CHUNK):
            self.index.add(read_rows(pool, start, min(rows, start + CHUNK)))

    def training_rows(self, rows: int) -> int:
        return min(rows, 10_000)

    def train(self, sample: np.ndarray) -> None:
        self.index.train(sample)

    def search(self, queries: np.ndarray, effort: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        faiss.ParameterSpace().set_index_parameter(self.index, self.parameter, effort)
        similarity, ids = self.index.search(queries, 1)
        return ids[:, 0], 1.0 - similarity[:, 0]

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index, str(path))

    def load(self, path: Path, view: bool) -> None:
        import faiss

        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if view else 0
        self.index = faiss.read_index(str(path), flags)


def hnsw_flat(s: Settings, rows: int) -> Any:
    import faiss

    index = faiss.IndexHNSWFlat(DIM, s.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = s.ef_construction
    return index


def hnsw_sq(quantizer: str) -> Callable[[Settings, int], Any]:
    def factory(s: Settings, rows: int) -> Any:
        import faiss

        kind = getattr(faiss.ScalarQuantizer, quantizer)
        index = faiss.IndexHNSWSQ(DIM, kind, s.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = s.ef_construction
        return index

    return factory


def ivf_lists(rows: int) -> int:
    return max(1, round(4 * math.sqrt(rows)))


def ivf_flat(s: Settings, rows: int) -> Any:
    import faiss

    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(DIM), DIM, ivf_lists(rows), faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    return index


def ivf_sq16(s: Settings, rows: int) -> Any:
    import faiss

    quantizer, fp16 = faiss.IndexFlatIP(DIM), faiss.ScalarQuantizer.QT_fp16
    index = faiss.IndexIVFScalarQuantizer(quantizer, DIM, ivf_lists(rows), fp16, faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = 10
    return index


class FaissHNSW(FaissCandidate):
    factory = staticmethod(hnsw_flat)


class FaissHNSWSQ16(FaissCandidate):
    factory = staticmethod(hnsw_sq("QT_fp16"))


class FaissHNSWSQ8(FaissCandidate):
    factory = staticmethod(hnsw_sq("QT_8bit"))


class FaissIVF(FaissCandidate):
    """IVFFlat with nlist = 4 sqrt(N), k-means (10 iterations) on the first 50 nlist pool rows
    (the pool file is in random cluster order, so these are a random sample)."""

    factory = staticmethod(ivf_flat)
    knob = "nprobe"
    parameter = "nprobe"

    def training_rows(self, rows: int) -> int:
        return 50 * ivf_lists(rows)


class FaissIVFSQ16(FaissIVF):
    """IVF as above, rows stored as fp16 (half IVFFlat's bytes)."""

    factory = staticmethod(ivf_sq16)


class USearch(Candidate):
    """usearch, metric cos; `Index.restore(path, view=True)` maps the saved file."""

    dtype = "f32"
    view_supported = True

    def build(self, pool: Path) -> None:
        from usearch.index import Index

        s = self.settings
        self.index = Index(
            ndim=DIM,
            metric="cos",
            dtype=self.dtype,
            connectivity=s.m,
            expansion_add=s.ef_construction,
            expansion_search=s.ef_search,
        )
        rows = pool_rows(pool)
        for start in range(0, rows, CHUNK):
            stop = min(rows, start + CHUNK)
            keys = np.arange(start, stop, dtype=np.uint64)
            self.index.add(keys, read_rows(pool, start, stop), threads=s.threads)

    def search(self, queries: np.ndarray, effort: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.expansion_search = effort
        matches = self.index.search(queries, 1, threads=self.settings.threads)
        return matches.keys[:, 0].astype(np.int64), matches.distances[:, 0]

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    def load(self, path: Path, view: bool) -> None:
        from usearch.index import Index

        self.index = Index.restore(str(path), view=view)


class USearchF16(USearch):
    dtype = "f16"


class USearchI8(USearch):
    dtype = "i8"


class HNSWLib(Candidate):
    """hnswlib, space 'cosine' (it stores normalised copies)."""

    def build(self, pool: Path) -> None:
        import hnswlib

        s = self.settings
        rows = pool_rows(pool)
        self.index = hnswlib.Index(space="cosine", dim=DIM)
        self.index.init_index(max_elements=rows, ef_construction=s.ef_construction, M=s.m)
        for start in range(0, rows, CHUNK):
            stop = min(rows, start + CHUNK)
            self.index.add_items(read_rows(pool, start, stop), np.arange(start, stop), num_threads=s.threads)

    def search(self, queries: np.ndarray, effort: int) -> tuple[np.ndarray, np.ndarray]:
        self.index.set_ef(effort)
        ids, distances = self.index.knn_query(queries, k=1, num_threads=self.settings.threads)
        return ids[:, 0].astype(np.int64), distances[:, 0]

    def save(self, path: Path) -> None:
        self.index.save_index(str(path))

    def load(self, path: Path, view: bool) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="cosine", dim=DIM)
        self.index.load_index(str(path))


CANDIDATES: dict[str, type[Candidate]] = {
    "faiss-hnsw": FaissHNSW,
    "faiss-hnsw-sq16": FaissHNSWSQ16,
    "faiss-hnsw-sq8": FaissHNSWSQ8,
    "faiss-ivf": FaissIVF,
    "faiss-ivf-sq16": FaissIVFSQ16,
    "usearch-f32": USearch,
    "usearch-f16": USearchF16,
    "usearch-i8": USearchI8,
    "hnswlib": HNSWLib,
}


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def reset_peak_rss() -> None:
    """Restart the peak at the current RSS (Linux 4.0+), so import transients do not count."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = step()
    return time.perf_counter() - started, result


def searches(candidate: Candidate, queries: np.ndarray, data: Path, name: str) -> dict[int, float]:
    """Search at each effort, saving the answers for the parent. Returns {effort: seconds}."""
    seconds = {}
    for effort in candidate.efforts():
        seconds[effort], (ids, distances) = timed(partial(candidate.search, queries, effort))
        np.save(data / f"{name}.{effort}.ids.npy", ids)
        np.save(data / f"{name}.{effort}.distances.npy", distances)
    return seconds


def view_figures(
    candidate: Candidate, path: Path, queries: np.ndarray, data: Path, name: str
) -> dict[str, Any]:
    """Open the saved index as a memory-mapped view and search it at the chosen effort."""
    effort = candidate.efforts()[0]
    try:
        before = rss_mb()
        view_s, _ = timed(lambda: candidate.load(path, view=True))
        opened = rss_mb()
        query_s, (ids, _) = timed(lambda: candidate.search(queries, effort))
    except Exception as error:  # a library may not map this index type
        return {"view_error": f"{type(error).__name__}: {error}"[:200]}
    same = float(np.mean(ids == np.load(data / f"{name}.{effort}.ids.npy")))
    return {"view_s": view_s, "view_rss_mb": opened - before, "view_query_s": query_s, "view_same": same}


def run_worker(name: str, data: Path, settings: Settings) -> dict[str, Any]:
    """Build, search, save, load and view one candidate; writes its answers to `data`."""
    candidate = CANDIDATES[name](settings)
    queries = np.load(data / "queries.npy")
    base = rss_mb()
    reset_peak_rss()
    build_s, _ = timed(lambda: candidate.build(data / "pool.f32"))
    built = rss_mb()
    build_peak = peak_rss_mb()
    sweep = searches(candidate, queries, data, name)
    path = data / f"{name}.index"
    save_s, _ = timed(lambda: candidate.save(path))
    figures: dict[str, Any] = {
        "knob": candidate.knob,
        "effort": candidate.efforts()[0],
        "build_s": build_s,
        "query_s": sweep[candidate.efforts()[0]],
        "sweep_query_s": sweep,
        "save_s": save_s,
        "index_bytes": path.stat().st_size,
        "rss_base_mb": base,
        "rss_index_mb": built - base,
        "build_peak_growth_mb": build_peak - base,
        "peak_growth_mb": peak_rss_mb() - base,
    }
    candidate.drop()
    figures["load_s"], _ = timed(lambda: candidate.load(path, view=False))
    candidate.drop()
    if candidate.view_supported:
        figures |= view_figures(candidate, path, queries, data, name)
        candidate.drop()
    path.unlink()
    return figures


# ---- parent: data, one subprocess per candidate, evaluation, report -------------------------------


def spawn(name: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.neighbours", "--worker", name, "--data", str(data)]
    for flag in ("threads", "m", "ef_construction", "ef_search", "nprobe", "ef_sweep", "nprobe_sweep"):
        command += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    threads = str(args.threads)
    env = os.environ | {f"{lib}_NUM_THREADS": threads for lib in ("OMP", "OPENBLAS", "MKL")}
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1]
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {done.returncode}: {' | '.join(tail)}"[:400]}
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Truth:
    ids: np.ndarray
    distances: np.ndarray
    planted: np.ndarray


def accuracy(data: Path, stem: str, truth: Truth, threshold: float) -> dict[str, float | int]:
    ids = np.load(data / f"{stem}.ids.npy")
    reported = np.load(data / f"{stem}.distances.npy") <= threshold
    exact = truth.distances <= threshold
    fresh = ~truth.planted
    return {
        "planted_recall": float(reported[truth.planted].mean()) if truth.planted.any() else math.nan,
        "false_positives": int((reported & ~exact & fresh).sum()),
        "missed_fresh": int((~reported & exact & fresh).sum()),
        "top1_agreement": float((ids == truth.ids).mean()),
    }


def derived(figures: dict[str, Any], rows: int, queries: int, target: int) -> dict[str, Any]:
    bytes_per_row = figures["index_bytes"] / rows
    return {
        "build_rows_per_s": rows / figures["build_s"],
        "query_per_s": queries / figures["query_s"],
        "bytes_per_row": bytes_per_row,
        "target_index_gb": bytes_per_row * target / 1e9,
    }


COLUMNS = (  # (title, width, format spec, figure)
    ("library", 16, "", "library"),
    ("build s", 8, ".1f", "build_s"),
    ("rows/s", 7, ".0f", "build_rows_per_s"),
    ("B/row", 6, ".0f", "bytes_per_row"),
    ("file MB", 8, ".0f", "index_mb"),
    ("RSS+ MB", 8, ".0f", "rss_index_mb"),
    ("build pk+", 9, ".0f", "build_peak_growth_mb"),
    ("peak+ MB", 8, ".0f", "peak_growth_mb"),
    ("load s", 7, ".2f", "load_s"),
    ("view s", 7, ".3f", "view_s"),
    ("view MB", 7, ".0f", "view_rss_mb"),
    ("query s", 8, ".2f", "query_s"),
    ("view q s", 8, ".2f", "view_query_s"),
    ("q/s", 7, ".0f", "query_per_s"),
    ("planted", 7, ".4f", "planted_recall"),
    ("FP", 5, "d", "false_positives"),
    ("missed", 6, "d", "missed_fresh"),
    ("top1", 6, ".4f", "top1_agreement"),
    ("GB@target", 9, ".2f", "target_index_gb"),
)


def table(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        " ".join(
            f"{title:<{width}}" if key == "library" else f"{title:>{width}}"
            for title, width, _, key in COLUMNS
        )
    ]
    for name, figures in results.items():
        if "error" in figures:
            lines.append(f"{name:<16} FAILED {figures['error']}")
            continue
        cells = [f"{name:<16}"]
        for _, width, spec, key in COLUMNS[1:]:
            value = figures.get(key)
            cells.append(f"{value:>{width}{spec}}" if value is not None else f"{'-':>{width}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def sweep_table(results: dict[str, dict[str, Any]]) -> str:
    titles = ("knob", 6), ("value", 5), ("query s", 8), ("planted", 7), ("FP", 5), ("missed", 6), ("top1", 6)
    lines = [" ".join([f"{'library':<16}", *(f"{title:>{width}}" for title, width in titles)])]
    for name, figures in results.items():
        for effort, row in figures.get("sweep", {}).items():
            lines.append(
                f"{name:<16} {figures['knob']:>6} {effort:>5} {row['query_s']:>8.2f} "
                f"{row['planted_recall']:>7.4f} {row['false_positives']:>5d} "
                f"{row['missed_fresh']:>6d} {row['top1_agreement']:>6.4f}"
            )
    return "\n".join(lines)


def evaluate(data: Path, name: str, figures: dict[str, Any], truth: Truth, args: argparse.Namespace) -> None:
    """Add accuracy at the chosen effort and across the sweep, and the derived rates."""
    figures |= accuracy(data, f"{name}.{figures['effort']}", truth, args.threshold)
    figures["sweep"] = {
        int(effort): {"query_s": seconds} | accuracy(data, f"{name}.{effort}", truth, args.threshold)
        for effort, seconds in figures.pop("sweep_query_s").items()
    }
    figures |= derived(figures, args.pool, args.queries, args.target)
    figures["index_mb"] = figures["index_bytes"] / 2**20


def efforts(text: str) -> tuple[int, ...]:
    return tuple(int(value) for value in text.split(",") if value)


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 4) if abs(value) < 100 else round(value, 1)
    if isinstance(value, dict):
        return {key: rounded(item) for key, item in value.items()}
    return value


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pool", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.02, help="near-duplicate cosine distance")
    parser.add_argument("--planted", type=float, default=0.1, help="share of queries planted as duplicates")
    parser.add_argument("--clusters", type=int, default=2000)
    parser.add_argument(
        "--libraries", default=",".join(LIBRARIES), help=f"comma-separated; also {', '.join(EXTRA)}"
    )
    parser.add_argument("--m", type=int, default=16, help="HNSW graph degree (M, connectivity)")
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--nprobe", type=int, default=8, help="IVF lists probed")
    parser.add_argument("--ef-sweep", default="32,128", help="other ef values searched (no rebuild)")
    parser.add_argument("--nprobe-sweep", default="2,4,16", help="other nprobe values searched")
    parser.add_argument("--target", type=int, default=10_000_000, help="pool size the GB column projects to")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse()
    settings = Settings(
        args.threads,
        args.m,
        args.ef_construction,
        args.ef_search,
        args.nprobe,
        efforts(args.ef_sweep),
        efforts(args.nprobe_sweep),
    )
    if args.worker:
        print(json.dumps(run_worker(args.worker, args.data, settings)))
        return
    names = [name for name in args.libraries.split(",") if name]
    unknown = set(names) - set(CANDIDATES)
    if unknown:
        raise SystemExit(f"unknown libraries: {', '.join(sorted(unknown))}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="neighbours-") as folder:
        data = Path(folder)
        rng = np.random.default_rng(args.seed)
        clusters = make_clusters(args.clusters, DIM, rng)
        write_pool(data / "pool.f32", clusters, args.pool, rng)
        queries, planted = make_queries(data / "pool.f32", clusters, args.queries, args.planted, rng)
        np.save(data / "queries.npy", queries)
        data_s = time.perf_counter() - started
        exact_s, (ids, distances) = timed(lambda: exact_nearest(data / "pool.f32", queries, args.threads))
        truth = Truth(ids, distances, planted)
        print(
            f"pool {args.pool:,} x {DIM}, queries {args.queries:,} ({planted.sum():,} planted), "
            f"threads {args.threads}, threshold {args.threshold}; M {args.m}, efC {args.ef_construction}, "
            f"efS {args.ef_search}, nprobe {args.nprobe}"
        )
        print(
            f"data {data_s:.1f} s; exact search {exact_s:.1f} s; planted within threshold "
            f"{(distances[planted] <= args.threshold).mean():.4f} (max distance "
            f"{distances[planted].max() if planted.any() else math.nan:.5f}); fresh within threshold "
            f"{(distances[~planted] <= args.threshold).sum():,}",
            flush=True,
        )
        results: dict[str, dict[str, Any]] = {}
        for name in names:
            figures = spawn(name, data, args)
            if "error" not in figures:
                evaluate(data, name, figures, truth, args)
            results[name] = figures
            print(f"  {name}: done", file=sys.stderr, flush=True)
    print(table(results))
    print(sweep_table(results))
    print(f"GB@target: index bytes per row x {args.target:,}; wall {time.perf_counter() - started:.0f} s")
    summary = {
        "pool": args.pool,
        "queries": args.queries,
        "planted": int(planted.sum()),
        "fresh_within_threshold": int((distances[~planted] <= args.threshold).sum()),
        "threads": args.threads,
        "threshold": args.threshold,
        "m": args.m,
        "ef_construction": args.ef_construction,
        "ef_search": args.ef_search,
        "nprobe": args.nprobe,
        "ivf_lists": ivf_lists(args.pool),
        "exact_s": exact_s,
        "libraries": results,
    }
    print(json.dumps(rounded(summary)))


if __name__ == "__main__":
    main()
