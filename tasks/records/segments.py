"""The datapool's manifest as segments, folded into the pool's rows a record batch at a time.

A version's manifest is a list of Parquet segments in MANIFEST_SCHEMA, oldest first. The
first holds every row as of some version (a base); each later one holds one run's changes:
the rows of the keys it processed, and a tombstone (a row whose id is null) for every key it
processed again or found gone. A key's rows are those of the newest segment that names it,
tombstones left out. So a run's commit writes only its own segment, and compaction folds the
list into a new base (tasks/datapool/compaction.py).

Segments are read column by column and a record batch at a time: memory follows the columns
and rows asked for, and a pool's embeddings are never all in memory unless asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tasks.records.manifest import MANIFEST_SCHEMA

# Rows a record batch: about 35 MB of embeddings at 128 dimensions.
BATCH_ROWS = 65_536

# Bytes read from a segment file at a time. Reading column chunks in buffered pieces, not
# pre-buffered whole, held a 10 M-row pass at 0.2 GB instead of 4.9 GB, and took half the
# time (6.3 s against 13.6 s for the embeddings of 10 M rows in 1 M-row groups).
READ_BUFFER = 1 << 20


def tombstones(keys: pa.Array) -> pa.Table:
    """Rows that remove `keys` (each with every row it has: a video's frames) from the pool."""
    count = len(keys)
    columns = {
        field.name: keys.cast(pa.string()) if field.name == "key" else pa.nulls(count, field.type)
        for field in MANIFEST_SCHEMA
    }
    return pa.table(columns, schema=MANIFEST_SCHEMA)


def columns_schema(columns: list[str]) -> pa.Schema:
    """MANIFEST_SCHEMA's fields `columns`, in that order."""
    return pa.schema([MANIFEST_SCHEMA.field(c) for c in columns])


def segment_batches(path: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """Segment `path`'s `columns`, a record batch at a time, typed as MANIFEST_SCHEMA says.

    Manifests written before videos have no `key`: each of their rows was an image, whose key is its id.
    """
    file = pq.ParquetFile(path, pre_buffer=False, buffer_size=READ_BUFFER)
    present = set(file.schema_arrow.names)
    read = [c for c in dict.fromkeys([*columns, "id"]) if c in present]
    for batch in file.iter_batches(batch_size=BATCH_ROWS, columns=read):
        arrays = {
            name: (batch.column(name) if name in present else batch.column("id")).cast(
                MANIFEST_SCHEMA.field(name).type
            )
            for name in columns
        }
        yield pa.RecordBatch.from_pydict(arrays, schema=columns_schema(columns))


def named_keys(path: str) -> pa.Array:
    """The distinct keys a segment names, with rows or tombstones."""
    keys = [batch.column("key") for batch in segment_batches(path, ["key"])]
    if not keys:
        return pa.array([], pa.string())
    return pc.unique(pa.concat_arrays(keys))


def keys_named_later(segments: list[str]) -> list[pa.Array]:
    """For each segment, the keys that the segments after it name (whose rows replace its own)."""
    later: list[pa.Array] = [pa.array([], pa.string())] * len(segments)
    for index in range(len(segments) - 1, 0, -1):
        later[index - 1] = pc.unique(pa.concat_arrays([later[index], named_keys(segments[index])]))
    return later


def live_batches(
    segments: list[str], columns: list[str], selected_only: bool = False, keys: pa.Array | None = None
) -> Iterator[pa.RecordBatch]:
    """The pool's rows that `segments` (oldest first) fold into, with `columns`, a batch at a time.

    `selected_only` keeps the selected rows, `keys` the rows of those keys; both apply after
    the fold, so a newer segment's row still replaces an older one they would keep.
    """
    if keys is not None and len(keys) == 0:
        return  # no key asked for: no pass over the pool
    needed = list(dict.fromkeys([*columns, "id", "key", *(["selected"] if selected_only else [])]))
    for segment, replaced in zip(segments, keys_named_later(segments), strict=True):
        for batch in segment_batches(segment, needed):
            live = pc.and_(batch.column("id").is_valid(), pc.invert(pc.is_in(batch.column("key"), replaced)))
            if selected_only:
                live = pc.and_(live, pc.fill_null(batch.column("selected"), False))
            if keys is not None:
                live = pc.and_(live, pc.is_in(batch.column("key"), keys))
            rows = batch.filter(live)
            if rows.num_rows:
                yield rows.select(columns)


def read_live(
    segments: list[str], columns: list[str], selected_only: bool = False, keys: pa.Array | None = None
) -> pa.Table:
    """The pool's rows as one table with `columns` (live_batches)."""
    batches = list(live_batches(segments, columns, selected_only, keys))
    return pa.Table.from_batches(batches, schema=columns_schema(columns))


def live_vectors(segments: list[str], selected_only: bool = False) -> tuple[list[str], np.ndarray]:
    """The ids and embeddings of the pool's rows that have an embedding (the selected ones only, if asked).

    Shape: -> (n,), float32 (n, D); (0, 0) when there are none.
    """
    rows = read_live(segments, ["id", "embedding"], selected_only)
    rows = rows.filter(rows["embedding"].is_valid())
    if rows.num_rows == 0:
        return [], np.empty((0, 0), dtype=np.float32)
    flat = rows["embedding"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return rows["id"].to_pylist(), flat.reshape(rows.num_rows, -1).astype(np.float32, copy=False)


def write_folded(segments: list[str], path: Path) -> int:
    """Write the pool that `segments` fold into as one base segment at `path`; its row count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with pq.ParquetWriter(path, MANIFEST_SCHEMA) as writer:
        for batch in live_batches(segments, MANIFEST_SCHEMA.names):
            writer.write_batch(batch)
            rows += batch.num_rows
    return rows
