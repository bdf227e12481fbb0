"""The datapool's manifest: one row a processed key, as Parquet in the output location."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MANIFEST_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("version", pa.string()),  # ETag on S3, mtime in ns on a local disk
        ("size", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("content_hash", pa.string()),
        ("embedding", pa.list_(pa.float32())),  # null unless status is ok
        ("selected", pa.bool_()),
        ("run_id", pa.string()),  # the run that processed this version of the key
    ]
)


def embedding_column(vectors: list[np.ndarray | None]) -> pa.Array:
    values = [None if v is None else v.astype(np.float32).tolist() for v in vectors]
    return pa.array(values, pa.list_(pa.float32()))


def manifest_vectors(manifest: pa.Table, ids: set[str]) -> tuple[list[str], np.ndarray]:
    """Embeddings of the manifest rows in `ids` that have one. Shape: -> (n,), (n, D)"""
    rows = manifest.filter(pa.array([i in ids for i in manifest["id"].to_pylist()], pa.bool_()))
    rows = rows.filter(rows["embedding"].is_valid())
    if rows.num_rows == 0:
        return [], np.empty((0, 0), dtype=np.float32)
    vectors = np.array(rows["embedding"].to_pylist(), dtype=np.float32)
    return rows["id"].to_pylist(), vectors
