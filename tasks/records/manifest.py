"""The datapool's manifest: one row a processed key, as Parquet in the output location."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("key", pa.string()),  # the object the sample came from (a frame's video)
        ("version", pa.string()),  # of the object  # ETag on S3, mtime in ns on a local disk
        ("size", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
        ("content_hash", pa.string()),
        ("embedding", pa.list_(pa.float32())),  # null unless status is ok
        ("selected", pa.bool_()),
        ("run_id", pa.string()),  # the run that processed this version of the key
    ]
)


def read_manifest_table(path: str) -> pa.Table:
    """A manifest in MANIFEST_SCHEMA.

    Manifests written before videos have no `key`: each of their rows was an image, whose key is its id.
    """
    table = pq.read_table(path)
    if "key" not in table.column_names:
        table = table.add_column(1, "key", table["id"])
    return table.cast(MANIFEST_SCHEMA)


def embedding_column(vectors: list[np.ndarray | None]) -> pa.Array:
    """The manifest's embedding column: float32 lists, null where a vector is None."""
    values = [None if v is None else v.astype(np.float32).tolist() for v in vectors]
    return pa.array(values, pa.list_(pa.float32()))


def manifest_vectors(manifest: pa.Table, ids: set[str]) -> tuple[list[str], np.ndarray]:
    """Embeddings of the manifest rows in `ids` that have one.

    Shape: -> (n,), (n, D)
    """
    rows = manifest.filter(pa.array([i in ids for i in manifest["id"].to_pylist()], pa.bool_()))
    rows = rows.filter(rows["embedding"].is_valid())
    if rows.num_rows == 0:
        return [], np.empty((0, 0), dtype=np.float32)
    vectors = np.array(rows["embedding"].to_pylist(), dtype=np.float32)
    return rows["id"].to_pylist(), vectors
