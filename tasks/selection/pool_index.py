"""A nearest-neighbour index a manifest segment, kept with the datapool: faiss IVF over fp16 vectors.

Each segment with at least INDEX_FROM_ROWS embeddings gets an index file beside it
(`indexes/<segment name>.faiss`), built once when the segment is written (a run's commit,
or a compaction) and never changed, like the segment. Its ids are the rows' positions in the
segment file, so a match is checked against the segment for whether the row still counts.
Smaller segments are searched exactly: a few seconds at most.

Why IVF with fp16 storage (benchmarks/neighbours.py, 1,000,000 x 128 clustered rows and
100,000 queries, 2 cores): it was the one index that found every planted near duplicate
(HNSW in faiss, usearch and hnswlib found 91-92% at ef 64), it built 2.5x faster than the
fastest graph (39,000 rows/s) and answered fastest (23,500 queries/s); fp16 halves its 522
bytes a row (2.7 GB at 10 M), and a saved index opens memory-mapped in milliseconds.
fp16 moves a cosine similarity by about 1e-4, a hundredth of a near duplicate's 0.01.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tasks.records.segments import segment_batches
from tasks.storage.atomic import written_atomically

# Segments with fewer embedded rows are searched exactly.
INDEX_FROM_ROWS = 20_000

# Inverted lists searched a query: with 4,000 lists over 1,000,000 rows, 8 found every planted
# near duplicate (4 missed 1 in 10,000); fewer, longer lists (cells_for) only widen a probe.
NEAR_DUPLICATE_PROBES = 8

# Rows a list is trained on (faiss asks for at least 39).
TRAINING_ROWS_PER_CELL = 40

INDEX_FOLDER = "indexes"


def index_key(segment_key: str) -> str:
    """The key of a segment's index: `.../manifests/<name>.parquet` -> `.../indexes/<name>.faiss`."""
    segment = PurePosixPath(segment_key)
    return str(segment.parent.parent / INDEX_FOLDER / f"{segment.stem}.faiss")


def embedded_batches(segment: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A segment's embedded rows a record batch at a time: their positions in the file and vectors.

    Shape: -> (n,) int64, (n, D) float32
    """
    offset = 0
    for batch in segment_batches(segment, ["embedding"]):
        embedded = batch.column("embedding").is_valid()
        rows = batch.filter(embedded)
        if rows.num_rows:
            flat = rows.column("embedding").flatten().to_numpy(zero_copy_only=False)
            positions = offset + np.flatnonzero(embedded.to_numpy(zero_copy_only=False))
            yield positions.astype(np.int64), flat.reshape(rows.num_rows, -1).astype(np.float32, copy=False)
        offset += batch.num_rows


def cells_for(rows: int) -> int:
    """The index's inverted lists for `rows` vectors: 2 sqrt(N), at least 40 training rows each.

    Fewer lists than the usual 4 sqrt(N) keep training and adding (both grow with rows x
    lists) to minutes at 10 M rows; each probe then scans a longer list.
    """
    return max(1, min(int(2 * np.sqrt(rows)), rows // TRAINING_ROWS_PER_CELL))


def build_segment_index(segment: str, path: Path, seed: int = 0) -> bool:
    """Write the index of `segment`'s embedded rows to `path`; False (and no file) below INDEX_FROM_ROWS.

    Two passes over the file, a record batch at a time: a seeded sample trains the lists, then
    every row is added. Memory holds the index (2 bytes a dimension a row) and one batch.
    """
    # Imported here: only a datapool that large needs faiss and its OpenMP runtime.
    import faiss

    rows = sum(len(positions) for positions, _ in embedded_batches(segment))
    if rows < INDEX_FROM_ROWS:
        return False
    cells = cells_for(rows)
    rng = np.random.default_rng(seed)
    share = min(1.0, cells * TRAINING_ROWS_PER_CELL / rows)
    sample = np.concatenate([v[rng.random(len(v)) < share] for _, v in embedded_batches(segment)])
    dim = sample.shape[1]
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim), dim, cells, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
    )
    index.cp.seed = seed
    index.train(sample)
    for positions, vectors in embedded_batches(segment):
        index.add_with_ids(vectors, positions)
    with written_atomically(path) as partial:
        faiss.write_index(index, str(partial))
    return True


def search_segment_index(path: str, x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` most similar embedded rows of the segment whose index is at `path`.

    The index is memory-mapped, not read into memory. Shape: x (N, D) unit -> positions (N, k)
    int64 (-1: none), similarities (N, k) float32
    """
    import faiss

    index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    # A view into `index`, which must stay referenced while it is used.
    faiss.extract_index_ivf(index).nprobe = NEAR_DUPLICATE_PROBES
    similarities, positions = index.search(np.ascontiguousarray(x, dtype=np.float32), k)
    return positions, similarities


def live_at(segment: str, replaced: pa.Array, positions: np.ndarray) -> tuple[list[str | None], np.ndarray]:
    """The ids of a segment's rows at `positions` (-1: none), and which of them still count.

    A row counts unless a later segment names its key. The segment's ids and keys are read a
    record batch at a time, each taking the positions that fall in it: never the whole column.
    Shape: positions (N, k) -> N*k ids, (N, k) bool
    """
    flat = positions.reshape(-1)
    order = np.argsort(flat, kind="stable")
    ascending = flat[order]
    ids = np.full(len(flat), None, dtype=object)
    still = np.zeros(len(flat), dtype=bool)
    offset = 0
    for batch in segment_batches(segment, ["id", "key"]):
        first, last = np.searchsorted(ascending, [offset, offset + batch.num_rows])
        if last > first:
            rows = batch.take(pa.array(ascending[first:last] - offset))
            ids[order[first:last]] = rows.column("id").to_pylist()
            kept = pc.invert(pc.is_in(rows.column("key"), replaced))
            still[order[first:last]] = kept.to_numpy(zero_copy_only=False)
        offset += batch.num_rows
    return ids.tolist(), still.reshape(positions.shape) & (positions >= 0)
